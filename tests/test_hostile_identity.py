"""Hostile: one mailbox written in other letter cases or IDNA forms is one person.

Someone who left (unsubscribed or suppressed) must never come back as active because an
import, an admin or a form spells the address differently, and one mailbox must never be
several subscribers who each get a copy. Identity compares `canonical_email`; the address is
stored and sent as given.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text

from conftest import PG_ADMIN_URL, _pg_url_for
from dispatch.canonical import canonical_email
from dispatch.cli import main
from dispatch.db import make_engine, upgrade
from dispatch.models.subscriber import Subscriber, Suppression
from dispatch.subscribers import service
from dispatch.subscribers.csv_import import import_csv

# (as written, another spelling of the same mailbox)
SAME_MAILBOX = [
    ("Li.Wei@Example.com", "li.wei@example.com"),
    ("li.wei@example.com", "LI.WEI@EXAMPLE.COM"),
    ("Zhang@Bücher.Example", "zhang@xn--bcher-kva.example"),
    ("王伟@例子.中国", "王伟@xn--fsqu00a.xn--fiqs8s"),
    ("mixed.Case+Tag@Sub.Example.ORG", "MIXED.case+tag@sub.example.org"),
    ("ÉLODIE@example.fr", "élodie@example.fr"),
    ("e\u0301lodie@example.fr", "\u00e9lodie@example.fr"),  # NFD vs NFC
]


@pytest.mark.parametrize(("first", "second"), SAME_MAILBOX)
def test_canonical_form_is_one_key_per_mailbox(first, second):
    assert canonical_email(first) == canonical_email(second)
    assert canonical_email(f"  {first}\t") == canonical_email(first)
    assert canonical_email(first).rpartition("@")[2].isascii()  # IDNA form of the domain
    assert canonical_email("a@example.com") != canonical_email("b@example.com")
    assert canonical_email(None) is None and canonical_email("  ") is None


@pytest.fixture
def news(session):
    mailing_list = service.create_list(session, "news", "News")
    session.commit()
    return mailing_list


def _csv(tmp_path: Path, rows: list[str], name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_text("email,name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _count(session, model=Subscriber) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.mark.parametrize(("first", "second"), SAME_MAILBOX[:5])
def test_suppressed_address_stays_suppressed_through_import_in_another_case(
    engine, session, news, tmp_path, first, second
):
    person = service.add_subscriber(session, email=first, name="Left")
    service.subscribe(session, person, news)
    service.suppress(session, email=first, reason="complained", source="test")
    session.commit()
    result = import_csv(engine, _csv(tmp_path, [f"{second},Back again"]), "news")
    assert result.skipped["suppressed"] == 1 and result.imported == 0
    session.expire_all()
    assert _count(session) == 1
    assert session.get(Subscriber, person.id).status == "complained"
    assert service.count_recipients(session, [news.id], "email") == 0


def test_suppression_without_subscriber_row_blocks_other_spelling(engine, session, news, tmp_path):
    service.suppress(session, email="Bounce@Example.net", reason="bounced", source="test")
    session.commit()
    result = import_csv(engine, _csv(tmp_path, ["bounce@EXAMPLE.NET,Nobody"]), "news")
    assert result.skipped["suppressed"] == 1 and _count(session) == 0
    assert service.is_suppressed(session, email="BOUNCE@example.net")


def test_unsubscribed_person_stays_unsubscribed_through_import_in_another_case(
    engine, session, news, tmp_path
):
    person = service.add_subscriber(session, email="Ma.Li@Example.org")
    service.subscribe(session, person, news)
    service.unsubscribe(session, person.id, news.id, source="test")
    session.commit()
    result = import_csv(
        engine, _csv(tmp_path, ["ma.li@example.ORG,Ma", "MA.LI@EXAMPLE.ORG,Ma"]), "news"
    )
    assert result.skipped["unsubscribed"] == 1 and result.skipped["duplicate_in_file"] == 1
    assert service.count_recipients(session, [news.id], "email") == 0
    assert _count(session) == 1


@pytest.mark.parametrize("chunk_rows", [1, 2000])
def test_one_mailbox_in_three_cases_in_a_file_is_one_subscriber(
    engine, session, news, tmp_path, chunk_rows
):
    rows = ["Wang.Fang@Example.com,A", "wang.fang@example.com,B", "WANG.FANG@EXAMPLE.COM,C"]
    rows += ["zhou@例子.中国,D", "ZHOU@xn--fsqu00a.xn--fiqs8s,E"]
    result = import_csv(engine, _csv(tmp_path, rows), "news", chunk_rows=chunk_rows)
    assert result.imported == 2 and result.skipped["duplicate_in_file"] == 3
    stored = sorted(session.scalars(select(Subscriber.email)))
    assert stored == ["Wang.Fang@example.com", "zhou@例子.中国"]  # as first given
    assert service.count_recipients(session, [news.id], "email") == 2


def test_import_updates_stored_person_written_in_another_case(engine, session, news, tmp_path):
    person = service.add_subscriber(session, email="Chen@Example.com", name="Old")
    session.commit()
    result = import_csv(engine, _csv(tmp_path, ["CHEN@example.com,New name"]), "news")
    assert (result.imported, result.updated) == (0, 1)
    session.expire_all()
    assert _count(session) == 1
    assert session.get(Subscriber, person.id).email == "Chen@example.com"  # stored as given
    assert session.get(Subscriber, person.id).name == "New name"


def test_resubscribe_lifts_the_suppression_of_the_mailbox_in_any_case(
    engine, session, news, tmp_path
):
    service.suppress(session, email="Back@Example.com", reason="manual", source="test")
    session.commit()
    result = import_csv(engine, _csv(tmp_path, ["back@example.com,Back"]), "news", resubscribe=True)
    assert result.resubscribed == 1
    assert _count(session, Suppression) == 0
    assert service.count_recipients(session, [news.id], "email") == 1


def test_service_refuses_and_finds_other_spellings(session, news):
    person = service.add_subscriber(session, email="Sun@Example.com")
    with pytest.raises(service.SubscriberError, match="already belongs"):
        service.add_subscriber(session, email="SUN@example.COM")
    assert service.find_subscriber(session, email="sun@EXAMPLE.com").id == person.id
    other = service.add_subscriber(session, email="moon@example.com")
    with pytest.raises(service.SubscriberError, match="already belongs"):
        service.update_subscriber(session, other, email="sun@example.com")
    service.update_subscriber(session, person, email="SUN@example.com")  # own case change
    assert person.email_key == "sun@example.com"


def test_suppress_twice_in_other_cases_keeps_one_row_and_blocks_subscribe(session, news):
    person = service.add_subscriber(session, email="Gao@Example.com")
    service.suppress(session, email="gao@example.com", reason="manual", source="test")
    service.suppress(session, email="GAO@EXAMPLE.COM", reason="bounced", source="test")
    assert _count(session, Suppression) == 1
    assert person.status == "blocklisted"
    with pytest.raises(service.SubscriberError, match="suppressed"):
        service.subscribe(session, person, news)
    assert service.unsuppress(session, email="gAo@example.com") is True
    assert service.subscribe(session, person, news, resubscribe=True).status == "confirmed"


def test_recipient_selection_skips_suppression_written_in_another_case(session, news):
    person = service.add_subscriber(session, email="Qian@Example.com")
    service.subscribe(session, person, news)
    session.add(Suppression(email="QIAN@example.com", reason="manual", source="raw"))
    session.flush()
    assert service.count_recipients(session, [news.id], "email") == 0


# -- the migration: existing duplicates are merged and reported -----------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request, tmp_path):
    """An empty database of its own migrated to the revision before canonical keys."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
        engine = make_engine(url)
        yield engine, url
        engine.dispose()
        return
    name = f"dispatch_mig_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _pg_url_for(name)
    engine = make_engine(url)
    yield engine, url
    engine.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_migration_merges_duplicates_on_the_safe_side_and_reports_them(old_database, tmp_path):
    engine, url = old_database
    upgrade(engine, "0005")
    now = "2026-01-01 00:00:00+00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO lists (id, slug, name, description, optin, created_at) VALUES "
                "(1, 'news', 'News', '', 'single', :now), (2, 'jobs', 'Jobs', '', 'single', :now)"
            ),
            {"now": now},
        )
        people = [
            (1, "Li.Wei@example.com", "李伟", None, '{"dept": "hr"}', "active"),
            (2, "li.wei@example.com", "", "oLIWEI", '{"city": "京"}', "active"),
            (3, "LI.WEI@EXAMPLE.COM", "", None, "{}", "active"),
            (4, "other@example.com", "Other", None, "{}", "active"),
            (5, "gone@Example.org", "", None, "{}", "active"),
            (6, "GONE@example.org", "", None, "{}", "unsubscribed"),
        ]
        for pid, email, name, openid, attrs, status in people:
            conn.execute(
                text(
                    "INSERT INTO subscribers (id, email, openid, name, locale, attributes, status, "
                    "created_at) VALUES (:id, :email, :openid, :name, 'zh-CN', :attrs, :status, :"
                    "now)"
                ),
                {
                    "id": pid,
                    "email": email,
                    "openid": openid,
                    "name": name,
                    "attrs": attrs,
                    "status": status,
                    "now": now,
                },
            )
        for sid, lid, status in [
            (1, 1, "confirmed"),
            (2, 1, "unsubscribed"),
            (3, 2, "confirmed"),
            (4, 1, "confirmed"),
            (5, 1, "confirmed"),
            (6, 1, "confirmed"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at) "
                    "VALUES (:s, :l, :st, :now)"
                ),
                {"s": sid, "l": lid, "st": status, "now": now},
            )
        conn.execute(
            text(
                "INSERT INTO suppressions (email, reason, source, created_at) VALUES "
                "('Spam@Example.net', 'complained', 'x', :now), "
                "('spam@example.NET', 'manual', 'y', :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO events (kind, channel, occurred_at, subscriber_id, data) "
                "VALUES ('opened', 'email', :now, 3, '{}')"
            ),
            {"now": now},
        )
    upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, email, email_key, name, openid, status, attributes FROM subscribers "
                "ORDER BY id"
            )
        ).all()
        subs = dict(
            ((r.subscriber_id, r.list_id), r.status)
            for r in conn.execute(text("SELECT subscriber_id, list_id, status FROM subscriptions"))
        )
        merges = (
            conn.execute(text("SELECT data FROM events WHERE kind = 'merged' ORDER BY id"))
            .scalars()
            .all()
        )
        opened = conn.execute(
            text("SELECT subscriber_id FROM events WHERE kind = 'opened'")
        ).scalar()
        suppressions = conn.execute(text("SELECT email, email_key FROM suppressions")).all()
    assert [r.id for r in rows] == [1, 4, 5]
    kept = rows[0]
    assert (kept.email, kept.email_key, kept.name, kept.openid) == (
        "Li.Wei@example.com",
        "li.wei@example.com",
        "李伟",
        "oLIWEI",
    )
    attributes = (
        kept.attributes if isinstance(kept.attributes, dict) else json.loads(kept.attributes)
    )
    assert attributes == {"dept": "hr", "city": "京"}
    assert subs[(1, 1)] == "unsubscribed"  # one copy had left: the person has left
    assert subs[(1, 2)] == "confirmed" and subs[(4, 1)] == "confirmed"
    assert rows[2].status == "unsubscribed"  # the most restrictive status of the group
    assert opened == 1
    assert suppressions == [("Spam@Example.net", "spam@example.net")]
    merges = [m if isinstance(m, dict) else json.loads(m) for m in merges]
    by_table = {(m["table"], m["kept"]): m for m in merges}
    assert by_table[("subscribers", 1)]["merged"] == [2, 3]
    assert by_table[("subscribers", 1)]["addresses"] == [
        "Li.Wei@example.com",
        "li.wei@example.com",
        "LI.WEI@EXAMPLE.COM",
    ]
    assert by_table[("subscribers", 5)]["merged"] == [6]
    assert by_table[("suppressions", 1)]["addresses"] == ["Spam@Example.net", "spam@example.NET"]

    # the report: `dispatch subscribers merges` lists them
    result = CliRunner().invoke(
        main,
        ["subscribers", "merges", "--json"],
        env={"DISPATCH_DATABASE_URL": url, "DISPATCH_DATA_DIR": str(tmp_path / "var")},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert {(m["table"], m["kept"]) for m in listed} == set(by_table)
    # and the unique key now holds: a third spelling cannot be inserted
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with engine.begin() as conn:
            conn.execute(
                Subscriber.__table__.insert().values(
                    email="li.WEI@example.com",
                    name="",
                    locale="en",
                    attributes={},
                    status="active",
                    created_at=func.now(),
                )
            )
