"""Progress for people (issue 9, item 8): names beside ids, and a send rate counted from the
first send rather than from when the campaign was queued."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from dispatch.delivery import campaigns
from dispatch.delivery.queue import ListQueue
from dispatch.models import Campaign, Delivery, utcnow
from test_delivery_support import make_issue, make_list_with


def _running_campaign(engine, session, settings, n: int = 20) -> int:
    issue = make_issue(session)
    alpha = make_list_with(session, "alpha", [f"a{i:02d}@example.org" for i in range(n)])
    beta = make_list_with(session, "beta", ["b@example.org"])
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[alpha, beta]
    )
    session.commit()
    campaigns.start(engine, settings, campaign.id, ListQueue())
    return campaign.id


def _mark_sent(session, campaign_id: int, count: int, first, step: timedelta) -> None:
    ids = [
        d.id
        for d in session.query(Delivery)
        .filter_by(campaign_id=campaign_id)
        .order_by(Delivery.id)
        .limit(count)
    ]
    for k, delivery_id in enumerate(ids):
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status="sent", sent_at=first + k * step)
        )
    session.commit()


def test_progress_names_the_issue_and_lists(engine, session, settings):
    campaign_id = _running_campaign(engine, session, settings)
    p = campaigns.progress(session, campaign_id)
    assert p["issue_slug"] == "2023-02" and p["issue_title"] == "工作简报"
    assert p["list_slugs"] == ["alpha", "beta"]


def test_rate_counts_from_the_first_send_not_from_queueing(engine, session, settings):
    campaign_id = _running_campaign(engine, session, settings)
    now = utcnow()
    # queued an hour ago (no worker ran), then 20 messages in the last 10 seconds: 2/s
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(started_at=now - timedelta(hours=1))
    )
    _mark_sent(session, campaign_id, 20, now - timedelta(seconds=10), timedelta(seconds=0.5))
    session.expire_all()
    rate = campaigns.progress(session, campaign_id)["rate_per_second"]
    assert 1.5 <= rate <= 2.1, rate  # a 60 s window from "now" would say 0.33

    # finished: the average from first to last send, not a window decaying to zero
    session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign_id, Delivery.status == "pending")
        .values(status="skipped")
    )
    session.execute(update(Campaign).where(Campaign.id == campaign_id).values(status="finished"))
    session.commit()
    _mark_sent(session, campaign_id, 20, now - timedelta(hours=2), timedelta(seconds=0.5))
    session.expire_all()
    assert campaigns.progress(session, campaign_id)["rate_per_second"] == round(20 / 9.5, 2)


def test_no_send_yet_is_a_rate_of_zero(engine, session, settings):
    campaign_id = _running_campaign(engine, session, settings)
    assert campaigns.progress(session, campaign_id)["rate_per_second"] == 0.0


def test_cli_list_and_show_print_names_not_ids(engine, session, settings):
    from click.testing import CliRunner

    from dispatch.cli import main

    campaign_id = _running_campaign(engine, session, settings)
    shown = CliRunner().invoke(main, ["campaigns", "show", str(campaign_id)])
    assert shown.exit_code == 0, shown.output
    assert "2023-02 «工作简报»" in shown.output and "alpha, beta" in shown.output
    assert "[" not in shown.output.splitlines()[0]  # no "lists [1, 3]"
    assert "发送中 / running" in shown.output
    listed = CliRunner().invoke(main, ["campaigns", "list"])
    assert f"#{campaign_id}  2023-02  email  alpha,beta" in listed.output, listed.output
