"""One person across channels: tie a WeChat openid to the person who holds an email address.

Two doors, both proving that whoever holds the email link also holds the WeChat account:
- web authorisation (snsapi_base): the preference centre, opened inside WeChat, redirects to
  open.weixin.qq.com/connect/oauth2/authorize; WeChat sends the reader back with a `code`
  that /sns/oauth2/access_token exchanges for their openid, silently. Our `state` is a
  one-time random value stored as a BindCode naming the person.
- a one-time code: the preference centre shows six digits; the follower sends them to the
  Official Account as a text message; the callback (dispatch.wechat.callbacks) hands the
  sender's openid and the text to `bind_by_message`.

A WeChat follower already stored on their own row (follower sync, the subscribe event) is
merged into the person: their subscriptions and history move over, the extra row goes.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import quote

import httpx
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.models import utcnow
from dispatch.models.event import Event
from dispatch.models.subscriber import BindCode, Subscriber, Subscription

CODE_TTL = timedelta(minutes=30)
OAUTH_TTL = timedelta(minutes=10)
RANK = {"unsubscribed": 0, "unconfirmed": 1, "confirmed": 2}

MESSAGES = Catalog(
    {
        "bound_reply": (
            "绑定成功：今后简报将按您在订阅设置中选择的方式发送。",
            "Linked: the bulletin now reaches you the way you chose in your preferences.",
        ),
        "bad_code": (
            "验证码无效或已过期，请在订阅设置页重新获取。",
            "That code is invalid or expired; get a new one in your preferences.",
        ),
        "other_person": (
            "此微信已绑定到另一个邮箱地址。",
            "This WeChat account is already linked to another email address.",
        ),
        "oauth_failed": ("微信授权失败（{detail}）", "WeChat authorisation failed ({detail})"),
        "not_configured": ("未配置微信公众号", "no WeChat Official Account is configured"),
    }
)


class BindError(ValueError):
    def __init__(self, key: str, **kwargs: object):
        self.key = key
        super().__init__(MESSAGES.both(key, **kwargs))


def _new(session: Session, subscriber: Subscriber, kind: str, code: str, ttl: timedelta) -> str:
    session.execute(
        delete(BindCode).where(BindCode.subscriber_id == subscriber.id, BindCode.kind == kind)
    )
    session.add(
        BindCode(code=code, kind=kind, subscriber_id=subscriber.id, expires_at=utcnow() + ttl)
    )
    session.flush()
    return code


def issue_message_code(session: Session, subscriber: Subscriber) -> str:
    """Six digits, unique among live codes, valid for 30 minutes."""
    session.execute(delete(BindCode).where(BindCode.expires_at < utcnow()))
    for _ in range(20):
        code = f"{secrets.randbelow(10**6):06d}"
        if session.get(BindCode, code) is None:
            return _new(session, subscriber, "message", code, CODE_TTL)
    raise RuntimeError("no free binding code")  # a million live codes: not a real situation


def oauth_url(session: Session, settings: Settings, subscriber: Subscriber) -> str:
    """Where the preference centre sends a reader inside WeChat (snsapi_base: no prompt)."""
    if not settings.wechat_app_id:
        raise BindError("not_configured")
    state = _new(session, subscriber, "oauth", secrets.token_hex(16), OAUTH_TTL)
    redirect = f"{settings.public_base_url.rstrip('/')}/p/wechat/callback"
    return (
        f"{settings.wechat_oauth_url}?appid={quote(settings.wechat_app_id)}"
        f"&redirect_uri={quote(redirect, safe='')}&response_type=code&scope=snsapi_base"
        f"&state={state}#wechat_redirect"
    )


def _take(session: Session, code: str, kind: str) -> BindCode | None:
    row = session.get(BindCode, code)
    if row is None or row.kind != kind or row.expires_at < utcnow():
        return None
    session.delete(row)  # one use
    return row


def sns_token_url(settings: Settings) -> str:
    base = settings.wechat_api_base_url or "https://api.weixin.qq.com/cgi-bin/"
    return base.rstrip("/").removesuffix("/cgi-bin") + "/sns/oauth2/access_token"


def exchange_code(settings: Settings, code: str) -> str:
    """The web authorisation `code` → the reader's openid (one call, code usable once)."""
    if not settings.wechat_app_id:
        raise BindError("not_configured")
    try:
        answer = httpx.get(
            sns_token_url(settings),
            params={
                "appid": settings.wechat_app_id,
                "secret": settings.wechat_app_secret,
                "code": code,
                "grant_type": "authorization_code",
            },
            timeout=10,
        ).json()
    except (httpx.HTTPError, ValueError) as exc:
        raise BindError("oauth_failed", detail=type(exc).__name__) from None
    openid = answer.get("openid") if isinstance(answer, dict) else None
    if not openid:
        detail = (
            f"{answer.get('errcode')} {answer.get('errmsg')}" if isinstance(answer, dict) else "?"
        )
        raise BindError("oauth_failed", detail=detail)
    return str(openid)


def bind_by_oauth(session: Session, settings: Settings, state: str, code: str) -> Subscriber:
    row = _take(session, state, "oauth")
    if row is None:
        raise BindError("bad_code")
    openid = exchange_code(settings, code)
    return bind(session, row.subscriber_id, openid, source="wechat-oauth")


def bind_by_message(session: Session, openid: str, text: str) -> str | None:
    """A follower's text message: bind when it is a live code; returns the reply for WeChat,
    or None when the text is no code at all (other handlers may answer it)."""
    digits = "".join(c for c in text.strip() if c.isdigit())
    if len(digits) != 6 or len(text.strip()) > 20:
        return None
    row = _take(session, digits, "message")
    if row is None:
        return MESSAGES.get("bad_code")
    subscriber = bind(session, row.subscriber_id, openid, source="wechat-code")
    return MESSAGES.get("bound_reply", subscriber.locale)


def bind(session: Session, subscriber_id: int, openid: str, *, source: str) -> Subscriber:
    """Give the person this openid; a WeChat-only row holding it is merged into them."""
    person = session.get(Subscriber, subscriber_id)
    if person is None:
        raise BindError("bad_code")
    other = session.scalar(select(Subscriber).where(Subscriber.openid == openid))
    if other is not None and other.id != person.id:
        if other.email:
            raise BindError("other_person")
        _merge(session, keep=person, gone=other)
    previous = person.openid
    person.openid = openid
    if person.preferred_channel == "email" and previous is None:
        person.preferred_channel = "both"  # they asked for WeChat by binding it
    events.record(
        session,
        "bound",
        channel="wechat",
        subscriber_id=person.id,
        data={
            "source": source,
            "merged": other.id if other is not None and other.id != person.id else None,
        },
    )
    session.flush()
    return person


def _merge(session: Session, *, keep: Subscriber, gone: Subscriber) -> None:
    """Move `gone`'s subscriptions (the further along status wins) and history to `keep`."""
    for sub in session.scalars(select(Subscription).where(Subscription.subscriber_id == gone.id)):
        mine = session.get(Subscription, (keep.id, sub.list_id))
        if mine is None:
            session.add(
                Subscription(
                    subscriber_id=keep.id,
                    list_id=sub.list_id,
                    status=sub.status,
                    created_at=sub.created_at,
                    confirmed_at=sub.confirmed_at,
                    unsubscribed_at=sub.unsubscribed_at,
                    source=sub.source or "wechat",
                )
            )
        elif RANK.get(sub.status, 0) > RANK.get(mine.status, 0) and mine.status != "unsubscribed":
            mine.status, mine.confirmed_at = sub.status, sub.confirmed_at
    session.execute(
        update(Event)
        .where(Event.subscriber_id == gone.id)
        .values(subscriber_id=keep.id)
        .execution_options(synchronize_session=False)
    )
    session.flush()
    session.execute(delete(Subscription).where(Subscription.subscriber_id == gone.id))
    session.execute(delete(BindCode).where(BindCode.subscriber_id == gone.id))
    session.delete(gone)
    session.flush()
