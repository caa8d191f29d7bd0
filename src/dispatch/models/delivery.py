"""Campaigns (one send of an issue over one channel to a set of lists) and their deliveries.

A Delivery is one recipient of one campaign; its row is the single source of truth for
whether that person got the issue, so every state change happens on it in the database
(claiming, leases, retries) and nothing about progress lives in the queue.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow
from dispatch.vocabulary import DELIVERY_CHANNELS, DELIVERY_OPEN, CampaignStatus, DeliveryStatus

__all__ = [
    "CAMPAIGN_STATUSES",
    "CHANNEL_KINDS",
    "DELIVERY_STATUSES",
    "MAX_DELIVERY_ID",
    "OPEN_DELIVERY_STATUSES",
    "Campaign",
    "Delivery",
]

# plain-string views of the vocabulary (dispatch.vocabulary), e.g. for Literal[...] API types
CHANNEL_KINDS = tuple(c.value for c in DELIVERY_CHANNELS)
CAMPAIGN_STATUSES = tuple(s.value for s in CampaignStatus)
DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)
# rows that still need work: the campaign is finished when none is left
OPEN_DELIVERY_STATUSES = tuple(s.value for s in DELIVERY_OPEN)
# the largest id a 64-bit column holds: deliveries.id (BIGINT on PostgreSQL, SQLite's INTEGER)
# and every column that names a delivery; a number read from outside above it names no row
MAX_DELIVERY_ID = 2**63 - 1


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_status_scheduled", "status", "scheduled_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for a campaign that sends no issue (the confirmations of an import)
    issue_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id"), nullable=True)
    channel: Mapped[str] = mapped_column(String(16))
    list_ids: Mapped[list] = mapped_column(JSON, default=list)  # sorted list ids
    # f"{issue_id}:{channel}:{sorted list ids}" makes triggering the same send twice a no-op
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=CampaignStatus.DRAFT.value)
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    tracking: Mapped[bool] = mapped_column(Boolean, default=True)
    scheduled_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    paused_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # running but held back (every relay's quota used, outside the sending window, warm-up):
    # why, and until when; cleared when it sends again
    waiting_reason: Mapped[str | None] = mapped_column(Text, default=None)
    waiting_until: Mapped[datetime | None] = mapped_column(default=None)
    total: Mapped[int] = mapped_column(Integer, default=0)  # deliveries created at fan-out
    batch_count: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict] = mapped_column(JSON, default=dict)  # rate limits, test addresses
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


SENDING_ONLY = "status = 'sending'"  # ix_deliveries_status_lease's predicate


def in_flight() -> ColumnElement[bool]:
    """`status = 'sending'` with the value in the SQL text: a prepared statement's generic
    plan can then still use the partial index (a bound parameter could not prove it)."""
    return Delivery.__table__.c.status == literal_column("'sending'")


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("campaign_id", "subscriber_id", name="uq_deliveries_campaign_subscriber"),
        Index("ix_deliveries_campaign_id", "campaign_id", "id"),  # a campaign's rows, by key
        Index("ix_deliveries_batch", "campaign_id", "batch_no", "status"),
        Index("ix_deliveries_campaign_status", "campaign_id", "status"),
        # claims in flight only (expired leases, dead holders): a pending or finished row is
        # not in it, so a fan-out writes no entry here (migration i17_deliveries_lean)
        Index(
            "ix_deliveries_status_lease",
            "status",
            "lease_until",
            postgresql_where=text(SENDING_ONLY),
            sqlite_where=text(SENDING_ONLY),
        ),
        Index("ix_deliveries_campaign_provider", "campaign_id", "provider", "status"),
        # the reputation guard's window (a campaign's most recent results) read in index order,
        # not sorted out of all the campaign's finished rows every few chunks
        Index("ix_deliveries_campaign_updated", "campaign_id", "updated_at", "id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # plain integer like events: a delivery's history outlives the subscriber row
    subscriber_id: Mapped[int] = mapped_column(Integer)
    # snapshot at fan-out, so a batch reads one table and a retry reaches the same address
    email: Mapped[str | None] = mapped_column(String(320), default=None)
    openid: Mapped[str | None] = mapped_column(String(64), default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    batch_no: Mapped[int] = mapped_column(Integer)  # fixed at fan-out, stable across retries
    # receiving provider (qq, netease, gmail, … or other), fixed at fan-out from the domain
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    # sending: the claim expires then; pending/deferred: the sweep may re-enqueue after it
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(80), default=None)
    last_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_text: Mapped[str | None] = mapped_column(Text, default=None)
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    external_id: Mapped[str | None] = mapped_column(String(128), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
