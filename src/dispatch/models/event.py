"""Normalised events (django-anymail style): one row per thing that happened to a recipient.

Every channel and the web side write the same shape, so stats and per-recipient history read
one table. References are plain indexed integers (no foreign keys) so events outlive rows
they mention and every migration can write them.
"""

from __future__ import annotations

from datetime import datetime

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
    delivery_id: Mapped[int | None] = mapped_column(default=None)
    subscriber_id: Mapped[int | None] = mapped_column(default=None)
    list_id: Mapped[int | None] = mapped_column(default=None)
    data: Mapped[dict] = mapped_column(JSON, default=dict)  # code, text, url, link index, ...
