"""Where the engine puts work: a batch id pair, nothing more (ids only, state in the database).

dispatch.tasks provides the Celery implementation; tests and the synchronous drain use a list.
"""

from __future__ import annotations

from typing import Protocol


class BatchQueue(Protocol):
    def enqueue(self, campaign_id: int, batch_no: int) -> None:
        """Ask some worker to run deliver_batch(campaign_id, batch_no) soon."""


class ListQueue:
    """Collects enqueued batches in order (tests, and `drain` for a single process)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, int]] = []

    def enqueue(self, campaign_id: int, batch_no: int) -> None:
        self.items.append((campaign_id, batch_no))

    def pop_all(self) -> list[tuple[int, int]]:
        items, self.items = self.items, []
        return items
