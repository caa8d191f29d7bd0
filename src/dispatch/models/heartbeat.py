"""Process heartbeats: each worker and beat process writes its row every few seconds.

Why in the database: every command (`dispatch send`, `watch`, the web page) can already read
it, also on the embedded default where no Redis runs; "is a worker running?" is then a fact
read from a timestamp, never a guess from a campaign that does not move.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["ProcessHeartbeat"]


class ProcessHeartbeat(Base):
    __tablename__ = "process_heartbeats"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # kind@hostname:pid
    kind: Mapped[str] = mapped_column(String(16), index=True)  # vocabulary.ProcessKind
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
