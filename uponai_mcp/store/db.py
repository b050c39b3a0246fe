"""Connections, the read pool and the group-committing single writer.

Writes: every write is a job (a function of the writer connection). Jobs queue up; whichever caller
finds no flush running becomes the leader and runs ALL queued jobs in one `BEGIN IMMEDIATE ... COMMIT`
in a worker thread, each job inside its own SAVEPOINT. So concurrent callers share one fsync
(synchronous=FULL), while one writer connection does all writing. A job's own exception (a conflict,
a bad argument) rolls back only its savepoint and is raised to its caller alone; a storage error
rolls the whole transaction back and every caller of that batch gets `StoreUnavailable` (-> 503).
Nothing is reported done before COMMIT returned.

Reads run on a small pool of `query_only` connections; WAL lets them run beside the writer.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .errors import StoreUnavailable

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_MAX_BATCH = 256


def is_storage_error(exc: BaseException) -> bool:
    """Errors of the storage itself (full, read-only, locked, I/O, corrupt), not of our SQL or data."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError
    )


def unavailable(exc: BaseException) -> StoreUnavailable:
    err = StoreUnavailable(f"storage error: {exc}")
    err.__cause__ = exc
    return err


def connect(path: Path, *, busy_timeout_ms: int, writer: bool) -> sqlite3.Connection:
    """A connection with explicit transactions (isolation_level=None) and the durability pragmas."""
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if writer:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailable(f"could not enable WAL (journal_mode={mode})")
        # FULL: WAL is fsynced at every commit, so an acknowledged write survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        if not writer:
            conn.execute("PRAGMA query_only = ON")
        return conn
    except BaseException:
        conn.close()
        raise


class ReadPool:
    """Up to `size` read connections, each used by one thread at a time."""

    def __init__(self, factory: Callable[[], sqlite3.Connection], size: int) -> None:
        self.size = size
        self._factory = factory
        self._free: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(size)
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one read transaction (a consistent view across its queries). Blocking."""
        with self._slots:
            conn = self._take()
            try:
                conn.execute("BEGIN")
                try:
                    return fn(conn)
                finally:
                    conn.execute("COMMIT")
            finally:
                self._free.put(conn)

    def _take(self) -> sqlite3.Connection:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            conn = self._factory()
            with self._lock:
                self._all.append(conn)
            return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()


@dataclass(eq=False)
class _Job:
    op: Op
    solo: bool
    wake: anyio.Event = field(default_factory=anyio.Event)
    taken: bool = False
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class GroupWriter:
    """The only writer. See the module docstring for the group-commit protocol.

    Each waiter sleeps on its own event. A finishing leader wakes the jobs of its batch and hands the
    lead to the oldest queued job, so every job is woken about once, however many callers wait.
    """

    def __init__(self, conn: sqlite3.Connection, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._pending: deque[_Job] = deque()
        self._flushing = False
        self._closed = False
        # Its own thread token: a busy default pool (40 tokens shared by the process) never delays a commit.
        self._thread = anyio.CapacityLimiter(1)
        self.batches = 0  # transactions run, for benchmarks: jobs / batches = group-commit factor
        self.jobs = 0

    async def submit(self, op: Op, *, solo: bool = False) -> Any:
        """Run `op(conn)` inside a committed transaction; `solo` gives it a transaction of its own."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        return await self._enqueue(_Job(op, solo))

    async def close(self) -> None:
        """Refuse new jobs; return once every job queued before has run."""
        if not self._closed:
            self._closed = True
            await self._enqueue(_Job(lambda conn: None, solo=False))

    async def _enqueue(self, job: _Job) -> Any:
        self._pending.append(job)
        try:
            while not job.done:
                if not self._flushing:
                    await self._lead()
                    continue
                job.wake = anyio.Event()
                await job.wake.wait()
        except BaseException:
            if not job.taken:  # cancelled while queued: withdraw, and pass on a lead we may hold
                self._pending.remove(job)
                self._hand_over()
            raise
        if job.error is not None:
            raise job.error
        return job.result

    async def _lead(self) -> None:
        self._flushing = True
        batch = self._take_batch()
        try:
            # Shielded: once the transaction started, its outcome must reach every caller.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._run_batch, batch, limiter=self._thread)
        finally:
            for job in batch:
                if not job.done:  # only if the worker thread itself could not run
                    job.error, job.done = StoreUnavailable("the write did not run"), True
                job.wake.set()
            self._flushing = False
            self._hand_over()

    def _hand_over(self) -> None:
        if not self._flushing and self._pending:
            self._pending[0].wake.set()

    def _take_batch(self) -> list[_Job]:
        batch = [self._pending.popleft()]
        if not batch[0].solo:
            while self._pending and len(batch) < self._max_batch and not self._pending[0].solo:
                batch.append(self._pending.popleft())
        for job in batch:
            job.taken = True
        return batch

    # --- in the worker thread ----------------------------------------------------------------

    def _run_batch(self, batch: list[_Job]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for job in batch:
                    self._run_job(conn, job)
                conn.execute("COMMIT")
            except BaseException:
                _rollback_quietly(conn)
                raise
        except Exception as exc:
            err = unavailable(exc) if is_storage_error(exc) else StoreUnavailable(f"write failed: {exc!r}")
            for job in batch:
                job.result, job.error = None, err
        finally:
            self.batches += 1
            self.jobs += len(batch)
            for job in batch:
                job.done = True

    @staticmethod
    def _run_job(conn: sqlite3.Connection, job: _Job) -> None:
        conn.execute("SAVEPOINT job")
        try:
            job.result = job.op(conn)
        except Exception as exc:
            if is_storage_error(exc):
                raise  # the whole batch fails
            conn.execute("ROLLBACK TO job")
            job.error = exc
        conn.execute("RELEASE job")


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction left (SQLite may have rolled back already)
