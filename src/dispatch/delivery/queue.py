"""Where the engine puts work: a batch id pair, nothing more (ids only, state in the database).

dispatch.tasks provides the Celery implementation; tests and the synchronous drain use a list.

The database remembers that a batch was queued by a mark on its due rows: lease_until of a
pending/deferred row means "a task for this batch was queued until then". A batch counts as
queued while any of its due rows carries a mark not yet past (one task runs the whole batch),
so the sweep re-marks one row per batch (the one its run claims last), never every row: a
million-row campaign costs the sweep a few thousand row writes per lease, not a million.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dispatch.models import Delivery
from dispatch.vocabulary import DELIVERY_CLAIMABLE

D = Delivery.__table__
_MARK_CHUNK = 1000  # ids per UPDATE (SQLite's bound-parameter limit)


class BatchQueue(Protocol):
    """Optional methods, looked up with getattr: `waiting()` (waiting_count) and
    `prepare(campaign_id)`: ask one idle worker to render the campaign ahead of its batches
    (delivery.prepare; CeleryQueue has it, ListQueue does not: nothing to get ahead of)."""

    def enqueue(self, campaign_id: int, batch_no: int) -> None:
        """Ask some worker to run deliver_batch(campaign_id, batch_no) soon."""


def waiting_count(queue: object) -> int | None:
    """How many tasks the queue holds that no worker has taken yet, when it can say (a queue
    with a `waiting()` method); None when it cannot or its broker does not answer. Recovery
    trusts only a definite 0 (delivery.recovery)."""
    waiting = getattr(queue, "waiting", None)
    if waiting is None:
        return None
    try:
        count = waiting()
    except Exception:  # noqa: BLE001 - a broker that is away cannot say, which is no answer
        return None
    return None if count is None else int(count)


class ListQueue:
    """Collects enqueued batches in order (tests, and `drain` for a single process)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int]] = []

    def enqueue(self, campaign_id: int, batch_no: int) -> None:
        self.items.append((campaign_id, batch_no))

    def waiting(self) -> int:
        return len(self.items)

    def pop_all(self) -> list[tuple[int, int]]:
        items, self.items = self.items, []
        return items


def mark_batches(
    session: Session,
    rows: Any,
    unmarked: Callable[[Any], Any],
    until: datetime,
) -> list[tuple[int, int]]:
    """The (campaign, batch) pairs among `rows` (a condition on due rows) whose latest queue
    mark satisfies `unmarked(latest)`; each gets one mark `until` on its last due row (highest
    id: claims go in id order, so a batch partly claimed keeps its mark). Run again with the
    same clock it finds nothing: idempotent."""
    latest = func.max(D.c.lease_until)
    found = session.execute(
        select(D.c.campaign_id, D.c.batch_no, func.max(D.c.id))
        .where(rows)
        .group_by(D.c.campaign_id, D.c.batch_no)
        .having(unmarked(latest))
    ).all()
    ids = sorted(int(i) for _, _, i in found)
    for start in range(0, len(ids), _MARK_CHUNK):
        session.execute(  # still unclaimed: a claim's own lease is never touched
            update(D)
            .where(D.c.id.in_(ids[start : start + _MARK_CHUNK]))
            .where(D.c.status.in_(DELIVERY_CLAIMABLE))
            .values(lease_until=until)
        )
    return sorted((int(c), int(b)) for c, b, _ in found)


def queued_until(now: datetime, requeue_seconds: float) -> datetime:
    return now + timedelta(seconds=requeue_seconds)
