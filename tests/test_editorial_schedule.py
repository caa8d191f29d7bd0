"""Issue 19 item 5: sending from the web. A campaign is scheduled at a date and time in a zone
(Asia/Shanghai by default, shown with the zone), with a sending window, and the schedule can be
taken back; the confirmation names the lists, the people per channel and the approver; an
unapproved issue cannot be scheduled; bad times, zones and windows are named."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.config import set_settings
from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.editorial import review, versions
from dispatch.models.audit import AuditEntry
from dispatch.models.delivery import Campaign
from dispatch.models.web import User
from dispatch.web.pages_schedule import ScheduleError, local_time
from test_delivery_support import make_list_with
from test_web_support import login, make_user

pytest_plugins = ["test_web_support"]
VALID = Path(__file__).parent / "fixtures" / "issues" / "valid"


@pytest.fixture
def settings(settings):
    on = settings.replace(review_required=True)
    set_settings(on)
    return on


@pytest.fixture
def campaign_id(engine, settings, tmp_path) -> int:
    folder = tmp_path / "issue"
    shutil.copytree(VALID, folder)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        issue = publish_source(session, folder, settings=settings)
        list_id = make_list_with(session, "members", ["a@example.org", "b@example.org"])
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[list_id]
        )
        return campaign.id


def _approve(engine, settings, campaign_id: int) -> None:
    make_user(engine, "reviewer", "chief.reviewer@example.org")
    with Session(engine) as session, session.begin():
        issue_id = session.get(Campaign, campaign_id).issue_id
        version = versions.latest_version(session, issue_id)
        reviewer = session.query(User).filter_by(email="chief.reviewer@example.org").one()
        editor = session.query(User).filter_by(email="editor@example.org").one()
        review.submit(session, version, editor.id)
        review.approve(session, settings, version, reviewer, seen_hash=version.content_hash)


def test_local_time_is_read_in_its_zone_and_the_past_or_a_bad_zone_is_refused():
    now = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
    at = local_time("2026-03-01T09:00", "Asia/Shanghai", "en", now=now)
    assert at.astimezone(UTC) == datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="has passed"):
        local_time("2026-03-01T07:59", "Asia/Shanghai", "en", now=now)
    with pytest.raises(ScheduleError, match="Unknown time zone"):
        local_time("2026-03-01T09:00", "Mars/Olympus", "en", now=now)
    with pytest.raises(ScheduleError, match="格式"):
        local_time("next tuesday", "Asia/Shanghai", "zh-CN", now=now)


def test_scheduling_from_the_page_with_a_window_then_taking_it_back(
    client, engine, settings, campaign_id
):
    make_user(engine, "editor")
    csrf = login(client, "editor@example.org")
    page = client.get(f"/admin/campaigns/{campaign_id}")
    summary = page.text.split('id="send-summary"')[1].split("</ul>")[0]
    assert "Lists: Members" in summary and "People: Email 2、WeChat 0" in summary
    assert "only an approved version can be sent" in summary  # named before anyone presses
    when = (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(days=2)).replace(
        hour=9, minute=30, second=0, microsecond=0
    )
    form = {"csrf_token": csrf, "at": when.strftime("%Y-%m-%dT%H:%M"), "window": "08:00-21:00"}
    refused = client.post(f"/admin/campaigns/{campaign_id}/schedule", data=form)
    assert refused.status_code == 409 and "only an approved version" in refused.text
    with Session(engine) as session:
        assert session.get(Campaign, campaign_id).status == "draft"
    _approve(engine, settings, campaign_id)
    page = client.get(f"/admin/campaigns/{campaign_id}")
    assert "Approved by chief.reviewer@example.org (version 1)" in page.text
    bad = client.post(f"/admin/campaigns/{campaign_id}/schedule", data={**form, "window": "8-9"})
    assert bad.status_code == 422 and "sending window" in bad.text
    done = client.post(
        f"/admin/campaigns/{campaign_id}/schedule", data=form, follow_redirects=False
    )
    assert done.status_code == 303
    with Session(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign.status == "scheduled"
        assert campaign.scheduled_at == when.astimezone(UTC)
        assert campaign.options["window"] == "08:00-21:00"
        assert campaign.options["timezone"] == "Asia/Shanghai"
    page = client.get(f"/admin/campaigns/{campaign_id}")
    shown = when.strftime("%Y-%m-%d %H:%M")
    assert f"Scheduled for {shown} (Asia/Shanghai)" in page.text
    assert "Sending window: 08:00-21:00 (Asia/Shanghai)" in page.text
    back = client.post(
        f"/admin/campaigns/{campaign_id}/unschedule",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert back.status_code == 303
    with Session(engine) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign.status == "draft" and campaign.scheduled_at is None
        logged = [
            (e.action, (e.after or {}).get("status"))
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.target_kind == "campaign"
        ]
        assert logged == [("schedule", "scheduled"), ("unschedule", "draft")]
