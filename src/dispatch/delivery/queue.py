"""Where the engine puts work: a batch id pair, nothing more (ids only, state in the database).

dispatch.tasks provides the Celery implementation; tests and the synchronous drain use a list.
"""

from __future__ import annotations

from typing import Protocol


class BatchQueue(Protocol):
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
