"""A closed campaign's figures, counted once and stored (models.Tally), not on every view.

Why: the campaign page, its stats and progress and the deliverability page count a
campaign's deliveries and events; at a million recipients that is seconds of database work per
view. Once a campaign is closed (finished, cancelled, failed) its figures change only when
something happens to it later, and each such change leaves a trace that one key probe finds:
a delivery row's `updated_at` (late bounces, retries), the campaign row's `updated_at`
(a retry reopening it) or an event newer than the stored watermark (opens, clicks, bounces,
complaints, and the events without a campaign of PEOPLE_KINDS: unsubscribes, erasures,
merges). A stored tally is used only when none of these exists, so what is shown is what
counting now would give; otherwise the figures are counted again and stored. A running
campaign is always counted live.

Two safety nets for writes that commit late (a transaction that took its timestamp or event id
before the tally was counted but committed after): the probes look `MARGIN` before the count,
and a tally older than `MAX_AGE` is counted again whatever the probes say.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.models import Event, utcnow
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.tally import LIST_KIND, Tally
from dispatch.vocabulary import CampaignStatus, EventKind

CLOSED = (CampaignStatus.FINISHED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)
MARGIN = timedelta(seconds=60)
MAX_AGE = timedelta(hours=1)
# events without a campaign that change a campaign's figures: an unsubscribe (its stats count
# them), an erasure (the person's events are deleted), a merge (their events change owner);
# a signup or a confirmation does not, so a busy subscribe form does not void every tally
PEOPLE_KINDS = (EventKind.UNSUBSCRIBED, EventKind.DELETED, EventKind.MERGED)


def _encode(value: Any) -> Any:
    """JSON-safe copy: datetimes become {"$dt": iso} (the figures carry times)."""
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def storable(campaign: Campaign, now: datetime | None = None) -> bool:
    """Closed, and not changed in the last MARGIN (its last rows are committed)."""
    now = now or utcnow()
    return campaign.status in CLOSED and campaign.updated_at < now - MARGIN


TRACKING_KINDS = (EventKind.OPENED, EventKind.CLICKED)


def _newer(session: Session, campaign: Campaign, tally: Tally, *, tracking: bool) -> bool:
    """Is there an event past the tally's watermark: an open or click of the campaign
    (`tracking`), else any other event of it or a campaign-less one of PEOPLE_KINDS?"""
    own = Event.campaign_id == campaign.id
    if tracking:
        where = and_(own, Event.kind.in_(TRACKING_KINDS))
    else:
        people = and_(Event.campaign_id.is_(None), Event.kind.in_(PEOPLE_KINDS))
        where = or_(and_(own, Event.kind.not_in(TRACKING_KINDS)), people)
    found = session.scalar(select(Event.id).where(Event.id > tally.event_watermark, where).limit(1))
    return found is not None


def check(session: Session, campaign: Campaign, tally: Tally, ignore_tracking: bool = False) -> str:
    """How `tally` stands: "valid" when nothing happened to the campaign since it was counted
    (key probes), or only opens and clicks that do not matter here (`ignore_tracking`);
    "tracking" when only opens or clicks came; "stale" otherwise."""
    now = utcnow()
    if now - tally.computed_at > MAX_AGE or not storable(campaign, now):
        return "stale"
    since = tally.computed_at - MARGIN
    if campaign.updated_at > since:
        return "stale"
    changed = session.scalar(
        select(Delivery.id)
        .where(Delivery.campaign_id == campaign.id, Delivery.updated_at > since)
        .limit(1)
    )
    if changed is not None or _newer(session, campaign, tally, tracking=False):
        return "stale"
    if not ignore_tracking and _newer(session, campaign, tally, tracking=True):
        return "tracking"
    return "valid"


Grow = Callable[[dict[str, Any], int, int], "dict[str, Any] | None"]


def figures(
    session: Session,
    kind: str,
    campaign: Campaign,
    count: Callable[[], dict[str, Any]],
    *,
    ignore_tracking: bool = False,
    grow: Grow | None = None,
) -> dict[str, Any]:
    """`count()`'s figures for `campaign`, from the stored tally while it is still valid.
    `ignore_tracking`: opens and clicks do not change these figures. `grow(figures, after,
    upto)`, when given, adds the opens and clicks with event ids in (after, upto] to stored
    figures (None: it cannot; count again)."""
    if not storable(campaign):
        return count()
    stored = session.get(Tally, (kind, campaign.id))
    state = "stale" if stored is None else check(session, campaign, stored, ignore_tracking)
    if state == "valid":
        return _decode(stored.data)  # type: ignore[union-attr]
    # the watermark and the time are taken before counting: whatever commits while counting
    # is then newer than both and voids the tally at the next read
    watermark = int(session.scalar(select(func.max(Event.id))) or 0)
    if state == "tracking" and grow is not None and stored is not None:
        grown = grow(_decode(stored.data), stored.event_watermark, watermark)
        if grown is not None:  # the last full count's time stays: MAX_AGE counts from it
            _store(
                session, stored, (kind, campaign.id), _encode(grown), watermark, stored.computed_at
            )
            return grown
    counted_at = utcnow()
    found = count()
    _store(session, stored, (kind, campaign.id), _encode(found), watermark, counted_at)
    return found


def _store(
    session: Session,
    stored: Tally | None,
    key: tuple[str, int],
    data: Any,
    watermark: int,
    at: datetime,
) -> None:
    """Write the tally inside a savepoint of the caller's transaction (the web's request
    session commits when the route returns); a concurrent view that stored it first wins."""
    try:
        with session.begin_nested():
            if stored is None:
                stored = Tally(kind=key[0], ref_id=key[1])
                session.add(stored)
            stored.data, stored.event_watermark, stored.computed_at = data, watermark, at
    except IntegrityError:
        pass


# -- lists: member counts by status, voided by any write to the subscriptions -----------------
#
# A list's counts change through a dozen paths (signup, import, unsubscribe, bounce, merge,
# erasure, WeChat followers …). Instead of each path keeping a counter, every connection notes
# when it writes `subscriptions` (or deletes subscribers or lists, which cascade) and, as it
# commits, deletes the stored list tallies in the same transaction. A reader stores a tally in
# two steps: an empty row committed first, then the counts written only if that row is still
# there; a write committed in between has deleted it, so its count is never kept.

LIST_MAX_AGE = timedelta(minutes=10)


def list_counts(
    session: Session, list_id: int, count: Callable[[Session], dict[str, int]]
) -> dict[str, int]:
    """A list's member counts by status (`count(session)`), stored until the subscriptions
    change. For reads only: the counting runs in a session of its own, after step 1."""
    stored = session.get(Tally, (LIST_KIND, list_id))
    if stored is not None and stored.data and utcnow() - stored.computed_at < LIST_MAX_AGE:
        return dict(stored.data)
    token = secrets.randbelow(2**62)
    with Session(session.get_bind()) as own:
        with own.begin():  # step 1: the empty row, committed before counting
            own.execute(delete(Tally).where(Tally.kind == LIST_KIND, Tally.ref_id == list_id))
            own.add(
                Tally(
                    kind=LIST_KIND,
                    ref_id=list_id,
                    data={},
                    event_watermark=token,
                    computed_at=utcnow(),
                )
            )
        with own.begin():  # a transaction (and, on SQLite, a snapshot) newer than step 1
            found = count(own)
        with own.begin():  # step 2: kept only if no write deleted the row meanwhile
            own.execute(
                update(Tally)
                .where(
                    Tally.kind == LIST_KIND,
                    Tally.ref_id == list_id,
                    Tally.event_watermark == token,
                )
                .values(data=found)
            )
    return found


# -- a campaign still sending: its figures counted at most every LIVE_FRESH, never in a view --
#
# A running campaign's rows change with every message, so nothing can be stored for long; but
# counting a million rows (1 s of database CPU) on each poll of the progress bar (one a second
# per open page) is what made its page slow. A view reads the last count when it is younger
# than LIVE_MAX, and when it is older than LIVE_FRESH it starts a new count in a thread of its
# own and answers at once with the last one, whose time it shows (`counted_at`): the figures
# are at most a few seconds old, each campaign is counted at most once per LIVE_FRESH whatever
# the number of viewers, and only a first view (or one after LIVE_MAX) waits for a count.

LIVE_FRESH = timedelta(seconds=5)
LIVE_MAX = timedelta(seconds=90)  # longer than the beat period (tasks.RECOUNT_SECONDS)
LIVE_PREFIX = "live-"
_refreshing: set[tuple[str, int]] = set()
_refreshing_lock = threading.Lock()
# tests set this to False: the recount then runs before the view answers (deterministic)
IN_BACKGROUND = True


def live(
    session: Session, kind: str, campaign: Campaign, count: Callable[[Session], dict[str, Any]]
) -> dict[str, Any]:
    """`count(session)`'s figures for a campaign that is not closed, at most LIVE_FRESH old
    (see above), with `counted_at`. On PostgreSQL the count is stored by a session of its own
    (a read-only view stays read-only); on SQLite (one writer at a time, the caller's session
    may hold the lock) it is counted in the view and stored in the caller's transaction."""
    key = (LIVE_PREFIX + kind, campaign.id)
    stored = session.get(Tally, key)
    age = None if stored is None or not stored.data else utcnow() - stored.computed_at
    own_writer = session.get_bind().dialect.name == "postgresql"
    if age is not None and (age <= LIVE_FRESH or (own_writer and age <= LIVE_MAX)):
        if age > LIVE_FRESH:
            _refresh_later(session.get_bind(), key, count)
        return {**_decode(stored.data), "counted_at": stored.computed_at}  # type: ignore[union-attr]
    if own_writer:
        return _count_live(session.get_bind(), key, count)
    counted_at = utcnow()
    found = count(session)
    _store(session, stored, key, _encode(found), 0, counted_at)
    return {**found, "counted_at": counted_at}


def _count_live(
    bind: Any, key: tuple[str, int], count: Callable[[Session], dict[str, Any]]
) -> dict[str, Any]:
    with Session(bind) as own:
        counted_at = utcnow()
        with own.begin():
            found = count(own)
        with own.begin():
            _store(own, own.get(Tally, key), key, _encode(found), 0, counted_at)
    return {**found, "counted_at": counted_at}


def _refresh_later(
    bind: Any, key: tuple[str, int], count: Callable[[Session], dict[str, Any]]
) -> None:
    """One recount per key at a time in this process (a second view meanwhile reads the
    stored figures)."""
    with _refreshing_lock:
        if key in _refreshing:
            return
        _refreshing.add(key)

    def run() -> None:
        try:
            _count_live(bind, key, count)
        except Exception:  # noqa: BLE001 - the next view counts again (or after LIVE_MAX)
            pass
        finally:
            with _refreshing_lock:
                _refreshing.discard(key)

    if IN_BACKGROUND:
        threading.Thread(target=run, name=f"tally-{key[0]}-{key[1]}", daemon=True).start()
    else:
        run()


# -- a closed campaign's stale tallies counted again by the beat, before a view needs them ---


def recount_stale(engine: Any, settings: Any) -> dict[str, int]:
    """Count again every stored figure of a closed campaign that a late change (a bounce, an
    unsubscribe, a complaint, a retry) made stale, so the next view reads it instead of
    counting a million rows itself; then the deliverability page's sums (its stale parts are
    counted again, the running campaigns' live figures refreshed). Each campaign in its own
    transaction. Returns {"checked": n, "recounted": m, "running": r}."""
    from dispatch.deliverability.stats import overview
    from dispatch.web.stats import campaign_progress, campaign_stats

    views = {"stats": campaign_stats, "progress": campaign_progress}
    with Session(engine) as session:
        keys = session.execute(
            select(Tally.kind, Tally.ref_id).where(Tally.kind.in_(tuple(views)))
        ).all()
    checked = recounted = 0
    for kind, ref_id in keys:
        with Session(engine) as session, session.begin():
            stored = session.get(Tally, (kind, ref_id))
            campaign = session.get(Campaign, ref_id)
            if stored is None or campaign is None or not storable(campaign):
                continue
            checked += 1
            if check(session, campaign, stored, ignore_tracking=kind == "progress") != "valid":
                views[kind](session, campaign)
                recounted += 1
    primed = _prime_running(engine)
    with Session(engine) as session, session.begin():
        overview(session, settings)
    return {"checked": checked, "recounted": recounted, "running": primed}


def _prime_running(engine: Any) -> int:
    """Count the sending campaigns' progress and stats (LIVE_MAX is longer than the beat's
    period), so even the first view of such a page reads a count instead of waiting for one."""
    from dispatch.delivery import campaigns
    from dispatch.web.stats import LIVE, count_stats_of

    with Session(engine) as session:
        running = list(session.scalars(select(Campaign.id).where(Campaign.status.in_(LIVE))))
    for cid in running:
        _count_live(
            engine, (LIVE_PREFIX + "progress", cid), lambda s, c=cid: campaigns.progress(s, c)
        )
        _count_live(engine, (LIVE_PREFIX + "stats", cid), lambda s, c=cid: count_stats_of(s, c))
    return len(running)
