"""The audit log: one row per thing a person (or the CLI, or the service) did.

Why its own table rather than events: events are what happened to a recipient and are
counted by the statistics; audit rows are what an operator did to the service (published,
approved, sent, changed a setting, logged in) and are read by administrators. Rows are never
updated; the actor's email is copied so a later deleted or renamed user keeps their history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["AuditEntry"]


class AuditEntry(Base):
    """Who (actor) did what (action) to which thing (target), when, from where."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_occurred_at", "occurred_at"),
        Index("ix_audit_log_action", "action", "id"),
        Index("ix_audit_log_actor", "actor", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(254))  # a user's email, "cli" or "system"
    actor_user_id: Mapped[int | None] = mapped_column(default=None)  # no FK: history stays
    action: Mapped[str] = mapped_column(String(32))  # vocabulary.AuditAction
    target_kind: Mapped[str] = mapped_column(String(32))  # vocabulary.AuditTarget
    target_id: Mapped[str | None] = mapped_column(String(254), default=None)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    source_ip: Mapped[str | None] = mapped_column(String(64), default=None)
