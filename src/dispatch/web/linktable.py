"""The link table of a campaign's issue, cached: the click redirect's only source of URLs.

Why from the stored issue's summary: `publish_issue` keeps `doc.links` in `Issue.summary`, so a
click needs no re-parse; the cache makes the hot path one primary-key read per hit. Entries
expire after a while so a republished issue is seen.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import nullcontext

from sqlalchemy import Connection, Engine, select
from sqlalchemy.orm import Session

from dispatch.models.issue import Issue

MAX_ENTRIES = 512
TTL_SECONDS = 300.0


def load_links(session: Session | Connection, campaign_id: int) -> tuple[str, ...] | None:
    """The issue's link table for a campaign, or None if the campaign or issue is gone."""
    from dispatch.models.delivery import Campaign

    issue_id = session.scalar(select(Campaign.issue_id).where(Campaign.id == campaign_id))
    if issue_id is None:
        return None
    summary = session.scalar(select(Issue.summary).where(Issue.id == issue_id))
    if summary is None:
        return None
    links = summary.get("links")
    if links is None:  # an issue stored before summaries carried links: parse once
        from dispatch.content.store import load_issue_doc

        with (
            Session(bind=session)
            if isinstance(session, Connection)
            else nullcontext(session) as orm
        ):
            links = list(load_issue_doc(orm.get_one(Issue, issue_id)).links)
    return tuple(str(u) for u in links)


class LinkTableCache:
    """campaign id → link table, LRU-bounded with a time-to-live; safe across threads."""

    def __init__(self, max_entries: int = MAX_ENTRIES, ttl: float = TTL_SECONDS):
        self._entries: OrderedDict[int, tuple[float, tuple[str, ...] | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_entries = max_entries
        self.ttl = ttl

    def get(
        self, session: Session | Connection | Engine, campaign_id: int
    ) -> tuple[str, ...] | None:
        """The link table; on a miss it is read through `session` (an Engine opens a connection)."""
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(campaign_id)
            if hit is not None and now - hit[0] < self.ttl:
                self._entries.move_to_end(campaign_id)
                return hit[1]
        if isinstance(session, Engine):
            with session.connect() as conn:
                links = load_links(conn, campaign_id)
        else:
            links = load_links(session, campaign_id)
        with self._lock:
            self._entries[campaign_id] = (now, links)
            self._entries.move_to_end(campaign_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return links

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
