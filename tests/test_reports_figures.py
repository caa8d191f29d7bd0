"""The report's numbers equal the ones counted by hand from a known set of tracked events.

Seven recipients d0..d6 of one campaign sent at T0 (d5 bounced at sending, d4 bounced later):

    d0  open T0+2h, iPhone Mail (person)      clicks link 0 and link 2 minutes apart (person)
    d1  open T0+1min, bare "Mozilla/5.0" from 17.58.1.2 (Apple MPP)        complaint
    d2  open T0+3s, desktop Chrome (scanner: seconds after acceptance)
        clicks links 0, 1, 2 within 2 s (scanner: all at once)
    d3  open T0+30h, QQ Mail on Android (person)   click link 1 (person)   unsubscribed twice
    d4  bounced after acceptance (a DSN three hours later)
    d5  bounced at sending
    d6  open dated two days in the future, Thunderbird (person; shown at the present)

By hand: sent 6, bounced 2 (1 after acceptance), delivered 5; opened by people 3 (d0, d3, d6),
MPP 1, scanners 1; clicked by people 2 (d0, d3), by scanners 1 (d2); complained 1,
unsubscribed 1 (once, though two events); open hits 7 (3 + 1 + 1 + 2), link 0 hits 3.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from dispatch.events import event_row, insert_rows
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.web import TrackingHit
from dispatch.reports import report, rollup
from dispatch.vocabulary import EventKind
from test_web_support import seed

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=3, hours=5)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
QQMAIL = (
    "Mozilla/5.0 (Linux; Android 13; V2227A) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Version/4.0 Chrome/98.0 Mobile Safari/537.36 QQMail/6.5.0"
)
THUNDERBIRD = "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0"


def _events(campaign_id: int, d: list[int]) -> list[dict]:
    def ev(kind, i, at, **data):
        return event_row(kind, campaign_id=campaign_id, delivery_id=d[i], data=data, at=at)

    def click(i, link, at, ua, ip="203.0.113.9"):
        return ev(EventKind.CLICKED, i, at, link_index=link, url=f"u{link}", ua=ua, ip=ip)

    s = timedelta(seconds=1)
    rows = [ev(EventKind.SENT, i, T0) for i in (0, 1, 2, 3, 4, 6)]
    rows += [
        ev(EventKind.BOUNCED, 5, T0),
        ev(EventKind.OPENED, 1, T0 + 60 * s, ua="Mozilla/5.0", ip="17.58.1.2"),
        ev(EventKind.OPENED, 2, T0 + 3 * s, ua=CHROME, ip="198.51.100.7"),
        click(2, 0, T0 + 3 * s, CHROME),
        click(2, 1, T0 + 4 * s, CHROME),
        click(2, 2, T0 + 5 * s, CHROME),
        ev(EventKind.COMPLAINT, 1, T0 + timedelta(hours=1)),
        ev(EventKind.OPENED, 0, T0 + timedelta(hours=2), ua=IPHONE, ip="203.0.113.5"),
        click(0, 0, T0 + timedelta(hours=2, minutes=1), IPHONE),
        click(0, 2, T0 + timedelta(hours=2, minutes=5), IPHONE),
        ev(EventKind.BOUNCE_HARD, 4, T0 + timedelta(hours=3)),
        ev(EventKind.OPENED, 3, T0 + timedelta(hours=30), ua=QQMAIL, ip="203.0.113.6"),
        click(3, 1, T0 + timedelta(hours=30, minutes=2), QQMAIL),
        ev(EventKind.UNSUBSCRIBED, 3, T0 + timedelta(hours=31)),
        ev(EventKind.UNSUBSCRIBED, 3, T0 + timedelta(hours=31, seconds=2)),
        ev(EventKind.OPENED, 6, NOW + timedelta(days=2), ua=THUNDERBIRD, ip="203.0.113.7"),
    ]
    return rows


HITS = {(0, -1): 3, (1, -1): 1, (2, -1): 1, (3, -1): 2, (0, 0): 2, (2, 0): 1, (2, 1): 1}


@pytest.fixture
def known(engine, settings):
    data = seed(engine, settings, n_subscribers=7)
    with Session(engine) as session, session.begin():
        campaign = session.get_one(Campaign, data.campaign_id)
        campaign.started_at = T0
        d = data.delivery_ids
        sent = [d[i] for i in (0, 1, 2, 3, 4, 6)]
        session.query(Delivery).filter(Delivery.id.in_(sent)).update(
            {"sent_at": T0, "status": "sent"}, synchronize_session=False
        )
        insert_rows(session, _events(campaign.id, d))
        for (i, link), count in HITS.items():
            session.add(
                TrackingHit(delivery_id=d[i], link_index=link, campaign_id=campaign.id, count=count)
            )
    return data


def _report(engine, data):
    with Session(engine) as session:
        campaign = session.get_one(Campaign, data.campaign_id)
        return report.campaign_report(session, campaign, None, now=NOW)


def _check(r: dict) -> None:
    counts, rates = r["counts"], r["rates"]
    assert (counts["sent"], counts["delivered"], counts["bounced"]) == (6, 5, 2)
    assert counts["bounced_late"] == 1
    assert counts["opened"] == {"person": 3, "mpp": 1, "scanner": 1, "machine": 2, "all": 5}
    assert counts["clicked"] == {"person": 2, "mpp": 0, "scanner": 1, "machine": 1, "all": 3}
    assert (counts["complained"], counts["unsubscribed"]) == (1, 1)
    assert rates["delivered"] == round(5 / 6, 4)
    assert rates["bounced"] == round(2 / 7, 4)
    assert (rates["opened"], rates["opened_all"]) == (0.6, 1.0)
    assert (rates["clicked"], rates["clicked_all"]) == (0.4, 0.6)
    assert rates["click_to_open"] == round(2 / 3, 4)
    assert rates["complained"] == rates["unsubscribed"] == 0.2
    links = {link["index"]: link for link in r["links"]}
    assert {i: (x["clickers"]["person"], x["clickers"]["scanner"]) for i, x in links.items()} == {
        0: (1, 1),
        1: (1, 1),
        2: (1, 1),
    }


def test_tail_counts_equal_hand_counts(engine, known):
    """Nothing rolled up: the report tallies every event itself."""
    r = _report(engine, known)
    assert r["rolled_up_through"] == 0
    _check(r)


def test_rollup_in_small_batches_counts_the_same(engine, known, monkeypatch):
    monkeypatch.setattr(rollup, "BATCH", 4)  # people counted once across batch boundaries
    with Session(engine) as session:
        campaign = session.get_one(Campaign, known.campaign_id)
        added = rollup.refresh(session, campaign, now=NOW)
        assert added == 22  # every event (the future-dated one too)
        assert rollup.refresh(session, campaign, now=NOW) == 0  # nothing added twice
    r = _report(engine, known)
    assert r["tail_events"] == 0
    _check(r)
    assert r["hits"] == {"opens": 7, "clicks": 4}
    assert {x["index"]: x["hits"] for x in r["links"]} == {0: 3, 1: 1, 2: 0}


def test_timeline_hourly_two_days_then_daily_ending_now(engine, known):
    r = _report(engine, known)
    buckets = r["timeline"]["buckets"]
    assert [b["hours"] for b in buckets] == [1] * 48 + [24, 24]
    assert buckets[0]["start"] == T0.replace(tzinfo=None)
    last = buckets[-1]
    assert last["start"] <= NOW.replace(tzinfo=None) < last["start"] + timedelta(hours=24)
    assert buckets[2]["opened"]["person"] == 1  # d0 at T0+2h
    assert buckets[30]["opened"]["person"] == 1  # d3 at T0+30h
    assert buckets[0]["opened"] == {"person": 0, "mpp": 1, "scanner": 1, "machine": 2, "all": 2}
    assert buckets[0]["clicked"]["scanner"] == 3
    assert last["opened"]["person"] == 1  # d6's future-dated open, shown at the present
    assert r["timeline"]["future"] == 1


def test_breakdowns_by_client_device_provider_and_list(engine, known):
    r = _report(engine, known)
    clients = {row["key"]: row["opened"]["person"] for row in r["by_client"]}
    assert clients["QQ Mail"] == 1 and clients["Thunderbird"] == 1
    assert clients["Apple Mail"] == 1
    devices = {row["key"]: row["opened"]["person"] for row in r["by_device"]}
    assert devices["mobile"] == 2 and devices["desktop"] == 1
    (only_list,) = r["by_list"]
    assert only_list["name"] == "Members" and only_list["counts"]["sent"] == 6
    assert sum(row["counts"]["sent"] for row in r["by_provider"]) == 6


def test_periodic_rollup_takes_recent_campaigns(engine, known):
    from dispatch.tasks import REPORT_ROLLUP, beat_schedule

    with Session(engine) as session:
        done = rollup.refresh_recent(session)
    assert done == {known.campaign_id: 22}
    r = _report(engine, known)
    assert r["rolled_up_through"] > 0 and r["tail_events"] == 0
    _check(r)
    from dispatch.config import Settings

    assert beat_schedule(Settings())["dispatch-report-rollup"]["task"] == REPORT_ROLLUP
