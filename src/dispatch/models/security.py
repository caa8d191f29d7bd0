"""Log-in and API-token attempts: the record of failures, and what throttling counts.

Why a table (not Redis or process memory): every web process sees the same counts, the
record survives restarts, and an administrator can read who tried what from where.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["AuthAttempt", "AUTH_KINDS"]

AUTH_KINDS = ("password", "token")  # a log-in form submission; an API bearer token


class AuthAttempt(Base):
    """One failed (ok=False) or successful (ok=True) authentication attempt."""

    __tablename__ = "auth_attempts"
    __table_args__ = (
        Index("ix_auth_attempts_client", "client", "occurred_at"),
        Index("ix_auth_attempts_account", "account", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(8))
    account: Mapped[str | None] = mapped_column(String(254), default=None)  # email, lower case
    client: Mapped[str] = mapped_column(String(64))  # the client's IP address
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
