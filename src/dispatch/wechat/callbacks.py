"""WeChat's callbacks: verify, decrypt, parse and record the events dispatch cares about.

Why so strict: in plaintext mode WeChat signs only (token, timestamp, nonce), not the body, so
anyone who has seen one callback URL could replay it or post any body under it. Here:
- when an AES key is configured only safe mode is accepted (msg_signature covers the
  encrypted body); the mode comes from the settings, never from the caller's query string;
- the timestamp must be within settings.wechat_callback_window seconds of now, and a
  (timestamp, nonce) pair is accepted once (remembered in wechat_callback_seen for the
  window), so a captured callback cannot be replayed;
- WeChat's own retries of one event (same FromUserName + CreateTime + Event, or MsgID) are
  recorded once;
- a DOCTYPE or ENTITY declaration (XML bomb, external entity) is refused before any parser
  sees it; WeChat never sends one;
- an event that would change who is sent what (a subscribe or unsubscribe, a failed mass send,
  a published article's URL) is checked against the account's own API first, and the API's
  answer, not the callback's, is what gets stored.
A bad signature, an old timestamp or a replay raises PermissionError (the route answers 403);
malformed input raises ValueError (400). Nothing is written before every check passed; the
caller's transaction holds the nonce and the event's effect together.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import xmltodict
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from dispatch import events
from dispatch.config import Settings
from dispatch.errors import DispatchError, ErrorKind
from dispatch.models import Delivery, utcnow
from dispatch.models.wechat import (
    WechatCallbackSeen,
    WechatDraft,
    WechatMassChunk,
    WechatTemplateMessage,
)
from dispatch.vocabulary import Channel, DeliveryStatus, EventKind
from dispatch.wechat.mass import record_mass_result

log = logging.getLogger("dispatch.wechat.callbacks")

SUCCESS = "success"  # WeChat expects "success" (or an empty body) and retries otherwise
MAX_BODY = 64 * 1024  # WeChat's event XML is a few KB
_DECLARATION = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)
MASS_OK = "send success"


class CallbackConfigError(DispatchError):
    """The callback cannot be checked because settings are missing."""

    kind = ErrorKind.UNAVAILABLE


class CallbackUnverified(RuntimeError):
    """The account's API could not confirm the event now; WeChat should retry (answer 503)."""


def verify(settings: Settings, query: Mapping[str, str], now: float | None = None) -> None:
    """Check `signature` over (token, timestamp, nonce) and the timestamp window."""
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
    check_timestamp(settings, query.get("timestamp", ""), now)


def check_timestamp(settings: Settings, timestamp: str, now: float | None = None) -> None:
    try:
        stamp = int(timestamp)
    except ValueError:
        raise PermissionError("WeChat callback refused: no valid timestamp") from None
    now = time.time() if now is None else now
    if abs(now - stamp) > settings.wechat_callback_window:
        raise PermissionError(
            f"WeChat callback refused: timestamp {stamp} is outside the "
            f"{settings.wechat_callback_window} s window (old or replayed)"
        )


def safe_mode(settings: Settings) -> bool:
    """Safe (AES) mode is decided by the settings: an AES key means only safe mode."""
    return bool(settings.wechat_aes_key)


def refuse_declarations(data: bytes) -> None:
    if _DECLARATION.search(data):
        raise ValueError("WeChat callback: DOCTYPE/ENTITY declarations are refused")


def decrypt(settings: Settings, query: Mapping[str, str], body: bytes) -> str:
    """The event XML: decrypted when an AES key is configured (plaintext then refused)."""
    refuse_declarations(body)
    if not safe_mode(settings):
        if query.get("encrypt_type", "raw") not in ("raw", ""):
            raise CallbackConfigError(
                "an encrypted callback arrived but setting wechat_aes_key "
                "(DISPATCH_WECHAT_AES_KEY) is not configured"
            )
        return body.decode("utf-8")
    if (
        query.get("encrypt_type") != "aes"
        or not query.get("msg_signature")
        or b"<Encrypt>" not in body
    ):
        raise PermissionError("WeChat callback refused: plaintext in safe mode (AES required)")
    crypto = WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)
    try:
        xml = crypto.decrypt_message(
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
    refuse_declarations(xml.encode("utf-8") if isinstance(xml, str) else xml)
    return xml


def remember(session: Session, key: str, settings: Settings) -> bool:
    """Record `key` once; False if it was seen within the window (a replay or a retry)."""
    digest = key if len(key) <= 160 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    now = utcnow()
    seen = session.scalar(select(WechatCallbackSeen.id).where(WechatCallbackSeen.key == digest))
    if seen is not None:
        return False
    # two copies racing: the unique key makes the second transaction fail (IntegrityError;
    # the route answers 403 and nothing of it is stored)
    session.add(WechatCallbackSeen(key=digest, created_at=now))
    session.flush()
    horizon = now - timedelta(seconds=2 * settings.wechat_callback_window + 60)
    session.execute(delete(WechatCallbackSeen).where(WechatCallbackSeen.created_at < horizon))
    return True


ClientFactory = Callable[[], Any]


def _default_client(settings: Settings) -> ClientFactory:
    def make() -> Any:
        from dispatch.wechat.client import WechatClient

        return WechatClient(settings)

    return make


def handle_callback(
    session: Session,
    settings: Settings,
    query_params: Mapping[str, str],
    body: bytes,
    *,
    client: ClientFactory | None = None,
    now: float | None = None,
) -> str:
    """The web route's whole job: GET echostr check, or POST an event → "success".

    Writes through `session`; the caller commits. `client` builds the API client used to
    confirm events (the default talks to settings' WeChat API).
    """
    if len(body) > MAX_BODY:
        raise ValueError(f"WeChat callback: body over {MAX_BODY} bytes")
    verify(settings, query_params, now)
    if "echostr" in query_params and not body:
        return str(query_params["echostr"])
    xml = decrypt(settings, query_params, body)
    nonce_key = f"nonce:{query_params.get('timestamp', '')}:{query_params.get('nonce', '')}"
    if not remember(session, nonce_key, settings):
        raise PermissionError("WeChat callback refused: nonce already used (replay)")
    raw = _xml_fields(xml)
    message = parse_message(xml)
    kind = str(raw.get("Event") or raw.get("MsgType") or "").upper()
    event_key = (
        f"msg:{raw['MsgID']}:{kind}"
        if raw.get("MsgID")
        else f"event:{raw.get('FromUserName', '')}:{raw.get('CreateTime', '')}:{kind}"
    )
    if not remember(session, event_key, settings):
        log.info("wechat.callback.duplicate kind=%s", kind or "?")
        return SUCCESS  # WeChat's retry of an event already recorded
    make_client = client or _default_client(settings)
    if kind == "MASSSENDJOBFINISH":
        record_mass_finish(session, message, raw, make_client)
    elif kind == "TEMPLATESENDJOBFINISH":
        record_template_finish(session, message, raw)
    elif kind == "PUBLISHJOBFINISH":
        record_publish_finish(session, raw, make_client)
    elif kind in ("SUBSCRIBE", "UNSUBSCRIBE"):
        record_follow(session, settings, raw, kind == "SUBSCRIBE", make_client)
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


def _xml_fields(xml: str) -> dict[str, Any]:
    """The fields of a WeChat XML message (entities refused); ValueError when it is not one."""
    try:
        raw = xmltodict.parse(xml, disable_entities=True)["xml"]
    except Exception as exc:  # noqa: BLE001 - expat errors, missing root
        raise ValueError(
            f"WeChat callback: body is not WeChat XML ({type(exc).__name__})"
        ) from None
    if not isinstance(raw, dict):
        raise ValueError("WeChat callback: body is not WeChat XML")
    return raw


def _text_reply(
    settings: Settings, query_params: Mapping[str, str], message: Any, text: str
) -> str:
    """A passive reply to the follower (encrypted in safe mode)."""
    from wechatpy.replies import TextReply

    xml = TextReply(content=text, message=message).render()
    if not safe_mode(settings):
        return xml
    crypto = WeChatCrypto(settings.wechat_token, settings.wechat_aes_key, settings.wechat_app_id)
    return crypto.encrypt_message(
        xml, str(query_params.get("nonce", "")), str(query_params.get("timestamp", ""))
    )


def _confirm(fn: Callable[[], Any], what: str) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - any API failure: let WeChat retry later
        log.warning("wechat.callback.unconfirmed what=%s error=%s", what, type(exc).__name__)
        raise CallbackUnverified(f"WeChat callback: cannot confirm {what} with the API") from None


def record_follow(
    session: Session,
    settings: Settings,
    raw: dict[str, Any],
    following: bool,
    make_client: ClientFactory,
) -> int | None:
    """subscribe / unsubscribe: confirmed with user/info/batchget, then applied at once."""
    from dispatch.wechat.followers import apply_follow_change

    openid = str(raw.get("FromUserName") or "")
    if not openid or len(openid) > 128:
        raise ValueError("WeChat callback: subscribe event without a valid FromUserName")
    api = make_client()
    infos = _confirm(lambda: api.user_batchget([openid]), "the follower")
    info = next((i for i in infos if i.get("openid") == openid), {"subscribe": 0})
    if bool(int(info.get("subscribe", 0))) != following:
        log.warning(
            "wechat.callback.follow_mismatch event=%s api_subscribe=%s",
            "subscribe" if following else "unsubscribe",
            info.get("subscribe"),
        )
        return None  # the API disagrees: the callback changes nothing
    person = apply_follow_change(session, settings, api.account, openid, following, info)
    session.flush()
    log.info("wechat.callback.follow following=%s subscriber_id=%s", following, person)
    return person


def record_mass_finish(
    session: Session, event: Any, raw: dict[str, Any], make_client: ClientFactory | None = None
) -> WechatMassChunk | None:
    """Counts onto the chunk; a Status other than success (send fail, err(NNNNN)) fails the
    chunk's deliveries with that status, once mass/get confirms the send did not succeed."""
    msg_id = str(event.id)
    row = session.scalars(select(WechatMassChunk).where(WechatMassChunk.msg_id == msg_id)).first()
    if row is None:
        log.info("wechat.callback.mass_unknown msg_id=%s", msg_id)
        return None
    status = str(event.status or "")
    if status != MASS_OK and make_client is not None:
        api = make_client()
        answer = _confirm(lambda: api.mass_get(msg_id), "the mass send")
        if str(answer.get("msg_status", "")) == "SEND_SUCCESS":
            log.warning("wechat.callback.mass_mismatch msg_id=%s status=%r", msg_id, status[:40])
            return row  # the API says it went out: the callback changes nothing
    record_mass_result(
        row,
        status=status,
        total=event.total_count,
        filtered=event.filter_count,
        sent=event.sent_count,
        errors=event.error_count,
        raw=_plain(raw),
    )
    if status != MASS_OK:
        fail_chunk_deliveries(session, row, status)
    session.flush()
    log.info(
        "wechat.callback.mass_finished campaign_id=%s batch_no=%s msg_id=%s status=%s sent=%s "
        "errors=%s",
        row.campaign_id,
        row.batch_no,
        msg_id,
        status[:40],
        event.sent_count,
        event.error_count,
    )
    return row


def fail_chunk_deliveries(session: Session, chunk: WechatMassChunk, status: str) -> int:
    """The deliveries this chunk reported sent did not reach anyone: failed, status kept."""
    text = f"WeChat MASSSENDJOBFINISH: {status}"[:2000]
    d = Delivery.__table__.c
    ids = session.scalars(
        select(Delivery.id).where(
            d.campaign_id == chunk.campaign_id,
            d.external_id == chunk.msg_id,
            d.status == DeliveryStatus.SENT,
        )
    ).all()
    if not ids:
        return 0
    session.execute(
        update(Delivery.__table__)
        .where(d.id.in_(ids))
        .values(status=DeliveryStatus.FAILED, last_text=text, updated_at=utcnow())
    )
    events.record(
        session,
        EventKind.FAILED,
        channel=Channel.WECHAT,
        campaign_id=chunk.campaign_id,
        data={
            "source": "MASSSENDJOBFINISH",
            "status": status,
            "msg_id": chunk.msg_id,
            "deliveries": len(ids),
        },
    )
    chunk.errmsg = status[:2000]
    return len(ids)


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
    return row


def record_publish_finish(
    session: Session, raw: dict[str, Any], make_client: ClientFactory | None = None
) -> WechatDraft | None:
    """A free-publish finished: the article id and URL come from freepublish/get (the
    account's own API), never from the callback body."""
    info = raw.get("PublishEventInfo") or {}
    publish_id = str(info.get("publish_id", ""))
    draft = session.scalars(select(WechatDraft).where(WechatDraft.publish_id == publish_id)).first()
    if draft is None or make_client is None:
        return draft
    api = make_client()
    answer = _confirm(lambda: api.freepublish_get(publish_id), "the publish job")
    if int(answer.get("publish_status", -1)) != 0:
        return draft
    items = (answer.get("article_detail") or {}).get("item") or []
    items = items if isinstance(items, list) else [items]
    draft.article_id = answer.get("article_id")
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
