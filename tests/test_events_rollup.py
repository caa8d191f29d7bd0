"""Events at scale: an old campaign's tracking detail becomes daily counts that keep every
number the reports show (per-link clicks, unique people, opens per day), the detail tables
shrink, and a late hit only adds to the day's count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dispatch import events, rollup
from dispatch.models import Campaign, CampaignRollup, Event, EventDaily
from dispatch.models.web import TrackingHit
from dispatch.tokens import make_click_token, make_open_token
from dispatch.vocabulary import CampaignStatus, EventKind
from dispatch.web.stats import campaign_stats
from test_web_support import seed

pytest_plugins = ["test_web_support"]

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
REPORT_AT = datetime.now(UTC) + timedelta(days=2)


def _hit(client, settings, delivery_id: int, link: int | None = None) -> None:
    if link is None:
        assert client.get(f"/t/o/{make_open_token(settings, delivery_id)}.gif").status_code == 200
    else:
        token = make_click_token(settings, delivery_id, link)
        assert client.get(f"/t/c/{token}", follow_redirects=False).status_code == 302


def _finish_long_ago(engine, campaign_id: int) -> None:
    with Session(engine) as session, session.begin():
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(status=CampaignStatus.FINISHED, finished_at=LONG_AGO, updated_at=LONG_AGO)
        )


def _daily(engine, campaign_id: int) -> dict[tuple[str, int], tuple[int, int, int]]:
    """(kind, link index) → (events, people, hits) summed over the days."""
    with Session(engine) as session:
        rows = session.execute(
            select(
                EventDaily.kind,
                EventDaily.link_index,
                func.sum(EventDaily.events),
                func.sum(EventDaily.people),
                func.sum(EventDaily.hits),
            )
            .where(EventDaily.campaign_id == campaign_id)
            .group_by(EventDaily.kind, EventDaily.link_index)
        ).all()
    return {(k, i): (int(e), int(p), int(h)) for k, i, e, p, h in rows}


def _report(session: Session, campaign_id: int) -> dict:
    """The campaign's report (dispatch.reports) without its freshness fields."""
    from dispatch.reports.report import campaign_report
    from dispatch.reports.rollup import refresh

    campaign = session.get(Campaign, campaign_id)
    refresh(session, campaign, now=REPORT_AT)  # as its periodic task does (hit counters too)
    report = campaign_report(session, campaign, None, now=REPORT_AT)
    for key in ("rolled_up_through", "tail_events", "hits_at"):
        report.pop(key, None)
    return report


def _count(engine, model, **where) -> int:
    with Session(engine) as session:
        query = select(func.count()).select_from(model)
        for name, value in where.items():
            query = query.where(getattr(model, name) == value)
        return int(session.scalar(query) or 0)


def test_rollup_keeps_per_link_clicks_unique_people_and_opens(client, engine, settings):
    s = seed(engine, settings, n_subscribers=3)
    d1, d2, d3 = s.delivery_ids
    for delivery, link in [(d1, None), (d1, None), (d1, None), (d2, None)]:
        _hit(client, settings, delivery, link)
    for delivery, link in [(d1, 0), (d1, 0), (d1, 1), (d2, 0), (d3, 1)]:
        _hit(client, settings, delivery, link)
    with Session(engine) as session, session.begin():
        for delivery in (d1, d2, d3, d3):  # as the engine writes them (d3 was tried twice)
            events.record(session, EventKind.SENT, campaign_id=s.campaign_id, delivery_id=delivery)
        # a person-level event stays forever
        events.record(session, EventKind.UNSUBSCRIBED, campaign_id=s.campaign_id, delivery_id=d3)
    _finish_long_ago(engine, s.campaign_id)
    with Session(engine) as session:
        before = campaign_stats(session, session.get(Campaign, s.campaign_id))
        report_before = _report(session, s.campaign_id)

    results = rollup.roll_up(engine, settings.replace(events_retention_days=400))

    assert [r.campaign_id for r in results] == [s.campaign_id]
    daily = _daily(engine, s.campaign_id)
    assert daily[("opened", -1)] == (2, 2, 4)  # two people opened, four loads of the pixel
    assert daily[("clicked", 0)] == (2, 2, 3)  # link 0: d1 twice, d2 once
    assert daily[("clicked", 1)] == (2, 2, 2)  # link 1: d1, d3
    assert daily[("clicked", -2)] == (3, 3, 5)  # three people clicked some link, five clicks
    assert daily[("sent", -1)] == (4, 3, 0)  # four sent events of three deliveries
    assert _count(engine, TrackingHit) == 0
    assert _count(engine, Event, kind="opened") == _count(engine, Event, kind="clicked") == 0
    assert _count(engine, Event, kind="sent") == 0
    assert _count(engine, Event, kind="unsubscribed") == 1
    with Session(engine) as session:
        after = campaign_stats(session, session.get(Campaign, s.campaign_id))
        mark = session.get(CampaignRollup, s.campaign_id)
        assert mark is not None and mark.hit_rows_removed == 6
        report_after = _report(session, s.campaign_id)
    assert report_after == report_before  # the reports (dispatch.reports) lose no number
    assert after["counts"] == before["counts"]
    assert after["counts"]["opened"] == 2 and after["counts"]["clicked"] == 3
    assert after["timeline"]["bucket_seconds"] == 86400
    assert sum(b["opened"] for b in after["timeline"]["buckets"]) == 2
    assert sum(b["clicked"] for b in after["timeline"]["buckets"]) == 3


def test_a_hit_after_the_rollup_only_adds_to_the_days_count(client, engine, settings, web_app):
    s = seed(engine, settings, n_subscribers=2)
    d1, d2 = s.delivery_ids
    _hit(client, settings, d1, 0)
    _finish_long_ago(engine, s.campaign_id)
    rollup.roll_up(engine, settings, campaign_ids=[s.campaign_id])
    web_app.state.hits._refs.clear()  # the process forgets refs cached before the rollup

    _hit(client, settings, d2, 0)
    _hit(client, settings, d2, 0)
    _hit(client, settings, d2, None)

    assert _count(engine, TrackingHit) == 0
    assert _count(engine, Event, kind="clicked") == _count(engine, Event, kind="opened") == 0
    daily = _daily(engine, s.campaign_id)
    assert daily[("clicked", 0)] == (1, 1, 3)  # people unchanged (unknown), hits counted
    assert daily[("opened", -1)] == (0, 0, 1)
    # a second run finds nothing left to roll up
    assert rollup.roll_up(engine, settings, now=datetime.now(UTC)) == []


def test_only_final_campaigns_past_the_retention_are_rolled_up(client, engine, settings):
    s = seed(engine, settings, n_subscribers=1)
    _hit(client, settings, s.delivery_ids[0], None)
    assert rollup.roll_up(engine, settings) == []  # running, and recent
    _finish_long_ago(engine, s.campaign_id)
    assert rollup.roll_up(engine, settings.replace(events_retention_days=0)) == []  # kept forever
    now = LONG_AGO + timedelta(days=399)
    assert rollup.roll_up(engine, settings.replace(events_retention_days=400), now=now) == []
    assert _count(engine, TrackingHit) == 1
    now = LONG_AGO + timedelta(days=401)
    done = rollup.roll_up(engine, settings.replace(events_retention_days=400), now=now)
    assert [r.campaign_id for r in done] == [s.campaign_id]
    assert _count(engine, TrackingHit) == 0


def test_cli_rolls_up_a_chosen_campaign(client, engine, settings, database_url):
    from click.testing import CliRunner

    from dispatch.cli import main

    s = seed(engine, settings, n_subscribers=1)
    _hit(client, settings, s.delivery_ids[0], 1)
    result = CliRunner().invoke(
        main,
        ["events", "rollup", "--campaign", str(s.campaign_id), "--json"],
        env={
            "DISPATCH_DATABASE_URL": database_url,
            "DISPATCH_DATA_DIR": str(settings.data_dir),
            "DISPATCH_SECRET_KEY": settings.secret_key,
        },
    )
    assert result.exit_code == 0, result.output
    assert f'"campaign_id": {s.campaign_id}' in result.output
    assert _daily(engine, s.campaign_id)[("clicked", 1)] == (1, 1, 1)


def test_timeline_buckets_are_counted_by_the_database(engine, settings):
    """The campaign timeline (first opens and clicks per bucket) is grouped in SQL: each first
    hit lands in the bucket of its time on both backends."""
    s = seed(engine, settings, n_subscribers=2)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        session.execute(update(Campaign).where(Campaign.id == s.campaign_id).values(started_at=t0))
        for kind, minutes in (("opened", 10), ("opened", 70), ("clicked", 70), ("clicked", 74)):
            events.record(
                session, kind, campaign_id=s.campaign_id, at=t0 + timedelta(minutes=minutes)
            )
    with Session(engine) as session:
        line = campaign_stats(session, session.get(Campaign, s.campaign_id))["timeline"]
    assert line["bucket_seconds"] == 300  # 74 minutes in at most 48 buckets
    buckets = line["buckets"]
    assert len(buckets) == 15 and buckets[0]["start"] == t0
    assert (buckets[2]["opened"], buckets[2]["clicked"]) == (1, 0)
    assert (buckets[14]["opened"], buckets[14]["clicked"]) == (1, 2)
    assert sum(b["opened"] + b["clicked"] for b in buckets) == 4
