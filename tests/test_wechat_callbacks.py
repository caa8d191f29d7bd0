"""WeChat's event callbacks, signed and AES-encrypted as WeChat sends them, parsed and recorded."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.wechat import WechatChannel
from dispatch.delivery import campaigns as campaign_service
from dispatch.dev.wechat_fake import new_aes_key
from dispatch.dev.wechat_testing import drafted_issue, seed_followers
from dispatch.models import Delivery
from dispatch.models.wechat import WechatMassChunk
from dispatch.wechat.callbacks import handle_callback
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import RetryPolicy

CALLBACK_TOKEN = "callback-token-for-tests"


@pytest.fixture
def fake(fake):
    fake.state.callback_token = CALLBACK_TOKEN
    fake.state.callback_aes_key = new_aes_key()
    return fake


@pytest.fixture
def wechat_settings(wechat_settings, fake):
    return wechat_settings.replace(
        wechat_token=CALLBACK_TOKEN, wechat_aes_key=fake.state.callback_aes_key
    )


@pytest.fixture
def issue(session, wechat_settings, tmp_path):
    issue = drafted_issue(session, wechat_settings, tmp_path, 1, 1)
    return issue


def _send_chunk(wechat_settings, issue, n=4) -> str:
    channel = WechatChannel(
        wechat_settings,
        CampaignContext(5, issue.id, 0, (1,), False),
        policy=RetryPolicy(attempts=1),
    )
    results = channel.send([Recipient(i, i, None, "", "zh-CN", f"oCB{i}") for i in range(1, n + 1)])
    assert {r.outcome for r in results} == {"sent"}, results[0].text
    return results[0].external_id


def test_masssendjobfinish_records_counts_on_the_chunk(session, wechat_settings, fake, issue):
    msg_id = _send_chunk(wechat_settings, issue)
    fake.state.filter_ratio = 0.25
    params, body = fake.api.sign_and_encrypt(fake.api.mass_finish_xml(int(msg_id)))
    assert b"<Encrypt>" in body and b"MASSSENDJOBFINISH" not in body  # really encrypted

    assert handle_callback(session, wechat_settings, params, body) == "success"
    session.commit()

    chunk = session.scalars(select(WechatMassChunk).where(WechatMassChunk.msg_id == msg_id)).one()
    assert (
        chunk.status,
        chunk.total_count,
        chunk.filter_count,
        chunk.sent_count,
        chunk.error_count,
    ) == ("finished", 4, 3, 3, 0)
    assert chunk.event["Event"] == "MASSSENDJOBFINISH" and chunk.event["status"] == "send success"


def test_bad_signatures_are_refused_and_nothing_recorded(session, wechat_settings, fake, issue):
    msg_id = _send_chunk(wechat_settings, issue)
    params, body = fake.api.sign_and_encrypt(fake.api.mass_finish_xml(int(msg_id)))
    with pytest.raises(PermissionError, match="bad signature"):
        handle_callback(session, wechat_settings, {**params, "signature": "0" * 40}, body)
    with pytest.raises(PermissionError, match="msg_signature"):
        handle_callback(session, wechat_settings, {**params, "msg_signature": "0" * 40}, body)
    with pytest.raises(PermissionError):  # signed with another account's token
        handle_callback(session, wechat_settings.replace(wechat_token="someone-else"), params, body)
    session.rollback()
    chunk = session.scalars(select(WechatMassChunk).where(WechatMassChunk.msg_id == msg_id)).one()
    assert chunk.status == "sent" and chunk.total_count is None


def test_url_verification_echoes_echostr(session, wechat_settings, fake):
    from dispatch.dev.wechat_fake import _sha1_sorted

    now = str(int(time.time()))
    query = {
        "timestamp": now,
        "nonce": "abc",
        "echostr": "hello-wechat",
        "signature": _sha1_sorted(CALLBACK_TOKEN, now, "abc"),
    }
    assert handle_callback(session, wechat_settings, query, b"") == "hello-wechat"
    with pytest.raises(PermissionError):
        handle_callback(session, wechat_settings, {**query, "nonce": "other"}, b"")


def test_malformed_body_is_a_value_error(session, wechat_settings, fake):
    from dispatch.dev.wechat_fake import _sha1_sorted

    now = str(int(time.time()))
    query = {"timestamp": now, "nonce": "n", "signature": _sha1_sorted(CALLBACK_TOKEN, now, "n")}
    plain = wechat_settings.replace(wechat_aes_key="")
    with pytest.raises(ValueError):
        handle_callback(session, plain, query, b"<not-xml")


def test_template_mode_is_refused_before_a_campaign_exists(session, wechat_settings, issue):
    """Template messages may not push content (WeChat's rules): no campaign is created."""
    list_id = seed_followers(session, 3)
    with pytest.raises(campaign_service.CampaignError, match="template"):
        campaign_service.create_or_get(
            session,
            issue_id=issue.id,
            channel="wechat",
            list_ids=[list_id],
            options={"wechat_mode": "template", "wechat_template_id": "TPL1"},
            settings=wechat_settings,
        )
    assert session.scalars(select(Delivery)).first() is None


def test_fake_posts_event_to_the_web_callback_over_http(session, wechat_settings, fake, issue):
    """End to end: the fake emits MASSSENDJOBFINISH to the web app's endpoint (uvicorn)."""
    import uvicorn

    from dispatch.web.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(wechat_settings), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        msg_id = _send_chunk(wechat_settings, issue)
        status, answer = fake.api.post_event(
            fake.api.mass_finish_xml(int(msg_id)), f"http://127.0.0.1:{port}/wechat/callback"
        )
        assert (status, answer) == (200, "success")
        session.expire_all()
        chunk = session.scalars(
            select(WechatMassChunk).where(WechatMassChunk.msg_id == msg_id)
        ).one()
        assert chunk.status == "finished" and chunk.total_count == 4
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_publishjobfinish_takes_the_article_url_from_the_api_not_the_callback(
    session, wechat_settings, fake, issue
):
    from dispatch.models.wechat import WechatDraft

    fake.state.publish_polls = 0  # freepublish/get answers "published" at once
    draft = session.scalars(select(WechatDraft)).one()
    draft.publish_id = WechatClient(wechat_settings).freepublish_submit(draft.media_id)
    session.commit()
    xml = (
        "<xml><ToUserName><![CDATA[gh_fake]]></ToUserName><FromUserName><![CDATA[oSys]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[PUBLISHJOBFINISH]]></Event><PublishEventInfo><publish_id>{draft.publish_id}</publish_id>"
        "<publish_status>0</publish_status><article_id><![CDATA[FORGED]]></article_id>"
        "<article_detail><count>1</count><item><idx>1</idx>"
        "<article_url><![CDATA[https://evil.example/phish]]></article_url></item></article_detail>"
        "</PublishEventInfo></xml>"
    )
    params, body = fake.api.sign_and_encrypt(xml)
    assert handle_callback(session, wechat_settings, params, body) == "success"
    session.commit()
    session.expire_all()
    draft = session.scalars(select(WechatDraft)).one()
    assert draft.article_url.startswith("https://mp.weixin.qq.com/s/")  # freepublish/get's
    assert "evil" not in draft.article_url and draft.article_id != "FORGED"


def test_a_binding_code_sent_as_a_message_ties_the_follower_to_the_email_person(
    session, wechat_settings, fake
):
    from wechatpy.crypto import WeChatCrypto

    from dispatch.models.subscriber import Subscriber
    from dispatch.subscribers import binding, service

    person = service.add_subscriber(session, email="reader@example.org")
    code = binding.issue_message_code(session, person)
    session.commit()
    xml = (
        "<xml><ToUserName><![CDATA[gh_fake]]></ToUserName>"
        f"<FromUserName><![CDATA[oTEXTER]]></FromUserName><CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ {code} ]]></Content>"
        "<MsgId>1234567890123456</MsgId></xml>"
    )
    params, body = fake.api.sign_and_encrypt(xml, openid="oTEXTER")
    reply = handle_callback(session, wechat_settings, params, body)
    session.commit()
    assert session.get(Subscriber, person.id).openid == "oTEXTER"
    crypto = WeChatCrypto(
        wechat_settings.wechat_token, wechat_settings.wechat_aes_key, wechat_settings.wechat_app_id
    )
    plain = crypto.decrypt_message(
        reply,
        reply.split("<MsgSignature><![CDATA[")[1].split("]]>")[0],
        reply.split("<TimeStamp>")[1].split("</TimeStamp>")[0],
        reply.split("<Nonce><![CDATA[")[1].split("]]>")[0],
    )
    assert "oTEXTER" in plain and "绑定" in plain
    # any other text is no business of ours: "success", nothing bound
    params, body = fake.api.sign_and_encrypt(xml.replace(code, "hello"), openid="oOTHER")
    assert handle_callback(session, wechat_settings, params, body) == "success"
