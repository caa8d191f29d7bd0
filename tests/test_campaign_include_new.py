"""A send to nobody is refused, and a finished campaign reaches people added later (issue 9,
item 1): `dispatch send … --include-new` / the "send to those not yet reached" button."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, update

from dispatch.cli import main
from dispatch.delivery import campaigns
from dispatch.delivery.queue import ListQueue
from dispatch.models import Campaign, Delivery
from test_delivery_support import make_issue, make_list_with


def _finish_everything(session, campaign_id: int) -> None:
    session.execute(
        update(Delivery).where(Delivery.campaign_id == campaign_id).values(status="sent")
    )
    campaigns.finish_if_done(session, campaign_id)
    session.commit()
    session.expire_all()


def test_start_refuses_nobody_and_the_campaign_stays_a_draft(engine, session, settings):
    issue = make_issue(session)
    empty = make_list_with(session, "followers", [])
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[empty]
    )
    session.commit()
    with pytest.raises(campaigns.NoRecipients, match="nobody to reach"):
        campaigns.start(engine, settings, campaign.id, ListQueue())
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == "draft"
    make_list_with(session, "followers", ["late@example.org"])
    session.commit()
    assert campaigns.start(engine, settings, campaign.id, ListQueue()) == [0]


def test_include_new_reaches_only_people_added_since(engine, session, settings):
    issue = make_issue(session)
    members = make_list_with(session, "members", ["a@example.org", "b@example.org"])
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[members]
    )
    session.commit()
    campaigns.start(engine, settings, campaign.id, ListQueue())
    _finish_everything(session, campaign.id)
    assert session.get(Campaign, campaign.id).status == "finished"

    make_list_with(session, "members", ["c@example.org", "d@example.org"])
    session.commit()
    queue = ListQueue()
    added, batches = campaigns.include_new(engine, settings, campaign.id, queue)
    assert added == 2 and batches == [1] and queue.items == [(campaign.id, 1)]
    session.expire_all()
    rows = dict(
        session.execute(
            select(Delivery.email, Delivery.status).where(Delivery.campaign_id == campaign.id)
        ).all()
    )
    assert rows == {
        "a@example.org": "sent",
        "b@example.org": "sent",
        "c@example.org": "pending",
        "d@example.org": "pending",
    }
    c = session.get(Campaign, campaign.id)
    assert c.status == "running" and c.total == 4
    # nothing new: nothing sent, nothing changes
    assert campaigns.include_new(engine, settings, campaign.id, ListQueue()) == (0, [])


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_empty_list_wechat_settings_and_include_new(engine, session, settings, tmp_path):
    from test_delivery_workers import _small_issue

    source = str(_small_issue(tmp_path / "issue"))
    make_list_with(session, "followers", [])
    session.commit()

    wechat = _cli("send", source, "--lists", "followers", "--channel", "wechat")
    assert wechat.exit_code == 1 and "wechat_app_id" in wechat.stderr
    assert session.scalar(select(func.count(Campaign.id))) == 0  # checked before storing

    empty = _cli("send", source, "--lists", "followers")
    assert empty.exit_code == 1 and "nobody to reach" in empty.stderr and "草稿" in empty.stderr
    session.expire_all()
    assert session.scalars(select(Campaign.status)).all() == ["draft"]

    make_list_with(session, "followers", ["first@example.org"])
    session.commit()
    sent = _cli("send", "2023-07", "--lists", "followers", "--json")
    assert sent.exit_code == 0, sent.output
    campaign_id = json.loads(sent.stdout)["id"]
    _finish_everything(session, campaign_id)

    make_list_with(session, "followers", ["second@example.org"])
    session.commit()
    again = _cli("send", "2023-07", "--lists", "followers")
    assert "--include-new" in again.stdout  # the way forward is named
    included = _cli("send", "2023-07", "--lists", "followers", "--include-new")
    assert included.exit_code == 0, included.output
    assert "1 people added to its lists since are queued" in included.stdout
    session.expire_all()
    emails = session.scalars(
        select(Delivery.email).where(Delivery.campaign_id == campaign_id).order_by(Delivery.id)
    ).all()
    assert emails == ["first@example.org", "second@example.org"]


def test_api_wechat_campaign_needs_the_wechat_settings_first(engine, session, settings):
    from fastapi.testclient import TestClient

    from dispatch.web.app import create_app
    from test_web_support import bearer, make_user

    issue = make_issue(session)
    followers = make_list_with(session, "followers", [])
    session.commit()
    token = make_user(engine, "editor")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        answer = client.post(
            "/api/campaigns",
            json={"issue_id": issue.id, "channel": "wechat", "list_ids": [followers]},
            headers=bearer(token),
        )
    assert answer.status_code == 409 and "wechat_app_id" in answer.json()["detail"]
    assert session.scalar(select(func.count(Campaign.id))) == 0
