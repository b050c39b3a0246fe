"""Single-use confirmation tokens, for calls and batches alike: issue, redeem, expire.

A token is bound to the exact parameters (their hash) and, for a call, to its idempotency key, so that
confirming and then repeating the same request replays the call instead of asking (and dialling) again.
Only the token's hash is stored; the token itself is shown once, to the person who must approve.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from uponai_mcp.errors import Refused
from uponai_mcp.store import Confirmation, ConfirmationRejected, Store, hash_token

TTL = timedelta(minutes=5)
PREFIX = {"call": "cfm_", "batch": "cfb_", "eval": "cfe_", "schedule": "cfs_"}
TOOL = {"call": "confirm_call", "batch": "confirm_batch", "eval": "run_eval", "schedule": "create_phone_call"}


@dataclass(frozen=True)
class Issued:
    token: str
    expires_at: datetime
    summary: str

    def details(self) -> dict[str, str]:
        """What a client acts on, for `Refused("confirmation_required", ..., **issued.details())`."""
        return {"token": self.token, "expires_at": self.expires_at.isoformat(timespec="seconds"),
                "summary": self.summary}


class Confirmations:
    def __init__(self, store: Store, wall: Callable[[], datetime], *, ttl: timedelta = TTL) -> None:
        self.store = store
        self.wall = wall
        self.ttl = ttl

    def _now_ms(self) -> int:
        return int(self.wall().timestamp() * 1000)

    async def issue(self, kind: str, *, params_hash: str, request_json: str, summary: str,
                    idempotency_key: str | None = None) -> Issued:
        token = PREFIX[kind] + secrets.token_urlsafe(18)
        expires = self.wall() + self.ttl
        await self.store.create_confirmation(
            hash_token(token), params_hash, request_json, summary, int(expires.timestamp() * 1000),
            now_ms=self._now_ms(), kind=kind, idempotency_key=idempotency_key)
        return Issued(token, expires, summary)

    async def redeem(self, kind: str, token: str, *, params_hash: str | None = None) -> Confirmation:
        """Use the token once. `params_hash`, when given, must be the confirmed one (a mismatch still spends
        the token). Raises `Refused("confirmation_invalid")` naming what is wrong."""
        token = token.strip()
        other = next((k for k, p in PREFIX.items() if token.startswith(p) and k != kind), None)
        if other is not None:  # checked before consuming: the right tool can still use it
            raise Refused("confirmation_invalid", f"That token confirms a {other}: use {TOOL[other]} with it.")
        try:
            conf = await self.store.consume_confirmation(hash_token(token), now_ms=self._now_ms(),
                                                         params_hash=params_hash)
        except ConfirmationRejected as exc:
            reason = exc.reason
            if reason == "mismatch":
                raise Refused("confirmation_invalid", "The parameters differ from the ones confirmed; the token is "
                              "now spent, ask for a new confirmation.", reason=reason) from exc
            raise Refused("confirmation_invalid", f"That confirmation token is {exc}; ask again for a new one.",
                          reason=reason) from exc
        if conf.kind != kind:
            raise Refused("confirmation_invalid", f"That token confirms a {conf.kind}: use {TOOL[conf.kind]}.")
        return conf

