"""Audit log (append-only), single-use confirmation tokens, and settings."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from typing import Any

from .base import StoreBase, dumps, now_or
from .errors import AlreadyExists, ConfirmationRejected
from .rows import AuditEntry, Confirmation


def hash_token(token: str) -> str:
    """Only this hash is stored: a leaked database does not leak usable tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


def _consume(conn: sqlite3.Connection, token_hash: str, now: int, params_hash: str | None) -> Any:
    """Returns the Confirmation, or the reason it cannot be used (raised after commit by the caller,
    so that a mismatch still burns the token)."""
    row = conn.execute("SELECT * FROM confirmations WHERE token_hash = ?", (token_hash,)).fetchone()
    if row is None:
        return "unknown"
    conf = Confirmation.from_row(row)
    if conf.consumed_at_ms is not None:
        return "used"
    if now >= conf.expires_at_ms:
        return "expired"
    # The guard in WHERE keeps single use even if two processes share the file.
    cur = conn.execute("UPDATE confirmations SET consumed_at_ms = ? WHERE token_hash = ? AND consumed_at_ms IS NULL",
                       (now, token_hash))
    if cur.rowcount != 1:
        return "used"
    if params_hash is not None and params_hash != conf.params_hash:
        return "mismatch"
    return replace(conf, consumed_at_ms=now)


class MiscMixin(StoreBase):
    # --- audit ----------------------------------------------------------------------------------

    async def audit(
        self, kind: str, *, decision: str, code: str | None = None, summary: str = "",
        details: dict[str, Any] | None = None, now_ms: int | None = None,
    ) -> int:
        """Append one entry (decision: allowed, refused, paced, confirmed, declined, placed, failed, ...)."""
        now = now_or(now_ms)
        args = (now, kind, decision, code, summary, dumps(details or {}))

        def op(conn: sqlite3.Connection) -> int:
            return conn.execute("INSERT INTO audit (at_ms, kind, decision, code, summary, details_json)"
                                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id", args).fetchone()[0]

        return await self._write(op, locks=())

    async def recent_audit(self, limit: int = 50, *, kind: str | None = None) -> list[AuditEntry]:
        """Newest first."""
        where, args = ("WHERE kind = ?", (kind, limit)) if kind else ("", (limit,))
        sql = f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?"
        return await self._read(lambda c: [AuditEntry.from_row(r) for r in c.execute(sql, args)])

    # --- confirmations --------------------------------------------------------------------------

    async def create_confirmation(
        self, token_hash: str, params_hash: str, request_json: str, summary: str, expires_at_ms: int,
        now_ms: int | None = None, *, kind: str = "call", idempotency_key: str | None = None,
    ) -> Confirmation:
        now = now_or(now_ms)
        conf = Confirmation(token_hash, params_hash, request_json, summary, now, int(expires_at_ms), None, kind,
                            idempotency_key)

        def op(conn: sqlite3.Connection) -> Confirmation:
            cur = conn.execute(
                "INSERT INTO confirmations (token_hash, params_hash, request_json, summary, created_at_ms,"
                " expires_at_ms, kind, idempotency_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (token_hash) DO NOTHING",
                (token_hash, params_hash, request_json, summary, now, conf.expires_at_ms, kind, idempotency_key),
            )
            if cur.rowcount != 1:
                raise AlreadyExists("confirmation token exists")
            return conf

        return await self._write(op, locks=(("confirmation", token_hash),))

    async def consume_confirmation(
        self, token_hash: str, now_ms: int | None = None, *, params_hash: str | None = None,
    ) -> Confirmation:
        """Use a token once, atomically. Raises ConfirmationRejected(reason) with reason unknown,
        expired, used, or mismatch (`params_hash` given and different: the token is spent anyway)."""
        now = now_or(now_ms)
        outcome = await self._write(lambda conn: _consume(conn, token_hash, now, params_hash),
                                    locks=(("confirmation", token_hash),))
        if isinstance(outcome, str):
            raise ConfirmationRejected(outcome)
        return outcome

    async def purge_confirmations(self, *, older_than_ms: int) -> int:
        """Delete tokens that expired before `older_than_ms`; returns how many."""
        return await self._write(lambda c: c.execute(
            "DELETE FROM confirmations WHERE expires_at_ms < ?", (older_than_ms,)).rowcount, locks=())

    # --- settings -------------------------------------------------------------------------------

    async def get_setting(self, key: str, default: Any = None) -> Any:
        row = await self._read(
            lambda c: c.execute("SELECT value_json FROM settings WHERE key = ?", (key,)).fetchone())
        return default if row is None else json.loads(row[0])

    async def set_setting(self, key: str, value: Any, now_ms: int | None = None) -> None:
        """Store any JSON-serializable value (committed when this returns)."""
        text, now = json.dumps(value), now_or(now_ms)
        await self._write(lambda c: c.execute(
            "INSERT INTO settings (key, value_json, updated_at_ms) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value_json = excluded.value_json,"
            " updated_at_ms = excluded.updated_at_ms", (key, text, now)), locks=(("setting", key),))
