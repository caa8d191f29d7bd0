"""Every event writer takes its row from events.event_row, so the single (ORM), bulk (engine,
CSV import) and raw-SQL (tracking hits) paths store identical rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.models import Event
from dispatch.vocabulary import Channel, EventKind
from dispatch.web.hits import DeliveryRef, HitRecorder

AT = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
DATA = {"code": 250, "text": "2.0.0 Ok: 队列 queued", "attempt": 1, "nested": {"a": [1, 2]}}


def _stored(engine) -> list[dict]:
    with Session(engine) as session:
        rows = session.scalars(select(Event).order_by(Event.id)).all()
        return [{c: getattr(e, c) for c in events.EVENT_COLUMNS} for e in rows]


def test_single_and_bulk_paths_store_identical_rows(engine):
    fields = dict(
        channel=Channel.WECHAT,
        campaign_id=7,
        delivery_id=70,
        subscriber_id=700,
        list_id=None,
        data=DATA,
        at=AT,
    )
    with Session(engine) as session, session.begin():
        events.record(session, EventKind.SENT, **fields)
    with Session(engine) as session, session.begin():
        events.insert_rows(session, [events.event_row(EventKind.SENT, **fields)])
    with engine.begin() as conn:  # the CSV import writes on a bare connection
        events.insert_rows(conn, [events.event_row("sent", **fields)])
    single, bulk, on_connection = _stored(engine)
    assert single == bulk == on_connection
    assert single["kind"] == "sent" and type(single["kind"]) is str
    assert single["channel"] == "wechat" and single["data"] == DATA
    assert single["occurred_at"] == AT


def test_tracking_raw_sql_path_stores_the_same_row(engine):
    ref = DeliveryRef(
        delivery_id=71, campaign_id=7, subscriber_id=701, list_id=None, channel="email"
    )
    data = {"link_index": 2, "url": "https://example.org/读"}
    recorder = HitRecorder(engine)
    try:
        with recorder.transaction() as cursor:
            recorder._record(cursor, EventKind.CLICKED, ref, data)
    finally:
        recorder.close()
    with Session(engine) as session, session.begin():
        events.record(
            session,
            EventKind.CLICKED,
            channel=ref.channel,
            campaign_id=ref.campaign_id,
            delivery_id=ref.delivery_id,
            subscriber_id=ref.subscriber_id,
            data=data,
        )
    raw, single = _stored(engine)
    assert raw.pop("occurred_at").tzinfo is not None and single.pop("occurred_at").tzinfo
    assert raw == single


def test_unknown_kind_is_refused_by_every_path():
    with pytest.raises(ValueError, match="unknown event kind 'teleported'"):
        events.event_row("teleported")
