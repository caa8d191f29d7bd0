"""Issue 13, item 2 (follow-up): an import into a double opt-in list with "send
confirmations" is a transactional campaign (channel `confirmation`, no issue) with one
Delivery per person, sent by the engine with the campaign's rate limit; everyone gets exactly
one confirmation and stays unconfirmed until they press the button. The web import offers
the same two choices and refuses a double opt-in import with neither."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.delivery import campaigns as campaign_service
from dispatch.delivery.engine import deliver_batch
from dispatch.delivery.queue import ListQueue
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.subscriber import MailingList, Subscription
from dispatch.subscribers import service
from dispatch.subscribers.csv_import import import_csv
from dispatch.subscribers.import_confirmations import create_confirmation_campaign
from dispatch.transactional import outbox_dir
from test_web_support import login, make_user

pytest_plugins = ["test_web_support"]

N = 7


@pytest.fixture
def lists(session: Session) -> dict[str, int]:
    service.create_list(session, "news", "News", optin="single")
    service.create_list(session, "members", "Members 会员", optin="double")
    session.commit()
    return {m.slug: m.id for m in session.scalars(select(MailingList))}


def _csv(tmp_path, n: int = N):
    path = tmp_path / "people.csv"
    rows = "".join(f"p{i}@example.org,Person {i}\n" for i in range(n))
    path.write_text("email,name\n" + rows, encoding="utf-8")
    return path


def _outbox(settings) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
        for p in sorted(outbox_dir(settings).glob("*.eml"))
    ]


def _statuses(engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Subscription.status)))


def _run(engine, settings, queue: ListQueue, **kwargs) -> None:
    for campaign_id, batch_no in queue.pop_all():
        deliver_batch(engine, settings, campaign_id, batch_no, **kwargs)


def test_an_import_asking_for_confirmations_is_one_campaign_each_person_one_email(
    engine, settings, lists, tmp_path, redis_url, redis_prefix
):
    import redis as redis_lib

    from dispatch.delivery.ratelimit import RedisRateLimiter

    settings = dataclasses.replace(settings, batch_size=3)  # several batches, like a real one
    result = import_csv(engine, _csv(tmp_path), "members", send_confirmations=True)
    assert result.imported == N and len(result.awaiting_confirmation) == N
    queue = ListQueue()
    campaign = create_confirmation_campaign(
        engine, settings, lists["members"], result.awaiting_confirmation, per_second=3, queue=queue
    )
    assert campaign is not None
    with Session(engine) as session:
        stored = session.scalars(select(Campaign)).all()
        assert [(c.channel, c.issue_id, c.status, c.total) for c in stored] == [
            ("confirmation", None, "running", N)
        ]
        people = session.scalars(select(Delivery.subscriber_id)).all()
        assert sorted(people) == sorted(result.awaiting_confirmation)
        shown = campaign_service.progress(session, campaign.id)
        assert shown["kind"] == "confirmation" and shown["total"] == N
        assert shown["list_slugs"] == ["members"] and shown["counts"]["pending"] == N
    assert len(queue.items) == 3  # 7 people in batches of 3

    waits: list[float] = []
    limiter = RedisRateLimiter(redis_lib.Redis.from_url(redis_url), prefix=redis_prefix)

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        __import__("time").sleep(seconds)

    batches = list(queue.items)
    _run(engine, settings, queue, limiter=limiter, sleep=sleep)
    assert waits  # seven at three a second: the campaign's limit made it wait
    for item in batches:  # a batch delivered twice (a worker's retry) sends nothing more
        queue.enqueue(*item)
    _run(engine, settings, queue, limiter=limiter, sleep=sleep)

    sent = _outbox(settings)
    recipients = sorted(m["To"].addresses[0].addr_spec for m in sent)
    assert recipients == sorted(f"p{i}@example.org" for i in range(N))  # one each, no more
    assert all("/confirm/" in m.get_body(("plain",)).get_content() for m in sent)
    with Session(engine) as session:
        shown = campaign_service.progress(session, campaign.id)
        assert shown["status"] == "finished" and shown["counts"]["sent"] == N
        ids = {d.message_id for d in session.scalars(select(Delivery))}
        assert ids == {str(m["Message-ID"]) for m in sent}
    assert _statuses(engine) == {"unconfirmed"}  # nobody confirmed by being emailed


def test_who_confirmed_or_left_meanwhile_is_skipped(engine, settings, lists, tmp_path):
    result = import_csv(engine, _csv(tmp_path, 3), "members", send_confirmations=True)
    queue = ListQueue()
    create_confirmation_campaign(
        engine, settings, lists["members"], result.awaiting_confirmation, queue=queue
    )
    with Session(engine) as session, session.begin():
        gone = service.find_subscriber(session, email="p0@example.org")
        service.unsubscribe(session, gone.id, None)
    _run(engine, settings, queue)
    assert sorted(m["To"].addresses[0].addr_spec for m in _outbox(settings)) == [
        "p1@example.org",
        "p2@example.org",
    ]
    with Session(engine) as session:
        assert sorted(session.scalars(select(Delivery.status))) == ["sent", "sent", "skipped"]


def test_cli_import_queues_the_confirmation_campaign_and_lists_it(
    engine, settings, lists, tmp_path
):
    from dispatch.cli import main
    from dispatch.config import set_settings

    set_settings(settings)
    path = _csv(tmp_path, 2)
    refused = CliRunner().invoke(main, ["subscribers", "import", str(path), "--list", "members"])
    assert refused.exit_code == 1 and "--send-confirmations" in refused.output
    asked = CliRunner().invoke(
        main, ["subscribers", "import", str(path), "--list", "members", "--send-confirmations"]
    )
    assert asked.exit_code == 0, asked.output
    assert "confirmation campaign #" in asked.output and "2 emails queued" in asked.output
    listed = CliRunner().invoke(main, ["campaigns", "list"])
    assert listed.exit_code == 0 and "confirmation emails" in listed.output
    assert "confirmation" in listed.output and "0/2 sent" in listed.output
    with Session(engine) as session:
        campaign = session.scalars(select(Campaign)).one()
    shown = CliRunner().invoke(main, ["campaigns", "show", str(campaign.id)])
    assert shown.exit_code == 0 and "confirmation emails" in shown.output, shown.output
    for batch_no in range(campaign.batch_count):  # what a worker does with each queued batch
        deliver_batch(engine, settings, campaign.id, batch_no)
    assert len(_outbox(settings)) == 2
    assert _statuses(engine) == {"unconfirmed"}


def _admin(client, engine) -> str:
    make_user(engine, "admin", "boss@example.org")
    return login(client, "boss@example.org")


def test_web_import_offers_both_choices_and_refuses_neither(
    client, web_app, engine, settings, lists, tmp_path
):
    csrf = _admin(client, engine)
    form = client.get("/admin/subscribers")
    assert 'name="consent" value="send"' in form.text
    assert 'name="consent" value="elsewhere"' in form.text
    csv_text = "email,name\nw1@example.org,W1\nw2@example.org,W2\n"

    def upload(list_id: int, consent: str | None):
        data = {"csrf_token": csrf, "list_id": str(list_id)}
        if consent is not None:
            data["consent"] = consent
        return client.post(
            "/admin/subscribers/import",
            data=data,
            files={"file": ("people.csv", csv_text, "text/csv")},
        )

    refused = upload(lists["members"], None)
    assert refused.status_code == 422 and "double opt-in" in refused.text
    refused = upload(lists["members"], "maybe")
    assert refused.status_code == 422
    with Session(engine) as session:
        assert session.scalars(select(Subscription)).all() == []
    assert upload(lists["news"], None).status_code == 200  # a single opt-in list needs neither

    asked = upload(lists["members"], "send")
    assert asked.status_code == 200, asked.text
    found = re.search(r'href="/admin/campaigns/(\d+)"', asked.text)
    assert found, asked.text
    campaign_id = int(found.group(1))
    page = client.get(f"/admin/campaigns/{campaign_id}")
    assert page.status_code == 200 and "Import confirmation emails" in page.text
    queue = web_app.state.batch_queue
    assert {c for c, _ in queue.items} == {campaign_id}
    _run(engine, settings, queue)
    sent = _outbox(settings)
    assert sorted(m["To"].addresses[0].addr_spec for m in sent) == [
        "w1@example.org",
        "w2@example.org",
    ]
    with Session(engine) as session:
        members = session.scalars(
            select(Subscription).where(Subscription.list_id == lists["members"])
        ).all()
        assert {s.status for s in members} == {"unconfirmed"}

    # the emailed link: GET shows a page, only the button's POST confirms
    link = re.search(r"https://\S+/confirm/\S+", sent[0].get_body(("plain",)).get_content())
    path = link.group(0).split("bulletin.example.org", 1)[1]
    assert client.get(path).status_code == 200
    with Session(engine) as session:
        statuses = session.scalars(
            select(Subscription.status).where(Subscription.list_id == lists["members"])
        ).all()
        assert sorted(statuses) == ["unconfirmed", "unconfirmed"]
    assert client.post(path).status_code == 200
    with Session(engine) as session:
        statuses = session.scalars(
            select(Subscription.status).where(Subscription.list_id == lists["members"])
        ).all()
        assert sorted(statuses) == ["confirmed", "unconfirmed"]


def test_web_import_with_consent_elsewhere_records_it(client, engine, lists):
    csrf = _admin(client, engine)
    done = client.post(
        "/admin/subscribers/import",
        data={"csrf_token": csrf, "list_id": str(lists["members"]), "consent": "elsewhere"},
        files={"file": ("ok.csv", "email\nz@example.org\n", "text/csv")},
    )
    assert done.status_code == 200
    with Session(engine) as session:
        rows = session.execute(select(Subscription.status, Subscription.source)).all()
        assert rows == [("confirmed", "import:consent-elsewhere:ok.csv")] or rows[0][1].startswith(
            "import:consent-elsewhere:"
        )
        assert session.scalars(select(Campaign)).all() == []


def test_nobody_owing_a_confirmation_makes_no_campaign(engine, settings, lists, tmp_path):
    result = import_csv(engine, _csv(tmp_path, 2), "members", confirmed=True)
    assert result.awaiting_confirmation == []
    with Session(engine) as session:
        ids = list(session.scalars(select(Subscription.subscriber_id)))
    queue = ListQueue()
    made = create_confirmation_campaign(engine, settings, lists["members"], ids, queue=queue)
    assert made is None
    with Session(engine) as session:
        assert session.scalars(select(Campaign)).all() == [] and queue.items == []


# the parts this feature adds (the member and delivery tables below them are not its own)
OURS = {
    "form": "#import-form",
    "report": "#import-report",
    "campaign": ".card:has(#confirmation-kind)",
}
RIGHT_EDGE = """s => {
  const root = document.querySelector(s);
  const all = [root, ...root.querySelectorAll("*")];
  return Math.max(...all.map(e => e.getBoundingClientRect().right));
}"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_import_form_report_and_campaign_page_read_on_a_375px_phone(
    client, engine, lists, artifacts_dir
):
    """Both languages: the form with its two consent choices, the report naming the
    confirmation campaign, and that campaign's summary card, in headless Chromium at 375 px:
    nothing of them reaches past the screen's right edge."""
    from playwright.sync_api import sync_playwright

    from dispatch.web.templating import LANG_COOKIE
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS

    csrf = _admin(client, engine)
    pages: dict[str, str] = {}
    for locale in ("zh-CN", "en"):
        client.cookies.set(LANG_COOKIE, locale)
        pages[f"form-{locale}"] = client.get("/admin/subscribers").text
        report = client.post(
            "/admin/subscribers/import",
            data={"csrf_token": csrf, "list_id": str(lists["members"]), "consent": "send"},
            files={"file": (f"{locale}.csv", f"email\nphone-{locale}@example.org\n", "text/csv")},
        )
        assert report.status_code == 200
        pages[f"report-{locale}"] = report.text
        campaign_id = re.search(r'href="/admin/campaigns/(\d+)"', report.text).group(1)
        pages[f"campaign-{locale}"] = client.get(f"/admin/campaigns/{campaign_id}").text
    assert "给每人发送确认邮件" in pages["form-zh-CN"] and "Email each person" in pages["form-en"]
    assert "确认邮件活动" in pages["report-zh-CN"] and "Confirmation campaign" in pages["report-en"]
    widths = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            for name, html in pages.items():
                page.set_content(html, wait_until="load")
                widths[name] = page.evaluate(RIGHT_EDGE, OURS[name.split("-")[0]])
                page.screenshot(path=str(artifacts_dir / f"import-{name}-375.png"), full_page=True)
        finally:
            browser.close()
    assert all(w <= 375 for w in widths.values()), widths
