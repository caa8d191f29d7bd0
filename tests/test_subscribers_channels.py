"""One person across channels: an issue sent by email AND WeChat reaches each person once, on
their preferred channel (both when they chose both); binding a WeChat follower to the email
person turns two rows into one person and one message. Email goes through the real SMTP
channel into the local outbox; the WeChat side is checked at fan-out (its deliveries)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.delivery.engine import drain
from dispatch.delivery.queue import ListQueue
from dispatch.models import Delivery
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.subscribers import binding, service
from dispatch.transactional import outbox_dir


def _people(session: Session) -> dict[str, int]:
    news = service.create_list(session, "news", "News")

    def person(email=None, openid=None, prefers="email"):
        p = service.add_subscriber(session, email=email, openid=openid, name="x")
        p.preferred_channel = prefers
        service.subscribe(session, p, news, send_confirmation=False)
        return p.id

    ids = {
        "mail_only": person(email="a@example.org"),
        "wechat_only": person(openid="oD"),
        "prefers_email": person(email="e@example.org", openid="oE", prefers="email"),
        "prefers_both": person(email="f@example.org", openid="oF", prefers="both"),
        "prefers_wechat_unreachable": person(email="g@example.org", prefers="wechat"),
        # C reads by email and follows the account: two unrelated rows until bound
        "c_mail": person(email="c@example.org"),
        "c_follower": person(openid="oC"),
    }
    # G prefers WeChat but never bound an openid: WeChat cannot reach G, so email does
    session.commit()
    return ids


def _send_both(engine, settings, session, list_ids, issue_id) -> list[int]:
    ids = []
    for channel in ("email", "wechat"):
        campaign, _ = campaigns.create_or_get(
            session,
            issue_id=issue_id,
            channel=channel,
            list_ids=list_ids,
            options={"channels": ["email", "wechat"]},
        )
        session.commit()
        ids.append(campaign.id)
    queue = ListQueue()
    campaigns.start(engine, settings, ids[0], queue)
    campaigns.start(engine, settings, ids[1], ListQueue())  # fanned out, not sent here
    drain(engine, settings, queue)
    return ids


def test_binding_makes_a_send_on_both_channels_reach_each_person_once(engine, session, settings):
    issue = publish_source(session, SAMPLE_ISSUE_DIR)
    ids = _people(session)
    news = service.get_list(session, "news").id
    session.commit()

    # C is on two rows (an email reader and a follower) until the code binds them
    code = binding.issue_message_code(session, service.find_subscriber(session, id=ids["c_mail"]))
    binding.bind_by_message(session, "oC", code)
    service.find_subscriber(session, id=ids["c_mail"]).preferred_channel = "wechat"
    session.commit()

    email_id, wechat_id = _send_both(engine, settings, session, [news], issue.id)
    session.expire_all()
    rows = session.execute(
        select(Delivery.subscriber_id, Delivery.campaign_id, Delivery.status)
    ).all()
    by_person: dict[int, list[int]] = {}
    for subscriber_id, campaign_id, _status in rows:
        by_person.setdefault(subscriber_id, []).append(campaign_id)
    by_person = {k: sorted(v) for k, v in by_person.items()}
    assert by_person == {
        ids["mail_only"]: [email_id],
        ids["wechat_only"]: [wechat_id],
        ids["prefers_email"]: [email_id],
        ids["prefers_both"]: sorted([email_id, wechat_id]),
        ids["prefers_wechat_unreachable"]: [email_id],
        ids["c_mail"]: [wechat_id],  # one person now, on the channel they prefer
    }
    # the email campaign really went out, one message per email person
    assert len(list(outbox_dir(settings).glob("*.eml"))) == 4
    emailed = session.scalars(
        select(Delivery.email).where(Delivery.campaign_id == email_id, Delivery.status == "sent")
    ).all()
    assert sorted(emailed) == ["a@example.org", "e@example.org", "f@example.org", "g@example.org"]
    reach = campaigns.reach(session, campaigns.get(session, email_id))
    assert reach["campaign_ids"] == sorted([email_id, wechat_id])
    assert (reach["messages"], reach["people"]) == (4, 4)  # WeChat rows not sent in this test


def test_a_single_channel_send_ignores_the_preference(engine, session, settings):
    issue = publish_source(session, SAMPLE_ISSUE_DIR)
    ids = _people(session)
    news = service.get_list(session, "news").id
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="wechat", list_ids=[news]
    )
    session.commit()
    campaigns.start(engine, settings, campaign.id, ListQueue())
    reached = set(session.scalars(select(Delivery.subscriber_id)))
    # everyone WeChat can reach, whatever they prefer: this send has no email side
    assert reached == {
        ids["wechat_only"],
        ids["prefers_email"],
        ids["prefers_both"],
        ids["c_follower"],
    }
    assert campaigns.reach(session, campaign) is None


def test_send_both_from_the_cli_makes_two_campaigns_reaching_each_person_once(
    engine, session, settings, tmp_path
):
    import json

    from click.testing import CliRunner

    from dispatch.cli import main
    from dispatch.config import set_settings
    from dispatch.models import Campaign

    set_settings(settings.replace(wechat_app_id="wxtest", wechat_app_secret="not-used-here"))
    ids = _people(session)
    source = publish_source(session, SAMPLE_ISSUE_DIR).slug  # has the cover WeChat needs
    session.commit()
    result = CliRunner().invoke(
        main,
        ["send", source, "--lists", "news", "--channel", "both", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    decoder, text, outputs = json.JSONDecoder(), result.output.strip(), []
    while text:
        obj, end = decoder.raw_decode(text)
        outputs.append(obj)
        text = text[end:].strip()
    assert [o["channel"] for o in outputs] == ["email", "wechat"]
    # the second campaign's report already counts the send as a whole
    assert outputs[-1]["reach"]["campaign_ids"] == sorted(x["id"] for x in outputs)
    session.expire_all()
    assert {tuple(c.options["channels"]) for c in session.scalars(select(Campaign))} == {
        ("email", "wechat")
    }
    per_person: dict[int, int] = {}
    for sid in session.scalars(select(Delivery.subscriber_id)):
        per_person[sid] = per_person.get(sid, 0) + 1
    assert per_person[ids["prefers_both"]] == 2
    assert all(n == 1 for sid, n in per_person.items() if sid != ids["prefers_both"])
    bad = CliRunner().invoke(main, ["send", source, "--channel", "both", "--test", "x@example.org"])
    assert bad.exit_code != 0 and "one channel" in bad.output
