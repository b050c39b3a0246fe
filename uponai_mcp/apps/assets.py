"""The apps' HTML, assembled from the files beside it into one self-contained document each.

Shared style and bridge script are inlined at load time, so a host gets a single document that needs no
network: everything is inline and the document's own CSP forbids fetches (`connect-src 'none'`).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

# Media may come from the platform's recording URL (https) or the local sandbox; nothing else loads.
MEDIA_SOURCES = ("https:", "http://127.0.0.1:*", "http://localhost:*")
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
       f"media-src {' '.join(MEDIA_SOURCES)}; connect-src 'none'; base-uri 'none'; form-action 'none'")


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


@cache
def app_html(name: str) -> str:
    """`call` or `batch`: the app's document with its style, bridge and CSP inlined."""
    html = _read(f"{name}.html")
    for marker, text in (("/*STYLE*/", _read("style.css")), ("/*BRIDGE*/", _read("bridge.js")), ("/*CSP*/", CSP)):
        if marker not in html:
            raise ValueError(f"{name}.html lacks {marker}")
        html = html.replace(marker, text)
    return html


@cache
def host_html() -> str:
    """The minimal Apps host page used by the browser tests and `uponai-mcp demo` (see `host.py`)."""
    return _read("host.html")
