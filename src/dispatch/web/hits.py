"""Record opens and clicks: the first per delivery (and link) is an Event, later ones a count.

One small transaction per hit: an atomic upsert of the (delivery, link) counter returns the
new count; only when it is 1 is the `opened`/`clicked` event written, in the same commit. Two
racing hits both bump the counter but only one sees 1, so the event is written once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dispatch.events import record
from dispatch.models.base import utcnow
from dispatch.models.web import OPEN_LINK_INDEX, TrackingHit

log = logging.getLogger("dispatch.web.tracking")


@dataclass(frozen=True)
class DeliveryRef:
    delivery_id: int
    campaign_id: int
    subscriber_id: int | None
    list_id: int | None
    channel: str


def delivery_ref(session: Session, delivery_id: int) -> DeliveryRef | None:
    """The few facts of a delivery an event needs, or None if there is no such delivery."""
    from dispatch.models.delivery import Campaign, Delivery

    list_col = getattr(Delivery, "list_id", None)
    columns = [Delivery.campaign_id, Delivery.subscriber_id, Campaign.channel]
    if list_col is not None:
        columns.append(list_col)
    row = session.execute(
        select(*columns).join(Campaign, Campaign.id == Delivery.campaign_id).where(Delivery.id == delivery_id)
    ).first()
    if row is None:
        return None
    list_id = row[3] if list_col is not None else None
    return DeliveryRef(delivery_id, row[0], row[1], list_id, row[2] or "email")


def _bump(session: Session, ref: DeliveryRef, link_index: int) -> int:
    now = utcnow()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(TrackingHit).values(
        delivery_id=ref.delivery_id, link_index=link_index, campaign_id=ref.campaign_id,
        count=1, first_at=now, last_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["delivery_id", "link_index"],
        set_={"count": TrackingHit.count + 1, "last_at": now},
    ).returning(TrackingHit.count)
    return int(session.execute(stmt).scalar_one())


def record_open(session: Session, ref: DeliveryRef) -> bool:
    """Count an open; True when it was the delivery's first (and the event was written)."""
    count = _bump(session, ref, OPEN_LINK_INDEX)
    if count == 1:
        record(session, "opened", channel=ref.channel, campaign_id=ref.campaign_id,
               delivery_id=ref.delivery_id, subscriber_id=ref.subscriber_id, list_id=ref.list_id)
        log.info("opened campaign_id=%s delivery_id=%s", ref.campaign_id, ref.delivery_id)
    return count == 1


def record_click(session: Session, ref: DeliveryRef, link_index: int, url: str) -> bool:
    """Count a click on link `link_index`; True when it was the first for that link."""
    count = _bump(session, ref, link_index)
    if count == 1:
        record(session, "clicked", channel=ref.channel, campaign_id=ref.campaign_id,
               delivery_id=ref.delivery_id, subscriber_id=ref.subscriber_id, list_id=ref.list_id,
               data={"link_index": link_index, "url": url})
        log.info("clicked campaign_id=%s delivery_id=%s link_index=%s", ref.campaign_id,
                 ref.delivery_id, link_index)
    return count == 1


def hit_counts(session: Session, delivery_id: int) -> dict[int, int]:
    """link index (-1 = opens) → number of hits, for the per-recipient view."""
    rows = session.execute(
        select(TrackingHit.link_index, TrackingHit.count).where(TrackingHit.delivery_id == delivery_id)
    )
    return {int(i): int(c) for i, c in rows}
