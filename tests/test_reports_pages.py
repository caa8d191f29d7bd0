"""The report pages, exports and API: every figure shown, the click map's counts on the right
links, bad input (no recipients, still running, 300 links, future clocks) shown sensibly."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from dispatch.events import event_row, insert_rows
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.web import TrackingHit
from test_reports_figures import HITS, T0, _events
from test_web_support import PASSWORD, bearer, login, make_user, seed

pytest_plugins = ["test_web_support"]


def _known(engine, settings):
    """The hand-counted events of test_reports_figures, plus d7 never sent (still running)."""
    data = seed(engine, settings, n_subscribers=8)
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


def _editor(client, engine, locale="en"):
    make_user(engine, "editor", "ed@example.org")
    login(client, "ed@example.org", PASSWORD)
    client.get(f"/lang/{locale}")


def test_report_page_shows_people_rates_and_definitions(client, engine, settings):
    data = _known(engine, settings)
    _editor(client, engine)
    page = client.get(f"/admin/campaigns/{data.campaign_id}/report")
    assert page.status_code == 200, page.text
    text = page.text
    assert 'id="fig-sent"' in text and "People whose message the receiving" in text
    sent = re.search(r'id="fig-sent".*?rp-people">(\d+)<', text, re.S)
    assert sent and sent.group(1) == "6"
    opened = re.search(r'id="fig-opened".*?rp-people">(\d+)<.*?rp-rate">([^<]+)<', text, re.S)
    assert opened and opened.groups() == ("3", "60.0 %")
    assert "<svg" in text and 'aria-describedby="r-timeline-table"' in text
    assert 'id="r-timeline-table"' in text
    assert "<script" not in text.split("</header>")[1]  # nothing needs JavaScript
    campaign_page = client.get(f"/admin/campaigns/{data.campaign_id}")
    assert f'href="/admin/campaigns/{data.campaign_id}/report"' in campaign_page.text


def test_click_map_puts_each_count_on_its_link(client, engine, settings):
    data = _known(engine, settings)
    _editor(client, engine)
    page = client.get(f"/admin/campaigns/{data.campaign_id}/report/clickmap")
    assert page.status_code == 200
    assert "sandbox" in page.headers["content-security-policy"]
    from dispatch.content.parse import parse_issue
    from dispatch.paths import SAMPLE_ISSUE_DIR

    links = parse_issue(SAMPLE_ISSUE_DIR).links
    # by hand: link 0 clicked by 1 person (3 hits), link 1 by 1 (1 hit), link 2 by 1 (0 hits)
    expected = {0: (1, 3), 1: (1, 1), 2: (1, 0)}
    badges = re.findall(
        r'<a\b[^>]*href="([^"]+)"[^>]*>(?:(?!<a\b).)*?</a>'
        r'<span data-link="(\d+)" data-people="(\d+)" data-clicks="(\d+)"',
        page.text,
        re.S,
    )
    assert badges
    seen = {}
    for href, index, people, clicks in badges:
        assert href.replace("&amp;", "&") == links[int(index)]  # the badge follows its own link
        seen[int(index)] = (int(people), int(clicks))
    for index, counts in expected.items():
        if index in seen:
            assert seen[index] == counts
    assert any(i in seen for i in expected)
    assert all(v == (0, 0) for i, v in seen.items() if i not in expected)


def test_csv_and_api_carry_the_same_figures(client, engine, settings):
    data = _known(engine, settings)
    token = make_user(engine, "admin", "ad@example.org")
    body = client.get(f"/api/campaigns/{data.campaign_id}/report", headers=bearer(token)).json()
    assert body["counts"]["opened"]["person"] == 3
    assert body["counts"]["clicked"]["scanner"] == 1
    assert body["rates"]["bounced"] == round(2 / 7, 4)
    exported = client.get(
        f"/api/campaigns/{data.campaign_id}/report.csv?lang=zh-CN", headers=bearer(token)
    )
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text.lstrip("\ufeff"))))
    total = {r["key"]: r for r in rows if r["section"] == "total"}
    assert total["sent"]["people"] == "6" and total["sent"]["label"] == "已发出"
    assert (total["opened"]["person"], total["opened"]["mpp"]) == ("3", "1")
    assert {r["key"]: r["hits"] for r in rows if r["section"] == "link"}["0"] == "3"


def test_zero_recipients_no_division_by_zero(client, engine, settings):
    """A campaign nobody is on (it cannot even start): every rate is "—", nothing breaks."""
    from dispatch.content.store import publish_source
    from dispatch.delivery import campaigns
    from dispatch.paths import SAMPLE_ISSUE_DIR
    from dispatch.subscribers import service

    with Session(engine, expire_on_commit=False) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        empty = service.create_list(session, "empty", "Empty")
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[empty.id]
        )
    _editor(client, engine, "zh-CN")
    page = client.get(f"/admin/campaigns/{campaign.id}/report")
    assert page.status_code == 200 and 'id="rp-empty"' in page.text
    assert "—" in page.text  # rates without a denominator
    assert client.get(f"/admin/campaigns/{campaign.id}/report/print").status_code == 200
    assert client.get(f"/admin/campaigns/{campaign.id}/report.csv").status_code == 200
    assert client.get("/admin/campaigns/999999/report").status_code == 404


def test_running_campaign_and_future_clocks_are_said(client, engine, settings):
    data = _known(engine, settings)
    with Session(engine) as session, session.begin():
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        insert_rows(
            session,
            [
                event_row(
                    "opened",
                    campaign_id=data.campaign_id,
                    delivery_id=data.delivery_ids[7],
                    at=tomorrow,
                )
            ],
        )
    _editor(client, engine)
    page = client.get(f"/admin/campaigns/{data.campaign_id}/report")
    assert page.status_code == 200 and 'id="rp-running"' in page.text
    assert 'id="rp-future"' in page.text


def test_issue_report_sums_campaigns_and_answers_without_wechat(client, engine, settings):
    data = _known(engine, settings)
    _editor(client, engine)
    page = client.get(f"/admin/issues/{data.issue_id}/report")
    assert page.status_code == 200
    assert 'id="rp-wechat"' in page.text and "not sent on WeChat" in page.text
    sent = re.search(r'id="fig-sent".*?rp-people">(\d+)<', page.text, re.S)
    assert sent and sent.group(1) == "6"
