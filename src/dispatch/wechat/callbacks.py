"""WeChat's callbacks: verify, decrypt, parse and record the events dispatch cares about.

Why here and not in the web app: the web route only moves query string and body in and the
reply out; the rules (signature, AES safe mode, which event updates which row) belong to the
WeChat area so they can be tested without HTTP. A bad signature raises PermissionError (the
route answers 403); malformed input raises ValueError (400). Events recorded:
MASSSENDJOBFINISH → the chunk's total / filtered / sent / error counts and the raw event;
TEMPLATESENDJOBFINISH → the recipient's template message row (and a `failed` event for its
delivery when WeChat could not deliver); PUBLISHJOBFINISH → the draft's article URL.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import xmltodict
from sqlalchemy import select
from sqlalchemy.orm import Session
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from dispatch import events
from dispatch.config import Settings
from dispatch.errors import DispatchError, ErrorKind
from dispatch.models.wechat import WechatDraft, WechatMassChunk, WechatTemplateMessage
from dispatch.vocabulary import Channel, EventKind
from dispatch.wechat.mass import record_mass_result

log = logging.getLogger("dispatch.wechat.callbacks")

SUCCESS = "success"  # WeChat expects "success" (or an empty body) and retries otherwise


class CallbackConfigError(DispatchError):
    """The callback cannot be checked because settings are missing."""

    kind = ErrorKind.UNAVAILABLE


def verify(settings: Settings, query: Mapping[str, str]) -> None:
    """Check `signature` over (token, timestamp, nonce); PermissionError if it does not match."""
    if not settings.wechat_token:
        raise CallbackConfigError(
            "setting wechat_token (DISPATCH_WECHAT_TOKEN) is required for WeChat callbacks"
        )
    try:
        check_signature(
            settings.wechat_token,
            query.get("signature", ""),
            query.get("timestamp", ""),
            query.get("nonce", ""),
        )
    except InvalidSignatureException:
        raise PermissionError("WeChat callback refused: bad signature") from None


def decrypt(settings: Settings, query: Mapping[str, str], body: bytes) -> str:
    """The event XML: decrypted in safe mode (encrypt_type=aes), else the body as is."""
    if query.get("encrypt_type", "raw") != "aes":
        return body.decode("utf-8")
    if not settings.wechat_aes_key:
        raise CallbackConfigError(
            "setting wechat_aes_key (DISPATCH_WECHAT_AES_KEY) is required for encrypted callbacks"
        )
    crypto = WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)
    try:
        return crypto.decrypt_message(
            body, query.get("msg_signature", ""), query.get("timestamp", ""), query.get("nonce", "")
        )
    except InvalidSignatureException:
        raise PermissionError("WeChat callback refused: bad msg_signature") from None
    except InvalidAppIdException:
        raise PermissionError("WeChat callback refused: encrypted for another app id") from None
    except Exception as exc:  # noqa: BLE001 - malformed XML / base64 / padding
        raise ValueError(
            f"WeChat callback: cannot decrypt the body ({type(exc).__name__})"
        ) from None


def handle_callback(
    session: Session, settings: Settings, query_params: Mapping[str, str], body: bytes
) -> str:
    """The web route's whole job: GET echostr check, or POST an event → "success".

    Writes through `session`; the caller commits.
    """
    verify(settings, query_params)
    if "echostr" in query_params and not body:
        return str(query_params["echostr"])
    xml = decrypt(settings, query_params, body)
    try:
        raw = xmltodict.parse(xml)["xml"]
    except Exception as exc:  # noqa: BLE001 - expat errors, missing root
        raise ValueError(
            f"WeChat callback: body is not WeChat XML ({type(exc).__name__})"
        ) from None
    message = parse_message(xml)
    kind = str(raw.get("Event") or raw.get("MsgType") or "").upper()
    if kind == "MASSSENDJOBFINISH":
        record_mass_finish(session, message, raw)
    elif kind == "TEMPLATESENDJOBFINISH":
        record_template_finish(session, message, raw)
    elif kind == "PUBLISHJOBFINISH":
        record_publish_finish(session, raw)
    elif kind == "TEXT":  # a follower's message: a binding code from the preference centre?
        from dispatch.subscribers.binding import bind_by_message

        answer = bind_by_message(
            session, str(raw.get("FromUserName") or ""), str(raw.get("Content") or "")
        )
        if answer is not None:
            return _text_reply(settings, query_params, message, answer)
    else:
        log.info("wechat.callback.ignored kind=%s", kind or "?")
    return SUCCESS


def _text_reply(
    settings: Settings, query_params: Mapping[str, str], message: Any, text: str
) -> str:
    """A passive reply to the follower (encrypted when the callback came encrypted)."""
    from wechatpy.replies import TextReply

    xml = TextReply(content=text, message=message).render()
    if query_params.get("encrypt_type") != "aes":
        return xml
    from wechatpy.crypto import WeChatCrypto

    crypto = WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)
    return crypto.encrypt_message(
        xml, str(query_params.get("nonce", "")), str(query_params.get("timestamp", ""))
    )


def record_mass_finish(session: Session, event: Any, raw: dict[str, Any]) -> WechatMassChunk | None:
    msg_id = str(event.id)
    row = session.scalars(select(WechatMassChunk).where(WechatMassChunk.msg_id == msg_id)).first()
    if row is None:
        log.info("wechat.callback.mass_unknown msg_id=%s", msg_id)
        return None
    record_mass_result(
        row,
        status=str(event.status),
        total=event.total_count,
        filtered=event.filter_count,
        sent=event.sent_count,
        errors=event.error_count,
        raw=_plain(raw),
    )
    session.flush()
    log.info(
        "wechat.callback.mass_finished campaign_id=%s batch_no=%s msg_id=%s sent=%s errors=%s",
        row.campaign_id,
        row.batch_no,
        msg_id,
        event.sent_count,
        event.error_count,
    )
    return row


def record_template_finish(
    session: Session, event: Any, raw: dict[str, Any]
) -> WechatTemplateMessage | None:
    msg_id = str(event.id)
    row = session.scalars(
        select(WechatTemplateMessage).where(WechatTemplateMessage.msg_id == msg_id)
    ).first()
    if row is None:
        log.info("wechat.callback.template_unknown msg_id=%s", msg_id)
        return None
    status = str(event.status)
    row.status = status[:32]
    row.event = _plain(raw)
    if status != "success":  # "failed:user block", "failed: system failed"
        events.record(
            session,
            EventKind.FAILED,
            channel=Channel.WECHAT,
            campaign_id=row.campaign_id,
            delivery_id=row.delivery_id,
            subscriber_id=row.subscriber_id,
            data={"source": "TEMPLATESENDJOBFINISH", "status": status, "msg_id": msg_id},
        )
    session.flush()
    log.info(
        "wechat.callback.template_finished campaign_id=%s delivery_id=%s status=%s",
        row.campaign_id,
        row.delivery_id,
        status,
    )
    return row


def record_publish_finish(session: Session, raw: dict[str, Any]) -> WechatDraft | None:
    info = raw.get("PublishEventInfo") or {}
    publish_id = str(info.get("publish_id", ""))
    draft = session.scalars(select(WechatDraft).where(WechatDraft.publish_id == publish_id)).first()
    if draft is None or str(info.get("publish_status")) != "0":
        return draft
    items = (info.get("article_detail") or {}).get("item") or []
    items = items if isinstance(items, list) else [items]
    draft.article_id = info.get("article_id")
    draft.article_url = items[0].get("article_url") if items else None
    session.flush()
    return draft


def _plain(raw: Any) -> Any:
    """xmltodict's output as plain JSON-able dicts and lists."""
    if isinstance(raw, Mapping):
        return {str(k): _plain(v) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_plain(v) for v in raw]
    return raw
