"""Inbound bounce, complaint and auto-reply messages, one row per message received.

Why a table of its own: the raw message is what an administrator reads when a suppression is
questioned ("why was this address blocked?"), and the digest of the raw bytes is what makes
every way in (mailbox poller, SMTP intake, webhooks, file import) process a message once only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow
from dispatch.vocabulary import BounceKind, BounceSource

__all__ = ["BOUNCE_KINDS", "BOUNCE_SOURCES", "BounceMessage"]

BOUNCE_KINDS = tuple(k.value for k in BounceKind)  # meanings in dispatch.vocabulary
BOUNCE_SOURCES = tuple(s.value for s in BounceSource)


class BounceMessage(Base):
    __tablename__ = "bounce_messages"
    __table_args__ = (
        Index("ix_bounce_messages_recipient", "recipient"),
        Index("ix_bounce_messages_campaign_kind", "campaign_id", "kind"),
        Index("ix_bounce_messages_delivery", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the raw bytes
    source: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(320), default=None)
    status: Mapped[str | None] = mapped_column(String(16), default=None)  # RFC 3463, e.g. 5.1.1
    diagnostic: Mapped[str] = mapped_column(Text, default="")
    reporting_mta: Mapped[str | None] = mapped_column(String(255), default=None)
    original_message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    campaign_id: Mapped[int | None] = mapped_column(Integer, default=None)
    delivery_id: Mapped[int | None] = mapped_column(BigInteger, default=None)  # deliveries.id
    subscriber_id: Mapped[int | None] = mapped_column(Integer, default=None)
    action: Mapped[str] = mapped_column(String(32), default="none")  # what dispatch did about it
    reason: Mapped[str] = mapped_column(Text, default="")  # why: matched how, or why ignored
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # zlib, size-capped
    raw_size: Mapped[int] = mapped_column(Integer, default=0)  # bytes received
    raw_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
