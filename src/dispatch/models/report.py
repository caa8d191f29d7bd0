"""Report tallies: a campaign's counts rolled up from its events, so a report reads rows, not
millions of events.

Why a rollup: a 1,000,000-recipient campaign has several million events; counting them on each
page view costs seconds. `dispatch.reports.rollup` adds each settled event once to the tallies
of its campaign (one row per dimension, key and metric) and moves the campaign's watermark
past it; a report reads the tallies plus the few events newer than the watermark.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["ReportTally", "ReportWatermark"]


class ReportTally(Base):
    """One count of a campaign's report: (dimension, key, metric) → value."""

    __tablename__ = "report_tallies"

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dim: Mapped[str] = mapped_column(String(16), primary_key=True)  # total, hour, link, ...
    key: Mapped[str] = mapped_column(String(128), primary_key=True)  # "" for total
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)  # opens:person, sent, ...
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportWatermark(Base):
    """How far a campaign's events have been rolled up (the last event id added)."""

    __tablename__ = "report_watermarks"

    campaign_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    refreshed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # tracking_hits totals are counters that keep changing: snapshotted at each refresh
    hits_at: Mapped[datetime | None] = mapped_column(default=None)
