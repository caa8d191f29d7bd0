"""The embedded SQLite default queues a process's writers (dispatch.sqlite_writes): threads
that write at once take turns on an in-process lock instead of sleeping in SQLite's busy
handler, and every way a transaction ends hands the turn on."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select
from sqlalchemy.exc import IntegrityError

from dispatch.db import make_engine
from dispatch.sqlite_writes import WriterQueuedConnection, WriteTurn, _lock_for

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("body", String(50), unique=True),
)


@pytest.fixture
def sqlite_file(tmp_path):
    path = tmp_path / "queue.db"
    return path


def _engine(path, busy_timeout: float):
    engine = make_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": busy_timeout, "factory": WriterQueuedConnection},
    )
    metadata.create_all(engine)
    return engine


def test_threads_writing_at_once_take_turns_without_locked_errors(sqlite_file):
    # SQLite's own busy timeout is zero: any two writers overlapping inside this process
    # would fail at once with "database is locked"; the queue must prevent every overlap
    engine = _engine(sqlite_file, busy_timeout=0)
    errors: list[str] = []

    def writer(n: int) -> None:
        for i in range(40):
            try:
                with engine.begin() as conn:
                    conn.execute(select(func.count()).select_from(notes)).scalar()
                    conn.execute(insert(notes).values(body=f"{n}-{i}"))
                    time.sleep(0.001)  # hold the write turn a moment: others must queue
                    conn.execute(insert(notes).values(body=f"{n}-{i}-b"))
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(notes)).scalar() == 6 * 40 * 2
    engine.dispose()


def test_every_end_of_a_transaction_hands_the_turn_on(sqlite_file):
    engine = _engine(sqlite_file, busy_timeout=5)
    lock = _lock_for(str(sqlite_file))
    with engine.begin() as conn:
        conn.execute(insert(notes).values(body="one"))
        assert not lock.acquire(timeout=0)  # held while the transaction is open
    assert lock.acquire(timeout=0)  # committed: free
    lock.release()

    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(insert(notes).values(body="one"))  # unique: fails inside the transaction
    assert lock.acquire(timeout=0)  # rolled back: free
    lock.release()

    with engine.connect() as conn:
        conn.execute(insert(notes).values(body="two"))
        conn.rollback()
    assert lock.acquire(timeout=0)
    lock.release()

    with engine.connect() as conn:  # reads never take the turn
        conn.execute(select(notes)).all()
        assert lock.acquire(timeout=0)
        lock.release()
    engine.dispose()


def test_the_write_turn_goes_to_the_longest_waiting_writer():
    turn = WriteTurn()
    assert turn.acquire(timeout=1)
    order: list[int] = []
    started: list[threading.Event] = []

    def wait_turn(n: int) -> None:
        started[n].set()
        assert turn.acquire(timeout=10)
        order.append(n)
        turn.release()

    threads = []
    for n in range(5):
        started.append(threading.Event())
        thread = threading.Thread(target=wait_turn, args=(n,))
        thread.start()
        started[n].wait()
        time.sleep(0.05)  # n is queued before n + 1 arrives
        threads.append(thread)
    turn.release()
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2, 3, 4]
    assert turn.acquire(timeout=0)  # free again at the end
    turn.release()


def test_a_writer_that_waits_too_long_gives_up_and_leaves_the_queue():
    turn = WriteTurn()
    assert turn.acquire(timeout=1)
    assert turn.acquire(timeout=0.05) is False
    turn.release()
    assert turn.acquire(timeout=0)  # nobody left waiting: free


def test_the_embedded_default_engine_queues_its_writers(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'default.db'}")
    with engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, WriterQueuedConnection)
    engine.dispose()
