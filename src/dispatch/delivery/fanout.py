"""Fan-out: one Delivery row per recipient, made by the database in one INSERT … SELECT.

The recipients come from the subscribers area as a SELECT (distinct eligible subscribers of
the lists), so 100,000 people never become 100,000 Python objects here. Batch numbers are
assigned in the same statement (row_number() / batch size) and never change afterwards:
a batch, and a WeChat chunk's clientmsgid derived from it, is stable across retries.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Integer, String, column, func, insert, literal, select, table
from sqlalchemy.orm import Session

from dispatch.channels import fanout_batch_size
from dispatch.config import Settings
from dispatch.models import Campaign, Delivery, utcnow
from dispatch.models.base import UTCDateTime
from dispatch.vocabulary import DeliveryStatus

INSERT_COLUMNS = (
    "campaign_id",
    "subscriber_id",
    "email",
    "openid",
    "name",
    "locale",
    "batch_no",
    "status",
    "attempts",
    "lease_until",
    "updated_at",
)

# the subscribers table as the seam describes it (id, email, name, locale, openid); a light
# table clause so test sends need no import of another area's model class
_subscribers = table(
    "subscribers",
    column("id", Integer),
    column("email", String),
    column("name", String),
    column("locale", String),
    column("openid", String),
)


def recipients_source(campaign: Campaign):
    """The SELECT of (id, email, name, locale, openid) this campaign goes to."""
    if campaign.is_test:
        ids = list((campaign.options or {}).get("test_subscriber_ids") or [])
        s = _subscribers
        return select(s.c.id, s.c.email, s.c.name, s.c.locale, s.c.openid).where(s.c.id.in_(ids))
    from dispatch.subscribers.service import recipients_select

    return recipients_select(
        list(campaign.list_ids), campaign.channel, (campaign.options or {}).get("channels")
    )


def fan_out(
    session: Session, settings: Settings, campaign: Campaign, now: datetime | None = None
) -> tuple[int, list[int]]:
    """Create the campaign's deliveries (in the caller's transaction). Returns (count, batches)."""
    now = now or utcnow()
    batch_size = fanout_batch_size(campaign.channel, settings)
    src = recipients_source(campaign).subquery("recipients")
    row_number = func.row_number().over(order_by=src.c.id)
    batch_no = (row_number - 1).self_group().op("/")(literal(batch_size, Integer))
    # the sweep re-enqueues a pending batch only after this "queued until" time passes
    queued_until = now + timedelta(seconds=settings.lease_seconds)
    rows = select(
        literal(campaign.id, Integer),
        src.c.id,
        src.c.email,
        src.c.openid,
        func.coalesce(src.c.name, ""),
        func.coalesce(src.c.locale, settings.locale),
        batch_no,
        literal(DeliveryStatus.PENDING.value, String),
        literal(0, Integer),
        literal(queued_until, UTCDateTime()),
        literal(now, UTCDateTime()),
    )
    session.execute(insert(Delivery.__table__).from_select(list(INSERT_COLUMNS), rows))
    total, last_batch = session.execute(
        select(func.count(), func.max(Delivery.batch_no)).where(Delivery.campaign_id == campaign.id)
    ).one()
    batches = list(range(int(last_batch) + 1)) if total else []
    return int(total), batches
