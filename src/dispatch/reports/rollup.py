"""Add a campaign's settled events to its report tallies, once each, in id order.

Why "settled": whether a click was a scanner's can depend on the clicks around it (several
links within seconds: classify.in_burst), so an event is rolled up only once SETTLE_SECONDS
have passed; the report adds the newer ones (the tail) itself on each view. Each batch is one
transaction: the cells and the watermark move together, so a crash or a second worker adds
nothing twice (the watermark row is locked while a batch is added).

On PostgreSQL a batch is counted inside the server (dispatch.reports.sqltally: a few set-based
statements, SQL_BATCH events at a time); on SQLite, event by event in Python (tally.py).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from dispatch.models.base import utcnow
from dispatch.models.delivery import Campaign
from dispatch.reports import source, sqltally
from dispatch.reports.tally import REPEATING_KINDS, Cell, EventRec, tally

SETTLE_SECONDS = 60
BATCH = 20_000
SQL_BATCH = 5_000_000


def settled(events: list[EventRec], now: datetime) -> list[EventRec]:
    """The leading run of events old enough to roll up (an event dated in the future is as
    settled as it will get: it is rolled up, and the report shows it at the present)."""
    cutoff = now - timedelta(seconds=SETTLE_SECONDS)
    out = []
    for event in events:
        if cutoff < event.at <= now:
            break
        out.append(event)
    return out


def count(session: Session, campaign: Campaign, events: list[EventRec]) -> Counter[Cell]:
    """The cells these events add, given everything before the first of them."""
    if not events:
        return Counter()
    ids = [e.delivery_id for e in events]
    deliveries = source.deliveries(session, ids)
    repeating = [e.delivery_id for e in events if e.kind in REPEATING_KINDS]
    prior = source.prior(session, repeating, events[0].id)
    lists_of = source.list_resolver(
        session, campaign, [d.subscriber_id for d in deliveries.values()]
    )
    return tally(events, deliveries, prior, lists_of)


def in_server(session: Session) -> bool:
    """True when the tally runs as SQL (PostgreSQL), not in Python."""
    return session.get_bind().dialect.name == "postgresql"


def refresh(
    session: Session, campaign: Campaign, now: datetime | None = None, max_batches: int = 1000
) -> int:
    """Roll up the campaign's settled events and snapshot its hit counters; commits each
    batch. Returns how many events were added."""
    now = now or utcnow()
    if in_server(session):
        added = _refresh_in_server(session, campaign, now, max_batches)
    else:
        added = _refresh_in_python(session, campaign, now, max_batches)
    refresh_hits(session, campaign, now)
    return added


def _refresh_in_python(session: Session, campaign: Campaign, now: datetime, batches: int) -> int:
    added = 0
    for _ in range(batches):
        mark = source.lock_watermark(session, campaign.id)
        events = settled(source.events_after(session, campaign.id, mark, BATCH), now)
        if not events:
            session.rollback()
            break
        source.add_tallies(session, campaign.id, count(session, campaign, events), events[-1].id)
        session.commit()
        added += len(events)
        if len(events) < BATCH:
            break
    return added


def _refresh_in_server(session: Session, campaign: Campaign, now: datetime, batches: int) -> int:
    """The same in SQL_BATCH-event ranges, each ending before the first unsettled event."""
    added = 0
    cutoff = now - timedelta(seconds=SETTLE_SECONDS)
    for _ in range(batches):
        mark = source.lock_watermark(session, campaign.id)
        stop = sqltally.unsettled_from(session, campaign.id, mark, cutoff, now)
        n, last = sqltally.range_facts(session, campaign.id, mark, SQL_BATCH, stop)
        if not n:
            session.rollback()
            break
        cells = sqltally.count_range(session, campaign.id, _list_ids(campaign), mark, last, n)
        source.add_tallies(session, campaign.id, cells, last)
        session.commit()
        added += n
        if n < SQL_BATCH:
            break
    return added


def _list_ids(campaign: Campaign) -> list[int]:
    return [int(i) for i in campaign.list_ids or []]


def tail_cells(
    session: Session, campaign: Campaign, after_id: int, limit: int
) -> tuple[int, Counter[Cell] | None]:
    """(how many, their cells) of the campaign's report events after `after_id`, when at most
    `limit`; (more than limit, None) otherwise."""
    if in_server(session):
        n, last = sqltally.range_facts(session, campaign.id, after_id, limit + 1)
        if n > limit:
            return n, None
        return n, sqltally.count_range(session, campaign.id, _list_ids(campaign), after_id, last, n)
    tail = source.events_after(session, campaign.id, after_id, limit + 1)
    if len(tail) > limit:
        return len(tail), None
    return len(tail), count(session, campaign, tail)


def refresh_hits(session: Session, campaign: Campaign, now: datetime | None = None) -> None:
    """Snapshot the campaign's hit counters (the watermark row locked meanwhile); commits."""
    source.lock_watermark(session, campaign.id)
    source.snapshot_hits(session, campaign.id, now or utcnow())
    session.commit()


def refresh_recent(session: Session, days: int = 30) -> dict[int, int]:
    """Refresh every campaign running or finished within `days` (the periodic task)."""
    done = {}
    for campaign_id in source.recent_campaigns(session, utcnow() - timedelta(days=days)):
        campaign = source.campaign(session, campaign_id)
        if campaign is not None:
            done[campaign_id] = refresh(session, campaign)
    return done
