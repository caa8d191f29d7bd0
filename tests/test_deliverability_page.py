"""The admin deliverability page: doctor findings, 30-day rates, suppression growth, providers."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from dispatch import events
from dispatch.content.store import publish_source
from dispatch.deliverability.doctor import CheckResult, DoctorReport, save_report
from dispatch.delivery import campaigns
from dispatch.delivery.engine import drain
from dispatch.delivery.queue import ListQueue
from dispatch.models import Delivery
from dispatch.paths import PROJECT_ROOT
from dns_server import silent_dns_server
from smtp_server import smtp_server  # noqa: F401
from test_delivery_support import make_list_with
from test_web_support import client, login, make_user, web_app  # noqa: F401

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"


def _send(engine, session, settings, server) -> int:
    emails = [f"q{i}@qq.com" for i in range(8)] + ["gone1@163.com", "ok@163.com"]
    server.script.rcpt["gone1@163.com"] = "550 5.1.1 User unknown"
    issue = publish_source(session, SAMPLE_ISSUE)
    list_id = make_list_with(session, "members", emails)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[list_id], tracking=False
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(engine, settings, campaign.id, queue)
    drain(engine, settings, queue)
    first = session.query(Delivery).filter_by(email="q0@qq.com").one()
    events.record(session, "complained", campaign_id=campaign.id, delivery_id=first.id)
    session.commit()
    return campaign.id


def test_page_shows_rates_providers_suppression_and_doctor(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    web_app,  # noqa: F811
    client,  # noqa: F811
):
    settings = settings.replace(smtp_url=smtp_server.url)
    web_app.state.settings = settings
    _send(engine, session, settings, smtp_server)
    make_user(engine, "admin", "admin@example.org")
    csrf = login(client, "admin@example.org")

    page = client.get("/admin/deliverability")
    assert page.status_code == 200
    text = page.text
    assert "Not checked yet" in text  # no doctor report yet (the admin reads English)
    assert 'id="bounce-rate">10.0 %' in text  # 1 of 10 hard-bounced
    assert 'id="complaint-rate">10.0 %' in text  # 1 complaint of 10
    assert "<td>QQ 邮箱 / Tencent Exmail</td><td>8</td><td>8</td><td>100.0 %</td>" in text
    assert "<td>网易邮箱 NetEase (163/126/yeah)</td><td>2</td><td>1</td><td>50.0 %</td>" in text
    assert "Suppressed in all: 1" in text  # the bounced address was suppressed
    assert 'id="warmup"' not in text  # the From domain is not under the warm-up plan

    web_app.state.settings = settings.replace(warmup_domains=["example.org"], warmup_start=200)
    warming = client.get("/admin/deliverability").text
    assert 'id="warmup">' in warming and "/ 200</strong>" in warming
    assert "day 1" in warming
    web_app.state.settings = settings

    report = DoctorReport(
        "example.org",
        [
            CheckResult("spf", "pass", "spf.ok", {"lookups": 1, "relay": "relay"}),
            CheckResult(
                "dmarc",
                "fail",
                "dmarc.none",
                {"domain": "example.org"},
                '_dmarc.example.org. IN TXT "v=DMARC1; p=quarantine"',
            ),
        ],
    )
    save_report(settings, report)
    page = client.get("/admin/deliverability").text
    assert "example.org has no DMARC record" in page
    assert "_dmarc.example.org. IN TXT" in page
    assert 'id="doctor-status">fail' in page
    chinese = client.get("/lang/zh-CN?next=/admin/deliverability").text
    assert "没有 DMARC 记录" in chinese and "失败" in chinese

    # "check now" runs the doctor (here against a DNS server that never answers) and saves it
    with silent_dns_server() as nameservers:
        web_app.state.settings = settings.replace(dns_nameservers=nameservers, dns_timeout=0.2)
        done = client.post(
            "/admin/deliverability/check", data={"csrf_token": csrf}, follow_redirects=False
        )
    assert done.status_code == 303 and done.headers["location"].endswith("msg=checked")
    after = client.get("/admin/deliverability").text
    assert "DNS 服务器在 0.2 秒内没有回答" in after  # the language chosen above


def test_send_is_refused_while_doctor_fails_when_enforced(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    web_app,  # noqa: F811
    client,  # noqa: F811
):
    settings = settings.replace(smtp_url=smtp_server.url, doctor_enforce=True)
    web_app.state.settings = settings
    issue = publish_source(session, SAMPLE_ISSUE)
    list_id = make_list_with(session, "members", ["a@example.net"])
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[list_id]
    )
    session.commit()
    save_report(
        settings,
        DoctorReport("example.org", [CheckResult("dkim", "fail", "dkim.unconfigured")]),
    )
    make_user(engine, "admin", "admin@example.org")
    csrf = login(client, "admin@example.org")
    page = client.get(f"/admin/campaigns/{campaign.id}").text
    assert "dkim" in page and "dispatch doctor" in page  # the warning beside the send button
    refused = client.post(
        f"/admin/campaigns/{campaign.id}/start", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert refused.status_code == 409
    assert "doctor_enforce" in refused.text
    session.expire_all()
    assert campaigns.get(session, campaign.id).status == "draft"  # nothing was sent
    assert not smtp_server.messages


def _seed_warmup_plan(session, settings, **extra):
    """Three stored days (first, grown, held by bounces) before today, and 10 sent today."""
    from datetime import timedelta

    from dispatch.delivery.quota import local_day
    from dispatch.models import WarmupDay, utcnow

    settings = settings.replace(
        warmup_domains=["example.org"],
        warmup_start=200,
        **extra,
    )
    today = local_day(utcnow(), settings.send_timezone)
    for back, number, allowance, reason in (
        (3, 1, 200, "day one of the plan"),
        (2, 2, 400, "grown (sent 200, bounces 0.00%, complaints 0.000%)"),
        (1, 3, 400, "held: over threshold (sent 400, bounces 3.00%, complaints 0.000%)"),
    ):
        day = (today - timedelta(days=back)).isoformat()
        session.add(
            WarmupDay(
                domain="example.org", day=day, day_number=number, allowance=allowance, reason=reason
            )
        )
    session.commit()
    return settings


def _page_plan_rows(html: str) -> list[tuple[str, str, str, str, str]]:
    import re

    table = html.split('data-domain="example.org"', 1)[1].split("</table>", 1)[0]
    return re.findall(
        r'<tr class="plan-day plan-(\w+)" data-day="([\d-]+)"[^>]*><td>(\d+)</td>'
        r"<td>[^<]*</td><td>(\d+)</td><td>([^<]*)</td>",
        table,
    )


def test_page_shows_the_warm_up_plan_the_cli_shows(
    engine,
    session,
    settings,
    redis_url,
    redis_prefix,
    smtp_server,  # noqa: F811
    web_app,  # noqa: F811
    client,  # noqa: F811
):
    """Each row of the admin's plan table is a row of `dispatch relays status --json`'s plan."""
    from dispatch.cli.sending import relays_view

    settings = _seed_warmup_plan(
        session,
        settings.replace(smtp_url=smtp_server.url),
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
    )
    web_app.state.settings = settings
    _send(engine, session, settings, smtp_server)  # today's messages count against the plan
    make_user(engine, "admin", "admin@example.org")
    login(client, "admin@example.org")
    html = client.get("/admin/deliverability").text

    cli = relays_view(settings)["warmup"]["schedule"]
    assert [r["state"] for r in cli[:4]] == ["first", "grown", "held_rates", "held_quiet"]
    # today: 9 accepted (one address refused at RCPT); yesterday sent nothing, so it holds
    assert cli[3]["used"] == 9 and cli[3]["allowance"] == 400
    assert [r["allowance"] for r in cli[4:]] == [800, 1600, 3200, 6400, 12800, 25600, 51200]
    rows = _page_plan_rows(html)
    expected = [
        (
            r["state"],
            r["day"],
            str(r["day_number"]),
            str(r["allowance"]),
            "–" if r["used"] is None else str(r["used"]),
        )
        for r in cli
    ]
    assert rows == expected
    assert "held: bounces, complaints" in html and "ahead" in html  # English state words

    chinese = client.get("/lang/zh-CN?next=/admin/deliverability").text
    assert "保持：退信/投诉超阈值" in chinese and "预热计划：example.org" in chinese
    assert _page_plan_rows(chinese) == expected


@pytest.mark.browser
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_page_reads_on_a_375px_phone(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    web_app,  # noqa: F811
    client,  # noqa: F811
    artifacts_dir,
):
    """The page with a failing report (long DKIM record to publish) and a warm-up plan table
    (past days, today, days ahead) in headless Chromium."""
    from playwright.sync_api import sync_playwright

    from dispatch.channels.dkim import public_key_record
    from test_web_browser import CHROMIUM, CHROMIUM_ARGS

    settings = _seed_warmup_plan(session, settings.replace(smtp_url=smtp_server.url))
    web_app.state.settings = settings
    _send(engine, session, settings, smtp_server)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    record = f'mail2026._domainkey.example.org. IN TXT "{public_key_record(key)}"'
    save_report(
        settings,
        DoctorReport(
            "example.org",
            [
                CheckResult(
                    "dkim", "fail", "dkim.none", {"name": "mail2026._domainkey.example.org"}, record
                ),
                CheckResult("relay_tls", "pass", "tls.ok", {"version": "TLSv1.3"}),
            ],
        ),
    )
    make_user(engine, "admin", "admin@example.org")
    login(client, "admin@example.org")
    html = client.get("/admin/deliverability").text
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            page.set_content(html, wait_until="load")
            width = page.evaluate("document.scrollingElement.scrollWidth")
            plan_rows = page.locator("table.warmup-plan tr.plan-day").count()
            plan_right = page.evaluate(
                "document.querySelector('table.warmup-plan').getBoundingClientRect().right"
            )
            page.screenshot(path=str(artifacts_dir / "deliverability-375.png"), full_page=True)
        finally:
            browser.close()
    assert width <= 375, f"the deliverability page scrolls sideways at 375px ({width}px)"
    assert plan_rows == 11  # 3 stored days, today, 7 days ahead
    assert plan_right <= 375, f"the warm-up plan table sticks out at 375px ({plan_right}px)"


def test_ad_marker_through_the_api_and_the_lists_page(engine, settings, web_app, client):  # noqa: F811
    from test_web_support import bearer

    token = make_user(engine, "admin", "admin@example.org")
    created = client.post(
        "/api/lists",
        json={"slug": "promo", "name": "Promo", "ad_marker": True},
        headers=bearer(token),
    )
    assert created.status_code == 201 and created.json()["ad_marker"] is True
    default = client.post("/api/lists", json={"slug": "members"}, headers=bearer(token)).json()
    assert default["ad_marker"] is False  # off by default: a member bulletin is not advertising
    patched = client.patch(
        f"/api/lists/{created.json()['id']}", json={"ad_marker": False}, headers=bearer(token)
    )
    assert patched.json()["ad_marker"] is False
    csrf = login(client, "admin@example.org")
    form = client.post(
        "/admin/lists",
        data={"slug": "ads", "name": "Ads", "ad_marker": "1", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert form.status_code == 303
    page = client.get("/admin/lists").text
    assert page.count(">(AD)</span>") == 1
