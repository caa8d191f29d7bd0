"""One writer at a time per SQLite file inside a process, handed over without sleeping.

Why: SQLite lets one connection write at a time. When several threads of one process (the
web server's thread pool) write at once, the losers wait in SQLite's busy handler, which
*sleeps* and polls (1, 2, 5 … up to 100 ms between tries) while the file may already be
free: under a burst of form posts the write lock sits idle between sleepers and the slowest
requests wait hundreds of milliseconds. A process-wide first-come, first-served lock, taken
just before a transaction's first write and released right after its commit or rollback,
queues those threads instead and wakes the next one at once. Other processes (a worker, a
CLI command) still meet SQLite's own busy handler, as before.

Used through `sqlite3.connect(..., factory=WriterQueuedConnection)` (see dispatch.db).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import deque
from typing import Any

WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE")
IN_MEMORY = ("", ":memory:")
MIN_TURN_WAIT_SECONDS = 30.0


class WriteTurn:
    """A first-come, first-served lock: the writer who has waited longest writes next.

    threading.Lock is not fair (a thread that releases it may take it straight back), which
    under a burst lets a few requests wait far longer than the rest: the tail is what counts.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            ticket = threading.Lock()
            ticket.acquire()
            self._waiting.append(ticket)
        if ticket.acquire(timeout=timeout):
            return True  # handed over by release()
        with self._mutex:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
                return False
        return True  # handed over just as the wait ran out: the turn is ours

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()  # the turn passes on; still held
            else:
                self._held = False


_turns: dict[str, WriteTurn] = {}
_turns_guard = threading.Lock()


def _lock_for(database: str) -> WriteTurn:
    with _turns_guard:
        return _turns.setdefault(database, WriteTurn())


def _is_write(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(WRITE_VERBS)


class WriterQueuedConnection(sqlite3.Connection):
    """A sqlite3 connection that queues for its process's write lock before writing."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        name = str(database)
        # an in-memory database is private to its connection: nothing to queue for
        self._write_lock = None if name in IN_MEMORY or "mode=memory" in name else _lock_for(name)
        # as long as SQLite's own busy timeout, and never less than a slow commit needs
        self._wait = max(float(kwargs.get("timeout", 5.0)), MIN_TURN_WAIT_SECONDS)
        self._holding = False

    def cursor(self, factory: Any = None) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory or WriterQueuedCursor)

    def before_statement(self, sql: str) -> None:
        if self._write_lock is None or self._holding or self.in_transaction or not _is_write(sql):
            return
        if not self._write_lock.acquire(timeout=self._wait):
            raise sqlite3.OperationalError("database is locked")
        self._holding = True

    def after_statement(self) -> None:
        """A write that failed before opening a transaction holds nothing: hand it over."""
        if self._holding and not self.in_transaction:
            self._release()

    def _release(self) -> None:
        if self._holding and self._write_lock is not None:
            self._holding = False
            self._write_lock.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


class WriterQueuedCursor(sqlite3.Cursor):
    """Takes the connection's write turn before an INSERT/UPDATE/DELETE opens a transaction."""

    connection: WriterQueuedConnection

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        self.connection.before_statement(sql)
        try:
            return super().execute(sql, parameters)
        finally:
            self.connection.after_statement()

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> sqlite3.Cursor:
        self.connection.before_statement(sql)
        try:
            return super().executemany(sql, seq_of_parameters)
        finally:
            self.connection.after_statement()
