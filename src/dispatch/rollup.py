"""Events at scale: roll an old campaign's per-recipient tracking detail into daily counts.

Why: a campaign to 1,000,000 people leaves about 2.5 million rows behind (queued and sent
events, first opens and clicks, one hit counter per delivery and link); a monthly bulletin
piles up tens of millions a year. Every tracking hit and every admin page pays for the size of
those tables and their indexes, while nobody reads a two-year-old campaign per recipient. So
once a campaign has been finished for `events_retention_days` its detail becomes rows of
`event_daily` (models.event.EventDaily): per campaign, kind, link and UTC day, the number of
events, of distinct people and of hits. The detail rows are then deleted (and on PostgreSQL the
tables vacuumed, since autovacuum may be off), so the hot tables hold about the last
retention period of campaigns whatever the history.

What is kept: per campaign per link per day, first clicks, unique clickers and every click
(repeats included, counted on the person's first day); the same for opens; unique clickers of
any link per day (ANY_LINK_INDEX); per kind per day the queued, sent, deferred, throttled,
skipped and failed events with their distinct deliveries. Summing a campaign's days gives its
unique openers and clickers exactly. What is lost: who opened or clicked (delivery and
subscriber ids), the time of day of each first hit, the time of repeat hits, and the event
data (URL, SMTP reply text) — see docs/performance.md. Events about people rather than a send
(bounces, complaints, unsubscribes, subscriptions, consent, suppressions) are never rolled up.

A rolled-up campaign is marked in `campaign_rollups`; the tracking hot path (web/hits.py) then
adds a late hit to its day's `hits` only. Rolling up is idempotent: a second run finds no
detail left (or only hits recorded by a process that had not yet seen the mark) and adds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, func, or_, select, text
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.log import get_logger
from dispatch.models import Campaign, CampaignRollup, Event, EventDaily, utcnow
from dispatch.models.event import ANY_LINK_INDEX, NO_LINK_INDEX
from dispatch.models.web import OPEN_LINK_INDEX, TrackingHit
from dispatch.vocabulary import CampaignStatus, EventKind

log = get_logger("dispatch.rollup")

# per-delivery events of a send, rolled up by kind and day (opened/clicked come from the hits)
SEND_KINDS = (
    EventKind.QUEUED,
    EventKind.SENT,
    EventKind.DEFERRED,
    EventKind.THROTTLED,
    EventKind.SKIPPED,
    EventKind.FAILED,
)
TRACKING_KINDS = (EventKind.OPENED, EventKind.CLICKED)
ROLLED_KINDS = (*SEND_KINDS, *TRACKING_KINDS)
FINAL_STATUSES = (CampaignStatus.FINISHED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)
DAILY_KEY = ("campaign_id", "kind", "link_index", "day")


@dataclass(frozen=True)
class RollupResult:
    campaign_id: int
    daily_rows: int  # event_daily rows written or added to
    events_removed: int
    hit_rows_removed: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _day_of(engine_or_conn: Engine | Connection, column: Any) -> Any:
    """The UTC calendar day of a timestamp column, in SQL."""
    if engine_or_conn.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def cutoff(settings: Settings, now: datetime | None = None) -> datetime | None:
    """Campaigns finished before this are rolled up; None when retention is off (0)."""
    if settings.events_retention_days <= 0:
        return None
    return (now or utcnow()) - timedelta(days=settings.events_retention_days)


def due_campaigns(session: Session, before: datetime) -> list[int]:
    """Final campaigns last changed before `before` with detail still to roll up."""
    rolled = exists().where(CampaignRollup.campaign_id == Campaign.id)
    stragglers = exists().where(TrackingHit.campaign_id == Campaign.id)
    query = (
        select(Campaign.id)
        .where(
            Campaign.status.in_(FINAL_STATUSES),
            func.coalesce(Campaign.finished_at, Campaign.updated_at) < before,
            or_(~rolled, stragglers),
        )
        .order_by(Campaign.id)
    )
    return list(session.scalars(query))


def _send_rows(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    e = Event.__table__.c
    day = _day_of(conn, e.occurred_at)
    query = (
        select(e.kind, day, func.count(), func.count(func.distinct(e.delivery_id)))
        .where(e.campaign_id == campaign_id, e.kind.in_([str(k) for k in SEND_KINDS]))
        .group_by(e.kind, day)
    )
    return [
        _daily(campaign_id, kind, NO_LINK_INDEX, at, events=n, people=people, hits=0)
        for kind, at, n, people in conn.execute(query)
    ]


def _tracking_rows(conn: Connection, campaign_id: int) -> list[dict[str, Any]]:
    """Opens and per-link clicks from the hit counters: one row per person and link, so
    counting rows by their first day gives first hits and unique people at once."""
    h = TrackingHit.__table__.c
    day = _day_of(conn, h.first_at)
    query = (
        select(h.link_index, day, func.count(), func.sum(h.count))
        .where(h.campaign_id == campaign_id)
        .group_by(h.link_index, day)
    )
    rows = []
    for link_index, at, n, hits in conn.execute(query):
        kind = EventKind.OPENED if link_index == OPEN_LINK_INDEX else EventKind.CLICKED
        rows.append(_daily(campaign_id, kind, link_index, at, events=n, people=n, hits=hits))
    # clickers of any link: each delivery once, on the day of its first click on any link
    first = (
        select(func.min(h.first_at).label("at"), func.sum(h.count).label("hits"))
        .where(h.campaign_id == campaign_id, h.link_index >= 0)
        .group_by(h.delivery_id)
        .subquery()
    )
    any_day = _day_of(conn, first.c.at)
    for at, n, hits in conn.execute(
        select(any_day, func.count(), func.sum(first.c.hits)).group_by(any_day)
    ):
        kind = EventKind.CLICKED
        rows.append(_daily(campaign_id, kind, ANY_LINK_INDEX, at, events=n, people=n, hits=hits))
    return rows


def _daily(
    campaign_id: int, kind: str, link_index: int, at: Any, *, events: int, people: int, hits: int
) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "kind": str(kind),
        "link_index": int(link_index),
        "day": _as_date(at),
        "events": int(events or 0),
        "people": int(people or 0),
        "hits": int(hits or 0),
    }


def add_daily(conn: Connection | Session, rows: Sequence[dict[str, Any]]) -> None:
    """Add `rows` to event_daily: new keys inserted, existing ones summed (one statement)."""
    if not rows:
        return
    bind = conn.get_bind() if isinstance(conn, Session) else conn
    if bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = EventDaily.__table__
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(DAILY_KEY),
        set_={c: table.c[c] + stmt.excluded[c] for c in ("events", "people", "hits")},
    )
    conn.execute(stmt, list(rows))


def _settle_reports(engine: Engine, campaign_id: int) -> None:
    """Bring the campaign's report tallies (dispatch.reports) up to date before its events go:
    the report keeps counting from its tallies, which never read deleted rows again."""
    from dispatch.reports.rollup import refresh

    with Session(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is not None:
            refresh(session, campaign, now=utcnow() + timedelta(days=1))


def roll_up_campaign(engine: Engine, campaign_id: int) -> RollupResult:
    """One campaign's detail into event_daily, the detail deleted, the mark set: one commit
    (after the reports' own tallies have taken in every event)."""
    _settle_reports(engine, campaign_id)
    with engine.begin() as conn:
        rows = _send_rows(conn, campaign_id) + _tracking_rows(conn, campaign_id)
        add_daily(conn, rows)
        kinds = [str(k) for k in ROLLED_KINDS]
        e, h = Event.__table__.c, TrackingHit.__table__.c
        removed = conn.execute(
            delete(Event.__table__).where(e.campaign_id == campaign_id, e.kind.in_(kinds))
        ).rowcount
        hit_rows = conn.execute(
            delete(TrackingHit.__table__).where(h.campaign_id == campaign_id)
        ).rowcount
        mark = CampaignRollup.__table__
        updated = conn.execute(
            mark.update()
            .where(mark.c.campaign_id == campaign_id)
            .values(
                events_removed=mark.c.events_removed + removed,
                hit_rows_removed=mark.c.hit_rows_removed + hit_rows,
            )
        ).rowcount
        if not updated:
            conn.execute(
                mark.insert().values(
                    campaign_id=campaign_id,
                    rolled_at=utcnow(),
                    events_removed=removed,
                    hit_rows_removed=hit_rows,
                )
            )
    log.info(
        "rollup.campaign",
        campaign_id=campaign_id,
        daily_rows=len(rows),
        events_removed=removed,
        hit_rows_removed=hit_rows,
    )
    return RollupResult(campaign_id, len(rows), removed, hit_rows)


def vacuum(engine: Engine) -> None:
    """Make the deleted rows' space reusable and refresh statistics (PostgreSQL; autovacuum
    may be off, and a planner that still sees millions of rows picks the wrong plans)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("events", "tracking_hits", "event_daily"):
            conn.execute(text(f"VACUUM (ANALYZE) {table}"))


def roll_up(
    engine: Engine,
    settings: Settings,
    *,
    now: datetime | None = None,
    campaign_ids: Iterable[int] | None = None,
) -> list[RollupResult]:
    """Roll up every campaign past the retention (or exactly `campaign_ids`), then vacuum."""
    if campaign_ids is None:
        before = cutoff(settings, now)
        if before is None:
            return []
        with Session(engine) as session:
            campaign_ids = due_campaigns(session, before)
    results = [roll_up_campaign(engine, campaign_id) for campaign_id in campaign_ids]
    if results:
        vacuum(engine)
    return results


def is_rolled_up(session: Session, campaign_id: int) -> bool:
    return session.get(CampaignRollup, campaign_id) is not None


def rolled_engagement(session: Session, campaign_id: int) -> tuple[int, int]:
    """(unique openers, unique clickers of any link) of a rolled-up campaign."""
    d = EventDaily.__table__.c
    found = dict(
        session.execute(
            select(d.link_index, func.coalesce(func.sum(d.people), 0))
            .where(d.campaign_id == campaign_id, d.link_index.in_((NO_LINK_INDEX, ANY_LINK_INDEX)))
            .where(d.kind.in_([str(k) for k in TRACKING_KINDS]))
            .group_by(d.link_index)
        ).all()
    )
    return int(found.get(NO_LINK_INDEX, 0)), int(found.get(ANY_LINK_INDEX, 0))


def rolled_days(session: Session, campaign_id: int) -> list[tuple[date, int, int]]:
    """(day, first opens, first clicks on any link) of a rolled-up campaign, by day."""
    d = EventDaily.__table__.c
    days: dict[date, list[int]] = {}
    for link_index, day, people in session.execute(
        select(d.link_index, d.day, d.people).where(
            d.campaign_id == campaign_id,
            d.kind.in_([str(k) for k in TRACKING_KINDS]),
            d.link_index.in_((NO_LINK_INDEX, ANY_LINK_INDEX)),
        )
    ):
        slot = days.setdefault(_as_date(day), [0, 0])
        slot[0 if link_index == NO_LINK_INDEX else 1] += int(people)
    return [(day, opened, clicked) for day, (opened, clicked) in sorted(days.items())]
