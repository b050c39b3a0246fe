"""Exceptions of the store. Only `StoreUnavailable` means "try again later" (answer 503)."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of everything the store raises on purpose."""


class StoreUnavailable(StoreError):
    """Storage failed (disk full, read-only, locked, closed): nothing of the operation was kept."""


class NotFound(StoreError, LookupError):
    """No row with that id."""


class AlreadyExists(StoreError):
    """A row with that id exists already (batch id, confirmation token)."""


class InvalidTransition(StoreError):
    """A state change the state machine forbids (e.g. placed -> dialing, cancelled task -> dialing)."""

    def __init__(self, what: str, current: str, wanted: str) -> None:
        super().__init__(f"{what} is {current}; it cannot become {wanted}")
        self.current = current
        self.wanted = wanted


class IdempotencyConflict(StoreError):
    """The idempotency key was used before with different parameters."""

    def __init__(self, key: str, attempt_id: str) -> None:
        super().__init__(f"idempotency key {key!r} was used for different parameters (attempt {attempt_id})")
        self.key = key
        self.attempt_id = attempt_id


class ConfirmationRejected(StoreError, LookupError):
    """A confirmation token that cannot be consumed. `reason`: unknown | expired | used | mismatch.

    str(exc) reads as the end of "That confirmation token is ...".
    """

    _TEXT = {"unknown": "unknown", "expired": "expired", "used": "already used",
             "mismatch": "bound to other parameters"}

    def __init__(self, reason: str) -> None:
        super().__init__(self._TEXT.get(reason, reason))
        self.reason = reason


class ReservationRefused(StoreError):
    """A reservation's check said no (a budget is used up); `reason` is what the check answered."""

    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason
