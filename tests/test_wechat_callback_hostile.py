"""Hostile WeChat callbacks: replays, old timestamps, downgrades to plaintext, XML bombs and
external entities, forged follow events and forged failures. Each is refused (or changes
nothing) and leaves no state behind; WeChat's own retries are recorded once."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.wechat import WechatChannel
from dispatch.dev.wechat_fake import _sha1_sorted, new_aes_key
from dispatch.dev.wechat_testing import drafted_issue
from dispatch.models import Event
from dispatch.models.subscriber import Subscriber, Subscription
from dispatch.models.wechat import WechatCallbackSeen, WechatFollower, WechatMassChunk
from dispatch.wechat.callbacks import CallbackUnverified, handle_callback
from dispatch.wechat.errors import RetryPolicy

TOKEN = "hostile-callback-token"


@pytest.fixture
def fake(fake):
    fake.state.callback_token = TOKEN
    fake.state.callback_aes_key = new_aes_key()
    return fake


@pytest.fixture
def wechat_settings(wechat_settings, fake):
    return wechat_settings.replace(wechat_token=TOKEN, wechat_aes_key=fake.state.callback_aes_key)


def _state(session) -> tuple:
    return (
        session.scalar(select(func.count()).select_from(WechatCallbackSeen)),
        session.scalar(select(func.count()).select_from(Subscriber)),
        session.scalar(select(func.count()).select_from(Event)),
        session.scalar(select(func.count()).select_from(WechatFollower)),
    )


def _plain_query(timestamp: int | None = None, nonce: str = "n1") -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"timestamp": ts, "nonce": nonce, "signature": _sha1_sorted(TOKEN, ts, nonce)}


def test_replayed_nonce_is_refused_and_changes_nothing(session, wechat_settings, fake):
    xml = fake.api.subscribe_xml("oNEW0000001")
    params, body = fake.api.sign_and_encrypt(xml)
    assert handle_callback(session, wechat_settings, params, body) == "success"
    session.commit()
    before = _state(session)
    assert before[1] == 1  # the follower became a subscriber
    with pytest.raises(PermissionError, match="replay"):
        handle_callback(session, wechat_settings, params, body)
    session.rollback()
    assert _state(session) == before


def test_old_and_future_timestamps_are_refused(session, wechat_settings, fake):
    xml = fake.api.subscribe_xml("oOLD0000001")
    params, body = fake.api.sign_and_encrypt(xml)
    for offset in (-3 * 86400, -(wechat_settings.wechat_callback_window + 5), 3600):
        with pytest.raises(PermissionError, match="window"):
            handle_callback(
                session, wechat_settings, params, body, now=int(params["timestamp"]) - offset
            )
    session.rollback()
    assert _state(session) == (0, 0, 0, 0)


def test_plaintext_is_refused_when_an_aes_key_is_configured(session, wechat_settings, fake):
    xml = fake.api.subscribe_xml("oPLAIN00001").encode()
    for query in (
        _plain_query(),  # no encrypt_type at all
        {**_plain_query(nonce="n2"), "encrypt_type": "raw"},  # the caller asks for plaintext
    ):
        with pytest.raises(PermissionError, match="safe mode"):
            handle_callback(session, wechat_settings, query, xml)
    # a body that is not encrypted, posted with an aes query: still refused
    params, _ = fake.api.sign_and_encrypt(xml.decode())
    with pytest.raises(PermissionError):
        handle_callback(session, wechat_settings, params, xml)
    session.rollback()
    assert _state(session) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 '
        b'"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><xml><FromUserName>&lol2;</FromUserName></xml>',
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<xml><FromUserName>&xxe;</FromUserName><MsgType>event</MsgType></xml>",
        b'<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd"><xml></xml>',
    ],
)
def test_xml_bombs_and_external_entities_are_refused(session, wechat_settings, fake, body):
    plain = wechat_settings.replace(wechat_aes_key="")
    with pytest.raises(ValueError, match="DOCTYPE"):
        handle_callback(session, plain, _plain_query(), body)
    # inside an encrypted body too
    params, enc = fake.api.sign_and_encrypt(body.decode())
    with pytest.raises(ValueError, match="DOCTYPE"):
        handle_callback(session, wechat_settings, params, enc)
    session.rollback()
    assert _state(session) == (0, 0, 0, 0)


def test_bad_signature_is_refused(session, wechat_settings, fake):
    params, body = fake.api.sign_and_encrypt(fake.api.subscribe_xml("oSIG0000001"))
    with pytest.raises(PermissionError):
        handle_callback(session, wechat_settings, {**params, "signature": "f" * 40}, body)
    with pytest.raises(PermissionError):
        handle_callback(session, wechat_settings, {**params, "timestamp": "0"}, body)
    session.rollback()
    assert _state(session) == (0, 0, 0, 0)


def test_wechat_retries_of_one_event_are_recorded_once(session, wechat_settings, fake):
    xml = fake.api.subscribe_xml("oRETRY00001", at=int(time.time()))
    for _ in range(3):  # WeChat retries with a new nonce and signature each time
        params, body = fake.api.sign_and_encrypt(xml)
        assert handle_callback(session, wechat_settings, params, body) == "success"
        session.commit()
    kinds = session.scalars(select(Event.kind)).all()
    assert kinds == ["subscribed"]


def test_subscribe_and_unsubscribe_events_update_the_subscriber_at_once(
    session, wechat_settings, fake
):
    params, body = fake.api.sign_and_encrypt(fake.api.subscribe_xml("oFOLLOW0001"))
    handle_callback(session, wechat_settings, params, body)
    session.commit()
    person = session.scalars(select(Subscriber).where(Subscriber.openid == "oFOLLOW0001")).one()
    sub = session.scalars(select(Subscription).where(Subscription.subscriber_id == person.id)).one()
    assert sub.status == "confirmed"

    params, body = fake.api.sign_and_encrypt(
        fake.api.subscribe_xml("oFOLLOW0001", event="unsubscribe", at=int(time.time()) + 1)
    )
    handle_callback(session, wechat_settings, params, body)
    session.commit()
    session.expire_all()
    sub = session.scalars(select(Subscription).where(Subscription.subscriber_id == person.id)).one()
    assert sub.status == "unsubscribed" and sub.unsubscribed_at is not None
    assert session.get(Subscriber, person.id) is not None  # never deleted


def test_forged_follow_events_change_nothing(session, wechat_settings, fake):
    """Signed correctly (a leaked token) but the account's API says otherwise: no change."""
    xml = (
        f"<xml><ToUserName>gh</ToUserName><FromUserName>oNOTAFOLLOWER</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType>"
        "<Event>subscribe</Event></xml>"
    )
    params, body = fake.api.sign_and_encrypt(xml)
    assert handle_callback(session, wechat_settings, params, body) == "success"
    session.commit()
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_unconfirmable_events_ask_wechat_to_retry(session, wechat_settings, fake):
    fake.state.add_fault("user/info/batchget", errcode=-1, times=5)
    params, body = fake.api.sign_and_encrypt(fake.api.subscribe_xml("oLATER00001"))
    with pytest.raises(CallbackUnverified):
        handle_callback(session, wechat_settings, params, body)
    session.rollback()
    assert _state(session) == (0, 0, 0, 0)  # the nonce too: WeChat's retry is accepted later


def test_forged_job_failure_does_not_fail_deliveries(session, wechat_settings, fake, tmp_path):
    issue = drafted_issue(session, wechat_settings, tmp_path, 1, 1)
    channel = WechatChannel(
        wechat_settings, CampaignContext(9, issue.id, 0, (1,), False), policy=RetryPolicy(1)
    )
    results = channel.send([Recipient(i, i, None, "", "zh-CN", f"oF{i}") for i in (1, 2, 3)])
    msg_id = results[0].external_id
    # the send succeeded at WeChat; a forged err(...) with a valid signature must not fail it
    xml = fake.api.mass_finish_xml(int(msg_id), status="send success").replace(
        "send success", "err(10001)"
    )
    params, body = fake.api.sign_and_encrypt(xml)
    assert handle_callback(session, wechat_settings, params, body) == "success"
    session.commit()
    chunk = session.scalars(select(WechatMassChunk).where(WechatMassChunk.msg_id == msg_id)).one()
    assert chunk.status == "sent" and chunk.errmsg is None
