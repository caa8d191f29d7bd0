"""Record opens and clicks: the first per delivery (and link) is an Event, later ones a count.

One small transaction per hit on a plain Connection with statements built once: an atomic
upsert of the (delivery, link) counter returns the new count, and only when it is 1 is the
`opened`/`clicked` event written, in the same commit. Two racing hits both bump the counter
but only one sees 1, so the event is written exactly once. Why Core and not the ORM here: this
is the hot path (target 1,000 hits/s); the event row has exactly the shape
`dispatch.events.record` writes.

On SQLite a process-wide lock serialises the hit transactions of this process, so threads
queue in Python instead of spinning in SQLite's busy handler.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from dispatch.log import get_logger
from dispatch.models import EVENT_KINDS, Event, utcnow
from dispatch.models.web import OPEN_LINK_INDEX, TrackingHit

log = get_logger("dispatch.web.tracking")
_sqlite_write_lock = threading.Lock()
REF_CACHE_SIZE = 200_000  # delivery id → DeliveryRef, about 200 bytes each


@dataclass(frozen=True)
class DeliveryRef:
    delivery_id: int
    campaign_id: int
    subscriber_id: int | None
    list_id: int | None
    channel: str


class HitRecorder:
    """Statements prepared once per engine; `open()`/`click()` each run one short transaction."""

    def __init__(self, engine: Engine):
        from dispatch.models.delivery import Campaign, Delivery

        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        d, c = Delivery.__table__, Campaign.__table__
        list_col = d.c.get("list_id")
        columns = [d.c.campaign_id, d.c.subscriber_id, c.c.channel]
        if list_col is not None:
            columns.append(list_col)
        self._ref = select(*columns).join(c, c.c.id == d.c.campaign_id).where(d.c.id == bindparam("delivery_id"))
        self._has_list = list_col is not None
        t = TrackingHit.__table__
        make_insert = sqlite_insert if self.is_sqlite else pg_insert
        upsert = make_insert(t).values(
            delivery_id=bindparam("delivery_id"), link_index=bindparam("link_index"),
            campaign_id=bindparam("campaign_id"), count=1, first_at=bindparam("now"), last_at=bindparam("now"),
        )
        self._bump = upsert.on_conflict_do_update(
            index_elements=[t.c.delivery_id, t.c.link_index],
            set_={"count": t.c.count + 1, "last_at": upsert.excluded.last_at},
        ).returning(t.c.count)
        self._event = insert(Event.__table__)
        self._refs: dict[int, DeliveryRef] = {}

    def transaction(self):
        """A write transaction: serialised per process on SQLite, plain on PostgreSQL."""
        return _sqlite_write_lock if self.is_sqlite else nullcontext()

    def ref(self, conn: Connection, delivery_id: int) -> DeliveryRef | None:
        """The delivery's campaign, subscriber and channel; cached, as they never change."""
        cached = self._refs.get(delivery_id)
        if cached is not None:
            return cached
        row = conn.execute(self._ref, {"delivery_id": delivery_id}).first()
        if row is None:
            return None
        ref = DeliveryRef(delivery_id, row[0], row[1], row[3] if self._has_list else None, row[2] or "email")
        if len(self._refs) >= REF_CACHE_SIZE:
            self._refs.pop(next(iter(self._refs)))  # oldest first (dicts keep insertion order)
        self._refs[delivery_id] = ref
        return ref

    def _count(self, conn: Connection, ref: DeliveryRef, link_index: int) -> int:
        params = {"delivery_id": ref.delivery_id, "link_index": link_index, "campaign_id": ref.campaign_id,
                  "now": utcnow()}
        return int(conn.execute(self._bump, params).scalar_one())

    def _record(self, conn: Connection, kind: str, ref: DeliveryRef, data: dict[str, Any]) -> None:
        assert kind in EVENT_KINDS
        conn.execute(self._event, {
            "kind": kind, "channel": ref.channel, "occurred_at": utcnow(), "campaign_id": ref.campaign_id,
            "delivery_id": ref.delivery_id, "subscriber_id": ref.subscriber_id, "list_id": ref.list_id,
            "data": data,
        })

    def record_open(self, conn: Connection, ref: DeliveryRef) -> bool:
        """Count an open; True when it was the delivery's first (and the event was written)."""
        first = self._count(conn, ref, OPEN_LINK_INDEX) == 1
        if first:
            self._record(conn, "opened", ref, {})
            log.debug("tracking.opened", campaign_id=ref.campaign_id, delivery_id=ref.delivery_id)
        return first

    def record_click(self, conn: Connection, ref: DeliveryRef, link_index: int, url: str) -> bool:
        """Count a click on link `link_index`; True when it was the first for that link."""
        first = self._count(conn, ref, link_index) == 1
        if first:
            self._record(conn, "clicked", ref, {"link_index": link_index, "url": url})
            log.debug("tracking.clicked", campaign_id=ref.campaign_id, delivery_id=ref.delivery_id,
                      link_index=link_index)
        return first
