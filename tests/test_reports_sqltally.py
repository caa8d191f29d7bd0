"""The tally in SQL (PostgreSQL) gives the same cells as the tally in Python, event by event.

A varied, seeded data set: two lists (people on one, the other or both), deliveries without a
provider or acceptance time, events without a delivery or with one that does not exist, repeated
unsubscribes, bounces and opens, MPP and scanner agents and networks, broken IPs, odd link
indexes, all-at-once clicks, 10 KB and missing agents, events dated in the future. Counted whole
by tally.tally (the reference) and by sqltally in one range and in several (both ways of reading
the history), every cell must agree.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from dispatch.events import event_row, insert_rows
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.subscriber import Subscriber
from dispatch.reports import rollup, source, sqltally
from dispatch.subscribers import service
from dispatch.vocabulary import EventKind
from test_web_support import seed

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
AGENTS = [
    None,
    "",
    "Mozilla/5.0",
    " mozilla/5.0 ",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13) AppleWebKit/537.36 Mobile Safari/537.36 QQMail/6.5.0",
    "Barracuda Sentinel (EE)",
    "python-requests/2.31",
    "x" * 10_000,
    123,
]
IPS = [
    None,
    "",
    "17.58.1.2",
    "17.0.0.0",
    "017.1.2.3",
    "64.235.150.1",
    "40.94.3.4",
    "198.51.100.7",
    "2001:db8::1",
    "256.1.1.1",
    " 17.1.1.1",
    "not an ip",
]
LINKS = [0, 1, 2, 3, 5, 29, -1, 2.0, "3", None, True]
PEOPLE = [
    EventKind.SENT,
    EventKind.FAILED,
    EventKind.SKIPPED,
    EventKind.BOUNCED,
    EventKind.BOUNCE_HARD,
    EventKind.COMPLAINED,
    EventKind.COMPLAINT,
    EventKind.UNSUBSCRIBED,
]


def _data(rng: random.Random, link: bool) -> dict:
    data: dict = {}
    if rng.random() < 0.9:
        data["ua"] = rng.choice(AGENTS)
    if rng.random() < 0.9:
        data["ip"] = rng.choice(IPS)
    if link and rng.random() < 0.95:
        data["link_index"] = rng.choice(LINKS)
    return data


def _events(
    rng: random.Random, campaign_id: int, deliveries: list[int | None], unique: bool
) -> list[dict]:
    rows = []
    for _ in range(400):
        d = rng.choice(deliveries)
        at = T0 + timedelta(seconds=rng.choice([0, 3, 9, 11, 60, 3600, 86_400 * 3, 86_400 * 30]))
        at += timedelta(seconds=rng.random() * 4)
        roll = rng.random()
        if roll < 0.3:
            kind, data = EventKind.OPENED, _data(rng, False)
        elif roll < 0.45:
            kind, data = EventKind.CLICKED, _data(rng, True)
            for k in range(rng.choice([0, 0, 1, 3])):  # clicks seconds apart: bursts
                burst_at = at + timedelta(seconds=1.9 * (k + 1))
                rows.append(
                    event_row(
                        kind,
                        campaign_id=campaign_id,
                        delivery_id=d,
                        data=_data(rng, True),
                        at=burst_at,
                    )
                )
        else:
            kind, data = rng.choice(PEOPLE), {}
        rows.append(event_row(kind, campaign_id=campaign_id, delivery_id=d, data=data, at=at))
    rng.shuffle(rows)  # ids in no time order
    if unique:  # the engine writes one `sent` and the tracking counter one `opened` per delivery
        seen: set = set()
        kept = []
        for row in rows:
            once = (row["kind"], row["delivery_id"])
            if row["kind"] in (EventKind.SENT, EventKind.OPENED) and row["delivery_id"]:
                if once in seen:
                    continue
                seen.add(once)
            kept.append(row)
        rows = kept
    return rows


@pytest.fixture(params=["one list", "two lists", "two lists, repeated opens"])
def varied(request, engine, settings):
    if engine.dialect.name != "postgresql":
        pytest.skip("the SQL tally is PostgreSQL's (SQLite tallies in Python)")
    data = seed(engine, settings, n_subscribers=24)
    rng = random.Random(14)
    with Session(engine) as session, session.begin():
        campaign = session.get_one(Campaign, data.campaign_id)
        campaign.started_at = T0
        if request.param.startswith("two lists"):
            other = service.create_list(session, "staff", "Staff")
            for sub_id in data.subscriber_ids[::3]:
                sub = session.get_one(Subscriber, sub_id)
                service.subscribe(session, sub, other, settings=settings)
            campaign.list_ids = [data.list_id, other.id]
        for i, delivery_id in enumerate(data.delivery_ids):
            row = session.get_one(Delivery, delivery_id)
            row.provider = [None, "", "qq", "netease", "gmail"][i % 5]
            row.sent_at = None if i % 7 == 0 else T0 + timedelta(seconds=i % 3)
        deliveries = [*data.delivery_ids, None, 10**9]
        unique = not request.param.endswith("repeated opens")
        insert_rows(session, _events(rng, campaign.id, deliveries, unique))
    data.unique = unique  # type: ignore[attr-defined]
    return data


def _reference(session: Session, campaign: Campaign):
    return +rollup.count(session, campaign, source.events_after(session, campaign.id, 0))


def test_sql_tally_equals_python_tally(engine, varied, monkeypatch):
    with Session(engine) as session:
        campaign = session.get_one(Campaign, varied.campaign_id)
        expected = _reference(session, campaign)
        lists = [int(i) for i in campaign.list_ids]
        n, last = sqltally.range_facts(session, campaign.id, 0)
        whole = sqltally.count_range(session, campaign.id, lists, 0, last, n)
        assert dict(whole) == dict(expected)
        assert {c[0] for c in whole} >= {"total", "hour", "link", "provider", "list", "client"}
        assert whole["total", "", "clicks:scanner"] > 0 and whole["total", "", "opens:mpp"] > 0


SLICES = (97, 1, 150, 10_000)


def test_sql_tally_in_ranges_equals_python_in_batches(engine, varied, monkeypatch):
    """Counted in several ranges (a click's burst is judged on the clicks up to its range's end,
    as the Python batches do), reading the history by campaign and by delivery."""
    if not varied.unique:
        pytest.skip("the Python batches assume one sent and one opened event per delivery")
    with Session(engine) as session:
        campaign = session.get_one(Campaign, varied.campaign_id)
        lists = [int(i) for i in campaign.list_ids]
        events = source.events_after(session, campaign.id, 0)
        expected: Counter = Counter()
        start = 0
        for size in SLICES:
            expected.update(rollup.count(session, campaign, events[start : start + size]))
            start += size
        for scope_min in (0, 10**9):  # history read by campaign, then by delivery
            monkeypatch.setattr(sqltally, "CAMPAIGN_SCOPE_MIN", scope_min)
            parts: Counter = Counter()
            after = 0
            for size in SLICES:
                k, through = sqltally.range_facts(session, campaign.id, after, size)
                parts.update(sqltally.count_range(session, campaign.id, lists, after, through, k))
                after = through or after
            assert +parts == +expected


def test_rollup_in_server_equals_python(engine, varied, monkeypatch):
    """The roll-up in SQL batches of 33, then the tallies read back: the Python batches' cells."""
    if not varied.unique:
        pytest.skip("the Python batches assume one sent and one opened event per delivery")
    monkeypatch.setattr(rollup, "SQL_BATCH", 33)
    with Session(engine) as session:
        campaign = session.get_one(Campaign, varied.campaign_id)
        events = source.events_after(session, campaign.id, 0)
        expected: Counter = Counter()
        for start in range(0, len(events), 33):
            expected.update(rollup.count(session, campaign, events[start : start + 33]))
        now = T0 + timedelta(days=40)
        assert rollup.refresh(session, campaign, now=now) == len(events)
        assert rollup.refresh(session, campaign, now=now) == 0
        stored = source.tallies(session, [campaign.id])
    assert {c: v for c, v in stored.items() if c[0] != "hits"} == {
        (dim, key[:128], metric): v for (dim, key, metric), v in (+expected).items()
    }
