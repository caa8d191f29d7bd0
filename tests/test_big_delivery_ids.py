"""Delivery ids past 2^31 - 1 (issue 17): every table that names a delivery holds them.

deliveries.id is BIGINT on PostgreSQL; events, bounce_messages, tracking_hits and
wechat_template_messages once named it in INTEGER columns, so the first event of delivery
2,147,483,648 failed its insert (and with it the whole chunk's recording, re-sent after the
lease). A restored or merged database may start there; a million messages a month reach it.

Run on a PostgreSQL database of its own whose deliveries sequence starts at 3,000,000,000: a
campaign goes out through the real email channel to a scripted SMTP server, then its own
messages' open pixel and click link are fetched from the web app, and DSNs come back through
the VERP envelope sender and through the Message-ID.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from email.message import Message

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import BigInteger, Integer, SmallInteger, func, inspect, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from bounce_helpers import postfix_dsn
from conftest import PG_ADMIN_URL
from dispatch.bounces.record import process_message
from dispatch.config import load_settings
from dispatch.db import downgrade, make_engine, upgrade
from dispatch.dev.bench.send import fresh_database
from dispatch.models import Base, BounceMessage, Delivery, Event
from dispatch.models.web import TrackingHit
from dispatch.paths import PROJECT_ROOT
from dispatch.web.app import create_app
from smtp_server import smtp_server  # noqa: F401
from test_delivery_support import send_sample_campaign

START = 3_000_000_000  # past 2^31 - 1 = 2,147,483,647
SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"
BASE = "https://bulletin.example.org"


def _fresh_database():
    """A migrated PostgreSQL database of its own (this module moves sequences and schema)."""
    return fresh_database(PG_ADMIN_URL, prefix="dispatch_test_bigid")


@pytest.fixture(scope="module")
def big_ids_url() -> Iterator[str]:
    """A migrated database whose next delivery id is START."""
    with _fresh_database() as url:
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('deliveries', 'id'), :n, false)"),
                {"n": START},
            )
        engine.dispose()
        yield url


def _html(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/html":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError("no HTML part")


def _send(engine, settings, emails: list[str]) -> int:
    with Session(engine, expire_on_commit=False) as session:
        return send_sample_campaign(session, engine, settings, "big-ids", emails, tracking=True)


def test_a_campaign_past_two_to_the_31_records_sends_opens_clicks_and_bounces(
    big_ids_url,
    tmp_path,
    smtp_server,  # noqa: F811
):
    settings = load_settings(env={}).replace(
        data_dir=tmp_path / "var",
        database_url=big_ids_url,
        secret_key="test-secret-key-not-for-production",
        public_base_url=BASE,
        provider_mx_lookup=False,
        review_required=False,
        smtp_url=smtp_server.url,
        from_address="bulletin@example.org",
        bounce_address="bounces@bounce.example.org",
    )
    engine = make_engine(big_ids_url)
    emails = ["a@example.net", "b@example.net", "c@example.net"]
    campaign_id = _send(engine, settings, emails)

    with Session(engine) as session:
        rows = session.execute(
            select(Delivery.email, Delivery.id, Delivery.status).where(
                Delivery.campaign_id == campaign_id
            )
        ).all()
        ids = {row.email: row.id for row in rows}
        assert {row.status for row in rows} == {"sent"}, rows
        assert min(ids.values()) >= START
        sent = session.scalars(
            select(Event.delivery_id).where(Event.kind == "sent", Event.campaign_id == campaign_id)
        ).all()
        assert sorted(sent) == sorted(ids.values())

    received = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    assert set(received) == set(emails)
    opener = received["a@example.net"]
    html = _html(email.message_from_bytes(opener.data))
    pixel = re.search(re.escape(BASE) + r"(/t/o/[^\"'\s]+\.gif)", html)
    click = re.search(re.escape(BASE) + r"(/t/c/[^\"'\s]+)", html)
    assert pixel and click, "the message carries an open pixel and a tracked link"
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        assert client.get(pixel.group(1)).status_code == 200
        assert client.get(click.group(1), follow_redirects=False).status_code == 302

    # b bounces back to its VERP envelope sender; c's DSN names only its Message-ID
    verp = received["b@example.net"].mail_from
    assert verp.startswith(f"bounces+c{campaign_id}-{ids['b@example.net']}-")
    c_message_id = email.message_from_bytes(received["c@example.net"].data)["Message-ID"]
    assert str(ids["c@example.net"]) in c_message_id
    with Session(engine) as session:
        by_verp = process_message(
            session, settings, postfix_dsn("b@example.net"), source="mailbox", envelope_to=[verp]
        )
        by_message_id = process_message(
            session,
            settings,
            postfix_dsn("c@example.net", message_id=c_message_id),
            source="mailbox",
        )
        session.commit()
    assert by_verp.delivery_id == ids["b@example.net"]
    assert by_message_id.delivery_id == ids["c@example.net"]

    with Session(engine) as session:
        events = session.execute(
            select(Event.kind, Event.delivery_id).where(Event.campaign_id == campaign_id)
        ).all()
        named = {(kind, delivery) for kind, delivery in events if kind != "sent"}
        assert ("opened", ids["a@example.net"]) in named
        assert ("clicked", ids["a@example.net"]) in named
        assert ("bounce_hard", ids["b@example.net"]) in named
        assert ("bounce_hard", ids["c@example.net"]) in named
        assert all(d is None or d in ids.values() for _, d in events)
        hits = session.execute(select(TrackingHit.delivery_id, TrackingHit.link_index)).all()
        assert {d for d, _ in hits} == {ids["a@example.net"]}
        assert len(hits) == 2 and min(i for _, i in hits) == -1  # the pixel and one link
        bounces = session.execute(
            select(BounceMessage.delivery_id, BounceMessage.campaign_id)
        ).all()
        assert sorted(bounces) == sorted(
            [(ids["b@example.net"], campaign_id), (ids["c@example.net"], campaign_id)]
        )
        assert session.scalar(select(func.count()).select_from(Delivery)) == 3
    engine.dispose()


def _int_width(type_: object) -> str | None:
    """'int8' / 'int4' / 'int2' for an integer type (model or reflected), else None."""
    if isinstance(type_, BigInteger):
        return "int8"
    if isinstance(type_, SmallInteger):
        return "int2"
    return "int4" if isinstance(type_, Integer) else None


def test_the_migrated_postgresql_schema_has_the_models_integer_widths(big_ids_url):
    """Every integer column is as wide in the migrated database as its model says, so a model
    widened without a migration (or the other way round) fails here."""
    engine = make_engine(big_ids_url)
    inspector = inspect(engine)
    wrong = []
    for table in Base.metadata.sorted_tables:
        reflected = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            model_type = column.type.dialect_impl(engine.dialect)
            want = _int_width(model_type)
            if want is not None and _int_width(reflected[column.name]) != want:
                wrong.append(f"{table.name}.{column.name}: {reflected[column.name]} not {want}")
    engine.dispose()
    assert wrong == []


def test_every_column_that_names_a_delivery_is_64_bit():
    """deliveries.id is BIGINT on PostgreSQL; so is every column holding one of its ids."""
    dialect = postgresql.dialect()
    assert _int_width(Delivery.__table__.c.id.type.dialect_impl(dialect)) == "int8"
    narrow = [
        f"{table.name}.{column.name}"
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if column.name == "delivery_id" and _int_width(column.type.dialect_impl(dialect)) != "int8"
    ]
    assert narrow == []


def _widths(engine) -> dict[str, str | None]:
    inspector = inspect(engine)
    return {
        table: _int_width(
            next(c["type"] for c in inspector.get_columns(table) if c["name"] == "delivery_id")
        )
        for table in ("events", "bounce_messages", "tracking_hits", "wechat_template_messages")
    }


def test_the_migration_round_trip_and_its_refusal_to_narrow_a_big_id():
    with _fresh_database() as url:
        engine = make_engine(url)
        assert set(_widths(engine).values()) == {"int8"}
        downgrade(engine, "i17_deliveries_lean")
        assert set(_widths(engine).values()) == {"int4"}
        upgrade(engine)
        assert set(_widths(engine).values()) == {"int8"}
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO events (kind, channel, occurred_at, delivery_id, data) "
                    "VALUES ('sent', 'email', now(), :d, '{}')"
                ),
                {"d": START},
            )
        with pytest.raises(DataError, match="out of range"):
            downgrade(engine, "i17_deliveries_lean")
        assert set(_widths(engine).values()) == {"int8"}  # nothing half-done
        engine.dispose()
