"""Good-citizen sending state that must outlive Redis: daily quota use and the warm-up plan.

Redis holds the live counters every worker increments; these rows hold what was actually sent
per day, so a Redis restart does not reset a relay's daily quota or a domain's warm-up count.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["DailyUsage", "WarmupDay"]


class DailyUsage(Base):
    """Messages counted against a daily limit: scope "relay:<name>" or "warmup:<domain>"."""

    __tablename__ = "daily_usage"

    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD, send_timezone
    used: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WarmupDay(Base):
    """One day of a sending domain's warm-up: the allowance decided that morning and why."""

    __tablename__ = "warmup_days"

    domain: Mapped[str] = mapped_column(String(253), primary_key=True)
    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    day_number: Mapped[int] = mapped_column(Integer)  # 1 = the first day of the plan
    allowance: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")  # grown / held / reduced, with figures
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
