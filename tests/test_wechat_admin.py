"""The admin's WeChat views: the preview's images come from the issue's published files in a
375 px phone frame; a WeChat campaign page shows WeChat's numbers, not email's columns."""

from __future__ import annotations

import re

from sqlalchemy.orm import Session

from dispatch.content.store import publish_source
from dispatch.delivery import campaigns as campaign_service
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.subscribers import service
from test_web_support import login, make_user

pytest_plugins = ["test_web_support"]


def test_wechat_preview_images_come_from_published_files(client, engine, settings):
    make_user(engine, "editor")
    login(client, "editor@example.org")
    with Session(engine) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        issue_id, slug = issue.id, issue.slug
    page = client.get(f"/admin/issues/{issue_id}")
    assert page.status_code == 200
    assert str(SAMPLE_ISSUE_DIR) not in page.text  # no path on the server's disk
    assert 'class="phone-frame"' in page.text
    frame = page.text.split('class="phone-frame"', 1)[1]
    sources = re.findall(r'<img[^>]*src="([^"]+)"', frame)
    assert sources and all(src.startswith(f"/issues/{slug}/images/") for src in sources)
    for src in set(sources):
        image = client.get(src)
        assert image.status_code == 200 and image.headers["content-type"].startswith("image/")


def test_wechat_campaign_page_shows_wechat_numbers(client, engine, settings):
    make_user(engine, "editor")
    login(client, "editor@example.org")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        followers = service.create_list(session, "followers", "Followers")
        person = service.add_subscriber(session, openid="oPAGE0001")
        service.subscribe(session, person, followers, settings=settings)
        campaign, _ = campaign_service.create_or_get(
            session, issue_id=issue.id, channel="wechat", list_ids=[followers.id], settings=settings
        )
    page = client.get(f"/admin/campaigns/{campaign.id}")
    assert page.status_code == 200
    assert 'id="wechat-chunks"' in page.text and 'id="wechat-totals"' in page.text
    assert 'id="wechat-limits"' in page.text and "4" in page.text  # service: 4 a month
    from dispatch.web.texts import TEXTS

    for key in ("stat_opened", "stat_clicked", "chart_title"):  # email's columns are not shown
        assert not any(word in page.text for word in TEXTS.messages[key])


def test_overview_shows_follower_counts_after_a_sync(client, engine, settings, fake):
    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.followers import sync_followers

    wechat = fake.settings_for(settings)
    fake.state.add_followers(7)
    sync_followers(engine, WechatClient(wechat), wechat)
    make_user(engine, "editor")
    login(client, "editor@example.org")
    page = client.get("/admin/")
    assert page.status_code == 200 and 'id="wechat-sync"' in page.text
    assert "7" in page.text.split('id="wechat-sync"', 1)[1].split("</p>")[0]
