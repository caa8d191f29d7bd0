"""A chunk's recording writes (claiming.write_results, events.insert_rows, quota.record_used)
store exactly what they were given, on SQLite and on PostgreSQL (whose path sends each column
as one array literal, dispatch.pg_arrays), and only onto rows the claim still owns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.delivery.claiming import write_results
from dispatch.delivery.quota import record_used, used_in_db
from dispatch.models import Campaign, DailyUsage, Delivery, Event
from test_pg_arrays import AWKWARD

TOKEN = "worker-a:1:abc"
NOW = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
LATER = datetime(2026, 3, 1, 18, 0, 0, 1, tzinfo=timezone(timedelta(hours=8)))
TEXTS = [s for s in AWKWARD if s is None or len(s) < 100]  # message_id is varchar(255)


def _rows(engine: Engine, n: int, claimed_by: str = TOKEN, status: str = "sending") -> list[int]:
    with Session(engine) as session, session.begin():
        campaign = session.scalar(select(Campaign))
        if campaign is None:
            campaign = Campaign(channel="email", dedupe_key="chunk-recording", status="running")
            session.add(campaign)
            session.flush()
        first = 1000 + (session.scalar(select(func.count()).select_from(Delivery)) or 0)
        rows = [
            Delivery(
                campaign_id=campaign.id,
                subscriber_id=first + i,
                batch_no=0,
                status=status,
                attempts=1,
                claimed_by=claimed_by,
                lease_until=NOW,
            )
            for i in range(n)
        ]
        session.add_all(rows)
        session.flush()
        return [r.id for r in rows]


def _result(i: int, delivery_id: int) -> dict[str, Any]:
    awkward = TEXTS[i % len(TEXTS)]
    return {
        "b_id": delivery_id,
        "b_status": ("sent", "deferred", "bounced", "failed")[i % 4],
        "b_inc": i % 2,
        "b_next": None if i % 3 else LATER + timedelta(minutes=i),
        "b_code": None if i % 5 == 4 else 250 + i,
        "b_text": awkward,
        "b_message_id": None if awkward is None else f"<{i}.{awkward}@example.org>",
        "b_external_id": TEXTS[(i + 7) % len(TEXTS)],
        "b_sent_at": NOW if i % 4 == 0 else None,
        "b_now": NOW if i % 2 else LATER,
    }


def _stored(engine: Engine, ids: list[int]) -> dict[int, dict[str, Any]]:
    with Session(engine) as session:
        rows = session.scalars(select(Delivery).where(Delivery.id.in_(ids))).all()
        return {
            r.id: {
                "b_id": r.id,
                "b_status": r.status,
                "b_inc": r.attempts - 1,
                "b_next": r.next_attempt_at,
                "b_code": r.last_code,
                "b_text": r.last_text,
                "b_message_id": r.message_id,
                "b_external_id": r.external_id,
                "b_sent_at": r.sent_at,
                "b_now": r.updated_at,
                "lease_until": r.lease_until,
                "claimed_by": r.claimed_by,
            }
            for r in rows
        }


def test_results_are_stored_exactly(engine: Engine):
    ids = _rows(engine, len(TEXTS) + 3)
    params = [_result(i, d) for i, d in enumerate(ids)]
    with Session(engine) as session, session.begin():
        assert write_results(session, params, TOKEN) == set(ids)
    stored = _stored(engine, ids)
    for p in params:
        row = stored[p["b_id"]]
        assert row.pop("lease_until") is None and row.pop("claimed_by") == TOKEN
        assert row == p


def test_a_row_another_claim_owns_is_left_as_it_is(engine: Engine):
    ours = _rows(engine, 2)
    theirs = _rows(engine, 1, claimed_by="worker-b:2:def")  # our lease ran out, b claimed it
    finished = _rows(engine, 1, claimed_by="worker-b:2:def", status="sent")  # and b sent it
    before = _stored(engine, theirs + finished)
    params = [_result(i, d) for i, d in enumerate(ours + theirs + finished)]
    with Session(engine) as session, session.begin():
        assert write_results(session, params, TOKEN) == set(ours)
    assert _stored(engine, theirs + finished) == before
    assert {r["b_status"] for r in _stored(engine, ours).values()} == {"sent", "deferred"}


def test_a_nul_in_a_result_fails_the_write_on_postgresql(engine: Engine):
    """PostgreSQL text cannot hold NUL: the chunk's transaction fails, as with psycopg's list
    dumper before (SQLite stores it)."""
    (delivery_id,) = _rows(engine, 1)
    params = [{**_result(0, delivery_id), "b_text": "550 a\x00b"}]
    with Session(engine) as session, session.begin():
        if engine.dialect.name != "postgresql":
            assert write_results(session, params, TOKEN) == {delivery_id}
            return
        with pytest.raises(DataError, match="cannot contain NUL"):
            write_results(session, params, TOKEN)


def test_events_are_stored_exactly(engine: Engine):
    kinds = ("sent", "bounced", "deferred", "failed", "opened", "clicked")
    rows = [
        events.event_row(
            kinds[i % len(kinds)],
            channel=("email", "wechat")[i % 2],
            campaign_id=None if i == 3 else 7,
            delivery_id=2**31 - 100 + i,
            subscriber_id=None if i % 4 == 1 else 100 + i,
            list_id=None if i % 2 else 3,
            data={"text": s, "code": 550, "nested": [s, {"k": s}]} if s is not None else {},
            at=(NOW, LATER, NOW + timedelta(microseconds=i))[i % 3],
        )
        for i, s in enumerate([*AWKWARD, "a\x00b in JSON (\\u0000)"])
    ]
    with Session(engine) as session, session.begin():
        events.insert_rows(session, rows)
    with Session(engine) as session:
        stored = session.scalars(select(Event).order_by(Event.id)).all()
        assert [{c: getattr(e, c) for c in events.EVENT_COLUMNS} for e in stored] == rows
        if engine.dialect.name == "postgresql":  # json keeps its text: the same as ever
            texts = session.scalars(text("SELECT data::text FROM events ORDER BY id")).all()
            assert texts == [json.dumps(row["data"]) for row in rows]


def test_daily_usage_adds_every_scope_of_a_chunk(engine: Engine):
    tz = "Asia/Shanghai"
    scopes = {"relay:aliyun": 100, 'relay:a"b\\c': 3, "warmup:例子.中国": 40, "warmup:none": 0}
    later = NOW + timedelta(minutes=5)
    with Session(engine) as session, session.begin():
        record_used(session, scopes, tz, now=NOW)
    with Session(engine) as session, session.begin():
        record_used(session, {"relay:aliyun": 1, "warmup:例子.中国": 2}, tz, now=later)
    day = "2026-03-01"  # 17:30 in Shanghai
    with Session(engine) as session:
        assert used_in_db(session, "relay:aliyun", day) == 101
        assert used_in_db(session, 'relay:a"b\\c', day) == 3
        assert used_in_db(session, "warmup:例子.中国", day) == 42
        stored = {u.scope: u for u in session.scalars(select(DailyUsage))}
    assert set(stored) == {"relay:aliyun", 'relay:a"b\\c', "warmup:例子.中国"}  # no 0 row
    assert stored["relay:aliyun"].updated_at == later and stored['relay:a"b\\c'].updated_at == NOW
    assert {u.day for u in stored.values()} == {day}
