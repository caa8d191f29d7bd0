"""Trends: issues ranked by their open rate (people), per list, and joins/leaves per month;
WeChat's numbers beside email's on the issue report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from dispatch.events import event_row, insert_rows
from dispatch.models.delivery import Campaign
from dispatch.models.subscriber import MailingList, Subscriber, Subscription
from dispatch.models.wechat import WechatArticleStat, WechatMassChunk
from dispatch.reports.trends import trends
from test_delivery_support import make_issue
from test_web_support import bearer, make_user

pytest_plugins = ["test_web_support"]
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
# slug → (list, sent, opened by people, opened by Apple MPP, started days ago)
ISSUES = {
    "2026-08": ("a", 10, 2, 5, 90),  # 20 % by people (70 % with MPP: must not win)
    "2026-09": ("a", 10, 6, 0, 60),  # 60 %: best
    "2026-10": ("a", 20, 8, 0, 30),  # 40 %
    "2026-11": ("b", 10, 9, 0, 5),  # 90 %, but list b only
}


def _load(session: Session) -> dict[str, int]:
    lists = {slug: MailingList(slug=slug, name=f"List {slug}") for slug in ("a", "b")}
    session.add_all(lists.values())
    session.flush()
    ids = {}
    for n, (slug, (list_slug, sent, people, mpp, ago)) in enumerate(ISSUES.items()):
        issue = make_issue(session, slug)
        list_id = lists[list_slug].id
        campaign = Campaign(
            issue_id=issue.id,
            channel="email",
            list_ids=[list_id],
            dedupe_key=f"t{n}",
            status="finished",
            total=sent,
            started_at=NOW - timedelta(days=ago),
        )
        session.add(campaign)
        session.flush()
        at = campaign.started_at
        rows = [
            event_row("sent", campaign_id=campaign.id, delivery_id=n * 100 + d, at=at)
            for d in range(sent)
        ]
        rows += [
            event_row(
                "opened",
                campaign_id=campaign.id,
                delivery_id=n * 100 + d,
                at=at + timedelta(hours=1),
                data={"ua": "Thunderbird/115"},
            )
            for d in range(people)
        ]
        rows += [
            event_row(
                "opened",
                campaign_id=campaign.id,
                delivery_id=n * 100 + people + d,
                at=at + timedelta(hours=1),
                data={"ua": "Mozilla/5.0"},
            )
            for d in range(mpp)
        ]
        insert_rows(session, rows)
        ids[slug] = issue.id
    ids["list_a"], ids["list_b"] = lists["a"].id, lists["b"].id
    return ids


def test_issues_ranked_by_open_rate_by_people(session):
    ids = _load(session)
    session.commit()
    result = trends(session, None, now=NOW)
    rows = result["issues"]
    assert [r["slug"] for r in rows] == ["2026-08", "2026-09", "2026-10", "2026-11"]  # by date
    assert {r["slug"]: r["rank"] for r in rows} == {
        "2026-11": 1,
        "2026-09": 2,
        "2026-10": 3,
        "2026-08": 4,
    }
    assert {r["slug"]: r["rates"]["opened"] for r in rows}["2026-08"] == 0.2
    per_list = trends(session, ids["list_a"], now=NOW)["issues"]
    assert [r["slug"] for r in per_list] == ["2026-08", "2026-09", "2026-10"]
    assert [r["rank"] for r in per_list] == [3, 1, 2]
    assert [r["audience"] for r in per_list] == [10, 10, 20]


def test_joins_and_leaves_per_month(session):
    ids = _load(session)
    for i, (joined, left) in enumerate(
        [
            (NOW - timedelta(days=40), None),
            (NOW - timedelta(days=2), None),
            (NOW - timedelta(days=70), NOW - timedelta(days=1)),
        ]
    ):
        person = Subscriber(email=f"p{i}@example.org")
        session.add(person)
        session.flush()
        session.add(
            Subscription(
                subscriber_id=person.id,
                list_id=ids["list_a"],
                status="confirmed",
                confirmed_at=joined,
                unsubscribed_at=left,
            )
        )
    session.commit()
    months = {m["month"]: m for m in trends(session, ids["list_a"], now=NOW)["months"]}
    assert len(months) == 12 and list(months)[-1] == "2026-11"
    assert (months["2026-11"]["joined"], months["2026-11"]["left"]) == (1, 1)
    assert months["2026-10"]["joined"] == 1 and months["2026-09"]["joined"] == 1
    assert months["2026-11"]["net"] == 0


def test_trends_page_and_api(client, engine, settings):
    with Session(engine) as session:
        _load(session)
        session.commit()
    token = make_user(engine, "editor", "ed@example.org")
    body = client.get("/api/reports/trends", headers=bearer(token)).json()
    assert [r["rank"] for r in body["issues"]] == [4, 2, 3, 1]
    from test_web_support import PASSWORD, login

    login(client, "ed@example.org", PASSWORD)
    page = client.get("/admin/reports/trends")
    assert page.status_code == 200 and page.text.count('class="trend-row"') == 4
    assert "<svg" in page.text


def test_wechat_numbers_beside_email_on_the_issue_report(client, engine, settings):
    with Session(engine) as session:
        ids = _load(session)
        wechat = Campaign(
            issue_id=ids["2026-11"],
            channel="wechat",
            list_ids=[ids["list_b"]],
            dedupe_key="w",
            status="finished",
            total=500,
            started_at=NOW,
        )
        session.add(wechat)
        session.flush()
        session.add(
            WechatMassChunk(
                campaign_id=wechat.id,
                batch_no=0,
                clientmsgid="c",
                account="acct",
                mode="openids",
                draft_media_id="m",
                msg_id="1",
                msg_data_id="22",
                status="finished",
                recipient_count=500,
                total_count=500,
                filter_count=480,
                sent_count=470,
                error_count=10,
            )
        )
        session.add(
            WechatArticleStat(
                account="acct",
                msgid="22_1",
                stat_date="2026-11-30",
                campaign_id=wechat.id,
                title="第一篇",
                ref_date="2026-11-30",
                read_user=120,
                share_user=7,
                fav_user=3,
            )
        )
        session.commit()
    token = make_user(engine, "editor", "ed@example.org")
    body = client.get(f"/api/issues/{ids['2026-11']}/report", headers=bearer(token)).json()
    assert body["wechat"]["totals"]["sent"] == 470
    assert body["wechat"]["totals"]["filtered"] == 480
    assert (body["wechat"]["reads"], body["wechat"]["shares"]) == (120, 7)
    assert body["counts"]["sent"] == 10  # the email campaign's own figures beside them
