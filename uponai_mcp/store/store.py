"""`Store`: the one object the server holds. Each concern lives in its own module (a mixin)."""

from __future__ import annotations

from .attempts import AttemptsMixin
from .batches import BatchesMixin
from .calls import CallsMixin
from .misc import MiscMixin
from .outreach import OutreachMixin


class Store(AttemptsMixin, CallsMixin, BatchesMixin, MiscMixin, OutreachMixin):
    """SQLite persistence (WAL, synchronous=FULL, one group-committing writer).

    `store = await Store.open(path)` ... `await store.close()` (or `async with await Store.open(p) as s`).
    Every async write method returns only after its transaction committed. Storage failures raise
    `StoreUnavailable`; nothing of a failed write is kept.
    """
