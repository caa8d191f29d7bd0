"""Stored tallies: a closed campaign's counts kept instead of counted on every view.

Why: at a million recipients a campaign page, its stats and the deliverability page each
count hundreds of thousands of rows; once a campaign is closed those counts change only when a
late bounce, complaint, open, click or unsubscribe arrives. dispatch.tallies keeps one row per
(kind, campaign) with the event id it had seen and checks, on each read, that nothing has
changed since (one key probe each); otherwise it counts again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["Tally"]


class Tally(Base):
    __tablename__ = "tallies"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)  # stats, progress, …
    ref_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # the campaign's id
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    # the highest events.id visible when counting: a later event of the campaign voids it
    event_watermark: Mapped[int] = mapped_column(BigInteger, default=0)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
