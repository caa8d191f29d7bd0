"""Models of the web side: admin users, their API tokens, and tracking hit counters.

Why a counter table: the first open (or first click on a link) of a delivery becomes one
`Event`; later hits only bump a counter. A unique (delivery, link) row upserted atomically
makes "once per delivery" hold even when two hits race.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow
from dispatch.vocabulary import UserRole

USER_ROLES = tuple(r.value for r in UserRole)  # editor, reviewer, admin
OPEN_LINK_INDEX = -1  # TrackingHit.link_index of the open pixel

__all__ = ["USER_ROLES", "OPEN_LINK_INDEX", "User", "ApiToken", "TrackingHit"]


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string
    role: Mapped[str] = mapped_column(String(16), default="editor")  # vocabulary.UserRole
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # set by an admin: no log-in, no session, no API token works until it is cleared
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(
        String(64), unique=True
    )  # sha256 hex; token never stored
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class TrackingHit(Base):
    """How often one delivery opened (link_index -1) or clicked one link of its issue."""

    __tablename__ = "tracking_hits"
    __table_args__ = (
        UniqueConstraint("delivery_id", "link_index", name="uq_tracking_hits_delivery_link"),
        Index("ix_tracking_hits_campaign", "campaign_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger)  # deliveries.id is BIGINT
    link_index: Mapped[int]
    campaign_id: Mapped[int | None] = mapped_column(default=None)
    count: Mapped[int] = mapped_column(default=1)
    first_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_at: Mapped[datetime] = mapped_column(default=utcnow)
