"""The listening sockets every server of the package uses (MCP HTTP app, webhook receiver, sandbox).

A leaf module: the sandbox shares it. The socket is made with proto IPPROTO_TCP because asyncio only
disables Nagle on accepted sockets whose proto says TCP; with Nagle on, every keep-alive response
stalls ~40 ms on delayed ACKs.
"""

from __future__ import annotations

import socket


def bind_tcp(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening, non-blocking TCP socket on host:port (port 0 picks a free one)."""
    host = "127.0.0.1" if host == "localhost" else host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and host == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # also accept IPv4 on "::"
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
