"""The `dispatch wechat` commands and the demo's WeChat part, against the fake API."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from dispatch.cli import main
from dispatch.config import set_settings
from dispatch.dev.wechat_testing import seed_followers
from dispatch.models.wechat import WechatMassChunk
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.wechat.client import WechatClient
from dispatch.wechat.mass import poll_mass_status


@pytest.fixture
def wechat_settings(wechat_settings):
    set_settings(wechat_settings)  # the CLI reads the process-wide settings
    return wechat_settings


@pytest.fixture
def sample_issue(session):
    from dispatch.content.store import publish_source

    issue = publish_source(session, SAMPLE_ISSUE_DIR)
    session.commit()
    return issue


def test_publish_preview_and_status_commands(session, wechat_settings, fake, sample_issue):
    runner = CliRunner()
    out = runner.invoke(main, ["wechat", "publish", sample_issue.slug, "--free-publish", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["article_url"]
    assert data["draft_media_id"] in fake.state.consumed_drafts  # published: left the draft box

    again = runner.invoke(
        main, ["wechat", "publish", sample_issue.slug, "--free-publish", "--json"]
    )
    assert json.loads(again.output)["reused"] is True  # the same rendering is published once
    assert json.loads(again.output)["article_url"] == data["article_url"]

    draft = json.loads(
        runner.invoke(main, ["wechat", "publish", sample_issue.slug, "--json"]).output
    )
    assert draft["reused"] is False  # a fresh draft: the published one cannot be used again
    assert draft["draft_media_id"] in fake.state.drafts and draft["uploads"] == 0
    again = runner.invoke(main, ["wechat", "publish", sample_issue.slug, "--json"])
    assert json.loads(again.output)["draft_media_id"] == draft["draft_media_id"]

    out = runner.invoke(main, ["wechat", "preview", sample_issue.slug, "--openid", "oEditor"])
    assert out.exit_code == 0, out.output
    assert "oEditor" in out.output and len(fake.state.mass_sends("preview")) == 1

    out = runner.invoke(main, ["wechat", "status", "424242"])
    assert out.exit_code == 0 and "424242" in out.output


def test_unknown_issue_is_one_clear_error(wechat_settings, fake):
    out = CliRunner().invoke(main, ["wechat", "publish", "no-such-issue"])
    assert out.exit_code == 1 and "no-such-issue" in out.output


def test_demo_publishes_and_mass_sends_to_followers_with_openids(session, settings, sample_issue):
    from dispatch.dev.wechat_demo import run_wechat_demo

    list_id = seed_followers(session, 12)
    result = run_wechat_demo(settings, session, sample_issue, [list_id])
    assert result["draft_media_id"] and result["msg_ids"]
    assert result["deliveries"]["sent"] == 12
    assert all(c["status"] == "finished" and c["sent"] for c in result["chunks"])


def test_demo_step_uses_every_list_and_reports_followers(session, settings, sample_issue):
    from dispatch.dev.wechat_demo import demo_step

    seed_followers(session, 5, list_slug="a", openid_prefix="oA")
    seed_followers(session, 4, list_slug="b", openid_prefix="oB")
    result = demo_step(settings, sample_issue.id)
    assert result["deliveries"]["sent"] == 9 and result["images_uploaded"] > 0


def test_poll_mass_status_marks_finished_chunks(session, wechat_settings, fake):
    fake.state.drafts["D"] = [{}]
    client = WechatClient(wechat_settings)
    msg_id = client.mass_send_openids(["a", "b"], "D", "poll-1")["msg_id"]
    session.add(
        WechatMassChunk(
            campaign_id=9,
            batch_no=0,
            clientmsgid="poll-1",
            account=client.account,
            mode="openids",
            draft_media_id="D",
            msg_id=str(msg_id),
            status="sent",
            event={},
        )
    )
    session.commit()
    report = poll_mass_status(session, client, 9)
    assert report == [
        {"clientmsgid": "poll-1", "msg_id": str(msg_id), "msg_status": "SEND_SUCCESS"}
    ]
    assert session.scalars(select(WechatMassChunk)).one().status == "finished"
