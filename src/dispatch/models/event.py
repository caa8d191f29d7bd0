"""Normalised events (django-anymail style): one row per thing that happened to a recipient.

Every channel and the web side write the same shape, so stats and per-recipient history read
one table. References are plain indexed integers (no foreign keys) so events outlive rows
they mention and every migration can write them.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow
from dispatch.vocabulary import Channel, EventKind

EVENT_KINDS = tuple(k.value for k in EventKind)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_campaign_kind", "campaign_id", "kind"),
        Index("ix_events_delivery", "delivery_id"),
        Index("ix_events_subscriber", "subscriber_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16), default=Channel.EMAIL.value)  # a Channel
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    campaign_id: Mapped[int | None] = mapped_column(default=None)
    # deliveries.id is BIGINT: ids pass 2^31 - 1 in the service's life (i20_bigint_delivery_ids)
    delivery_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    subscriber_id: Mapped[int | None] = mapped_column(default=None)
    list_id: Mapped[int | None] = mapped_column(default=None)
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # code, text, url, link index, ...


# EventDaily.link_index of rows that are not about one link: opens and non-tracking kinds (-1,
# as TrackingHit's open pixel) and "clicked any link of the campaign" (-2, unique clickers)
NO_LINK_INDEX = -1
ANY_LINK_INDEX = -2


class EventDaily(Base):
    """What remains of a campaign's per-recipient detail after the retention (dispatch.rollup).

    One row per campaign, kind, link and UTC day. `events`: events of that kind that day (for
    opened/clicked: first hits, one per delivery and link); `people`: distinct deliveries among
    them (each person counted on the day of their first hit, so the days of a campaign add up to
    its unique openers, per-link clickers and, under ANY_LINK_INDEX, clickers of any link);
    `hits`: every open or click of those people, repeats included, counted on their first day;
    hits arriving after the rollup add to `hits` of the day they arrive.
    """

    __tablename__ = "event_daily"

    campaign_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    link_index: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(primary_key=True)
    events: Mapped[int] = mapped_column(BigInteger, default=0)
    people: Mapped[int] = mapped_column(BigInteger, default=0)
    hits: Mapped[int] = mapped_column(BigInteger, default=0)


class CampaignRollup(Base):
    """A campaign whose per-recipient tracking detail was rolled into EventDaily (and when).

    The tracking hot path reads it: a late hit on a rolled-up campaign only adds to the day's
    `hits`, so the detail tables never grow back."""

    __tablename__ = "campaign_rollups"

    campaign_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    rolled_at: Mapped[datetime] = mapped_column(default=utcnow)
    events_removed: Mapped[int] = mapped_column(BigInteger, default=0)
    hit_rows_removed: Mapped[int] = mapped_column(BigInteger, default=0)
