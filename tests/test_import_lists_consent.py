"""Issue 13, item 5: the import's `lists` column, consent for double opt-in lists (--confirmed,
recorded on each row), and the export's status column that leaves out who left or is
suppressed unless asked; the web download carries the BOM like the CLI's file."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models.subscriber import MailingList, Subscription
from dispatch.subscribers import service
from dispatch.subscribers.csv_export import export_csv
from dispatch.subscribers.csv_import import CsvImportError, import_csv

pytest_plugins = ["test_web_support"]


@pytest.fixture
def lists(session: Session):
    for slug, optin in (("news", "single"), ("events", "single"), ("members", "double")):
        service.create_list(session, slug, slug.title(), optin=optin)
    session.commit()
    return {m.slug: m.id for m in session.scalars(select(MailingList))}


def _memberships(session: Session) -> set[tuple[str, str, str]]:
    session.expire_all()
    rows = session.execute(
        select(MailingList.slug, Subscription.status, Subscription.source)
        .join(Subscription, Subscription.list_id == MailingList.id)
        .order_by(MailingList.slug)
    )
    return {(slug, status, source) for slug, status, source in rows}


def test_the_lists_column_adds_each_row_to_its_lists(engine, session, lists, tmp_path):
    path = tmp_path / "people.csv"
    path.write_text(
        "email,name,lists\na@example.org,A,events\nb@example.org,B,\nc@example.org,C,events;nope\n",
        encoding="utf-8",
    )
    result = import_csv(engine, path, "news")
    assert result.imported == 2 and result.skipped == {"unknown_list": 1}
    assert [(p.line, p.detail) for p in result.problems] == [(4, "nope")]
    a = service.find_subscriber(session, email="a@example.org")
    b = service.find_subscriber(session, email="b@example.org")
    got = {(s.subscriber_id, s.list_id, s.status) for s in session.scalars(select(Subscription))}
    assert got == {
        (a.id, lists["news"], "confirmed"),
        (a.id, lists["events"], "confirmed"),
        (b.id, lists["news"], "confirmed"),
    }
    assert "lists" not in (a.attributes or {})  # a column, not an attribute
    assert {src for _, _, src in _memberships(session)} == {"import:people.csv"}


def test_a_double_opt_in_list_needs_the_declared_consent(engine, session, lists, tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("email,lists\nm@example.org,\nn@example.org,members\n", encoding="utf-8")
    with pytest.raises(CsvImportError) as refused:
        import_csv(engine, path, "members")
    assert "--confirmed" in str(refused.value) and "members" in str(refused.value)
    assert _memberships(session) == set()
    # into a single opt-in list, the lists column cannot reach the double opt-in one either
    result = import_csv(engine, path, "news")
    assert result.skipped == {"unknown_list": 1}
    result = import_csv(engine, path, "members", confirmed=True)
    assert result.imported == 1 and result.added == 1
    assert ("members", "confirmed", "import:consent-elsewhere:members.csv") in _memberships(session)


def test_export_has_a_status_and_leaves_out_who_left_or_is_suppressed(
    engine, session, lists, tmp_path
):
    news = service.get_list(session, "news")
    people = {}
    for name in ("stay", "left", "blocked"):
        p = service.add_subscriber(session, email=f"{name}@example.org", name=name)
        service.subscribe(session, p, news, send_confirmation=False)
        people[name] = p.id
    service.unsubscribe(session, people["left"], news.id)
    service.suppress(session, email="BLOCKED@example.org", reason="complained")
    session.commit()
    default = io.StringIO()
    assert export_csv(session, "news", default) == 1
    assert default.getvalue().splitlines() == [
        "email,name,locale,openid,status",
        "stay@example.org,stay,zh-CN,,confirmed",
    ]
    everyone = io.StringIO()
    assert export_csv(session, "news", everyone, include_all=True) == 3
    lines = everyone.getvalue().splitlines()[1:]
    assert [line.rsplit(",", 1)[1] for line in lines] == ["confirmed", "unsubscribed", "complained"]
    # the export's status column is read back as nothing: a round trip changes no one
    path = tmp_path / "round.csv"
    path.write_text(everyone.getvalue(), encoding="utf-8")
    again = import_csv(engine, path, "news")
    assert again.skipped == {"unsubscribed": 1, "suppressed": 1} and again.unchanged == 1


def test_web_export_carries_the_bom_and_the_all_switch(client, engine, lists, session):
    from test_web_support import bearer, make_user

    token = make_user(engine, "admin")
    news = service.get_list(session, "news")
    for name in ("李", "left"):
        p = service.add_subscriber(
            session, email=f"{'li' if name == '李' else name}@example.org", name=name
        )
        service.subscribe(session, p, news, send_confirmation=False)
    service.unsubscribe(
        session, service.find_subscriber(session, email="left@example.org").id, None
    )
    session.commit()
    r = client.get(f"/api/subscribers/export?list_id={news.id}", headers=bearer(token))
    assert r.status_code == 200 and r.content.startswith(b"\xef\xbb\xbf")
    assert "李" in r.content.decode("utf-8-sig") and "left@" not in r.text
    r = client.get(f"/api/subscribers/export?list_id={news.id}&all=true", headers=bearer(token))
    assert "left@example.org,left,zh-CN,,unsubscribed" in r.content.decode("utf-8-sig")


def test_or_each_person_is_asked_first(engine, session, lists, tmp_path):
    """Who is left owing a confirmation; the confirmation campaign itself (one delivery each,
    throttled by the engine) is pinned in tests/test_import_confirmation_campaign.py."""
    path = tmp_path / "ask.csv"
    path.write_text("email\np1@example.org\np2@example.org\np3@example.org\n", encoding="utf-8")
    result = import_csv(engine, path, "members", send_confirmations=True)
    assert result.imported == 3 and len(result.awaiting_confirmation) == 3
    assert _memberships(session) == {
        ("members", "unconfirmed", "import:confirmation-asked:ask.csv")
    }


def test_cli_refuses_a_double_opt_in_import_without_a_choice_and_asks_when_told(
    engine, session, lists, settings, tmp_path
):
    from click.testing import CliRunner

    from dispatch.cli import main
    from dispatch.config import set_settings
    from dispatch.transactional import outbox_dir

    set_settings(settings)
    path = tmp_path / "cli.csv"
    path.write_text("email\nq1@example.org\nq2@example.org\n", encoding="utf-8")
    refused = CliRunner().invoke(main, ["subscribers", "import", str(path), "--list", "members"])
    assert refused.exit_code == 1 and "--confirmed" in refused.output
    asked = CliRunner().invoke(
        main, ["subscribers", "import", str(path), "--list", "members", "--send-confirmations"]
    )
    assert asked.exit_code == 0, asked.output
    assert "2 emails queued" in asked.output  # a confirmation campaign the workers send
    assert list(outbox_dir(settings).glob("*.eml")) == []  # not sent by the importing process
