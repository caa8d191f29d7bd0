"""Double opt-in: the confirmation email and what its link does.

The link carries a signed, expiring token (dispatch.tokens) naming the subscriber and the
list(s), so the web side needs no stored state to confirm; an old link for an unsubscribed
person does nothing. The link only opens a page: the page's button (a POST) confirms, because
corporate mail scanners fetch every link of an incoming message with GET.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formataddr, make_msgid
from html import escape
from typing import Any, Protocol

from sqlalchemy.orm import Session

from dispatch import events
from dispatch.config import Settings, get_settings
from dispatch.i18n import Catalog
from dispatch.models import Event, utcnow
from dispatch.models.subscriber import MailingList, Subscriber, Subscription
from dispatch.subscribers import service
from dispatch.tokens import (
    TokenError,
    confirmation_url,
    make_optin_token,
    verify_confirmation_token,
    verify_optin_token,
)
from dispatch.transactional import send_transactional

MESSAGES = Catalog(
    {
        "subject": ("请确认订阅：{list_name}", "Please confirm your subscription: {list_name}"),
        "greeting": ("{name}，您好：", "Hello {name},"),
        "greeting_anon": ("您好：", "Hello,"),
        "body": (
            "我们收到了以此邮箱订阅“{list_name}”的请求。请点击下面的链接确认（{days} 天内有效）：",
            "We received a request to subscribe this address to “{list_name}”. "
            "Please confirm with the link below (valid for {days} days):",
        ),
        "button": ("确认订阅", "Confirm subscription"),
        "ignore": (
            "如果这不是您本人的操作，请忽略本邮件，您不会收到任何简报。",
            "If you did not ask for this, ignore this email and you will receive nothing.",
        ),
    }
)


def build_confirmation_email(
    settings: Settings, subscriber: Subscriber, mailing_list: MailingList
) -> EmailMessage:
    """The confirmation message in the subscriber's locale (text and HTML parts)."""
    if not subscriber.email:
        raise service.SubscriberError("no_address")
    locale = subscriber.locale
    url = confirmation_url(settings, subscriber.id, mailing_list.id)
    greeting = (
        MESSAGES.get("greeting", locale, name=subscriber.name)
        if subscriber.name
        else MESSAGES.get("greeting_anon", locale)
    )
    body = MESSAGES.get("body", locale, list_name=mailing_list.name, days=7)
    ignore = MESSAGES.get("ignore", locale)
    message = EmailMessage()
    message["Subject"] = MESSAGES.get("subject", locale, list_name=mailing_list.name)
    message["From"] = Address(display_name=settings.from_name, addr_spec=settings.from_address)
    message["To"] = Address(display_name=subscriber.name, addr_spec=subscriber.email)
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"{greeting}\n\n{body}\n\n{url}\n\n{ignore}\n")
    html_lang = "zh-CN" if locale != "en" else "en"
    message.add_alternative(
        f'<!doctype html><html lang="{html_lang}"><body style="font-family:sans-serif;line-height:'
        f'1.6">'
        f"<p>{escape(greeting)}</p><p>{escape(body)}</p>"
        f'<p><a href="{escape(url)}" style="display:inline-block;padding:8px 16px;background:'
        f"#1a5fb4;"
        f"color:#fff;text-decoration:none;border-radius:"
        f'4px">{escape(MESSAGES.get("button", locale))}</a></p>'
        f'<p style="font-size:12px;color:#666">{escape(url)}</p>'
        f'<p style="font-size:12px;color:#666">{escape(ignore)}</p></body></html>',
        subtype="html",
    )
    return message


def send_confirmation(
    settings: Settings, subscriber: Subscriber, mailing_list: MailingList
) -> str | None:
    """Send the confirmation email; WeChat-only followers (no email) get none. Returns
    Message-ID."""
    if not subscriber.email:
        return None
    return send_transactional(
        settings,
        build_confirmation_email(settings, subscriber, mailing_list),
        subscriber_id=subscriber.id,
    )


def confirm_subscription(
    session: Session, token: str, settings: Settings | None = None
) -> tuple[int, int, bool]:
    """Process a confirmation link: (subscriber id, list id, changed). TokenError if the token is
    forged, altered, expired, signed with another key or names nobody; nothing changes then."""
    claim = verify_confirmation_token(settings or get_settings(), token)
    try:
        changed = service.confirm(session, claim.subscriber_id, claim.list_id, source="link")
    except service.SubscriberError:
        raise TokenError("unknown") from None
    return claim.subscriber_id, claim.list_id, changed


def build_optin_email(
    settings: Settings, subscriber: Subscriber, lists: Sequence[ListRef]
) -> Message:
    """One confirmation for every list of one request (the public form, an import)."""
    if not subscriber.email or not lists:
        raise service.SubscriberError("no_address")
    token = make_optin_token(settings, subscriber.id, [m.id for m in lists])
    url = f"{settings.public_base_url.rstrip('/')}/confirm/{token}"
    names = (
        "、".join(m.name for m in lists)
        if subscriber.locale != "en"
        else ", ".join(m.name for m in lists)
    )
    return _compose(settings, subscriber, names, url)


def _compose(settings: Settings, subscriber: Subscriber, list_name: str, url: str) -> Message:
    """Why the classic (compat32) MIME classes: the modern EmailMessage refolds every header
    through its parser, about 20x the cost; a web worker building one confirmation per form
    post cannot afford that. Headers are RFC 2047-encoded here, so no value is folded later."""
    locale = subscriber.locale
    greeting = (
        MESSAGES.get("greeting", locale, name=subscriber.name)
        if subscriber.name
        else MESSAGES.get("greeting_anon", locale)
    )
    body = MESSAGES.get("body", locale, list_name=list_name, days=7)
    ignore = MESSAGES.get("ignore", locale)
    html_lang = "zh-CN" if locale != "en" else "en"
    html_part = (
        f'<!doctype html><html lang="{html_lang}"><body style="font-family:sans-serif;line-height:'
        f'1.6">'
        f"<p>{escape(greeting)}</p><p>{escape(body)}</p>"
        f'<p><a href="{escape(url)}" style="display:inline-block;padding:8px 16px;background:'
        f"#1a5fb4;"
        f"color:#fff;text-decoration:none;border-radius:"
        f'4px">{escape(MESSAGES.get("button", locale))}</a></p>'
        f'<p style="font-size:12px;color:#666">{escape(url)}</p>'
        f'<p style="font-size:12px;color:#666">{escape(ignore)}</p></body></html>'
    )
    # a boundary of our own: the generator would otherwise draw one and compile a regular
    # expression per message to prove it absent; "_" never occurs in base64 parts
    message = MIMEMultipart("alternative", boundary=f"==_dispatch_{secrets.token_hex(12)}_==")
    message["Subject"] = _subject(locale, list_name)  # type: ignore[assignment]
    message["From"] = _from_header(settings.from_name, settings.from_address)
    message["To"] = formataddr((subscriber.name, subscriber.email or ""), "utf-8")
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Auto-Submitted"] = "auto-generated"
    message.attach(MIMEText(f"{greeting}\n\n{body}\n\n{url}\n\n{ignore}\n", "plain", "utf-8"))
    message.attach(MIMEText(html_part, "html", "utf-8"))
    return message


class FoldedHeader:
    """A header value RFC 2047-encoded and folded once, then reused by every message with the
    same text: the standard library's Header measures each split it tries byte by byte,
    which for a Chinese subject is most of the cost of writing the email."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._encoded: dict[tuple[object, str], str] = {}

    def encode(self, splitchars: str = ";, \t", maxlinelen: int | None = None, linesep="\n"):
        key = (maxlinelen, linesep)
        found = self._encoded.get(key)
        if found is None:
            header = Header(self.text, "utf-8")
            found = self._encoded[key] = header.encode(splitchars, maxlinelen, linesep)
        return found

    def __str__(self) -> str:
        return self.text


@functools.lru_cache(maxsize=512)
def _subject(locale: str, list_name: str) -> FoldedHeader:
    return FoldedHeader(MESSAGES.get("subject", locale, list_name=list_name))


@functools.lru_cache(maxsize=16)
def _from_header(name: str, address: str) -> str:
    return formataddr((name, address), "utf-8")


class ListRef(Protocol):
    """What a confirmation needs of a list: a MailingList, or the form's light row."""

    @property
    def id(self) -> int: ...

    @property
    def name(self) -> str: ...


def compose_optin(
    settings: Settings, subscriber: Subscriber, lists: Sequence[ListRef]
) -> tuple[Message, dict[str, Any]]:
    """The confirmation for these lists, its Message-ID fixed, and its `optin_sent` event row
    (the caller writes the row in its transaction and sends the message after committing)."""
    message = build_optin_email(settings, subscriber, lists)
    message["Message-ID"] = make_msgid(domain=settings.from_address.rpartition("@")[2] or "local")
    row = events.event_row(
        "optin_sent",
        channel="email",
        subscriber_id=subscriber.id,
        data={"lists": [m.id for m in lists], "message_id": message["Message-ID"]},
    )
    return message, row


def prepare_optin(
    session: Session, settings: Settings, subscriber: Subscriber, lists: Sequence[ListRef]
) -> Message:
    """compose_optin with its `optin_sent` event added to the caller's session."""
    message, row = compose_optin(settings, subscriber, lists)
    session.add(Event(**row))
    return message


def send_optin(session: Session, settings: Settings, subscriber_id: int, list_ids) -> str | None:
    """Send the confirmation for these lists now (imports, the CLI); records `optin_sent`."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or not subscriber.email:
        return None
    lists = [m for m in (session.get(MailingList, i) for i in list_ids) if m is not None]
    if not lists:
        return None
    message = prepare_optin(session, settings, subscriber, lists)
    return send_transactional(settings, message, subscriber_id=subscriber.id)


def peek(session: Session, settings: Settings, token: str) -> tuple[Subscriber, list[MailingList]]:
    """Who and which lists a confirmation link names (for the page; changes nothing)."""
    subscriber_id, list_ids = _claim(settings, token)
    subscriber = session.get(Subscriber, subscriber_id) if 0 < subscriber_id < 2**31 else None
    lists = [session.get(MailingList, i) for i in list_ids if 0 < i < 2**31]
    if subscriber is None or not all(lists):
        raise TokenError("unknown")
    return subscriber, [m for m in lists if m is not None]


def _claim(settings: Settings, token: str) -> tuple[int, tuple[int, ...]]:
    try:
        claim = verify_optin_token(settings, token)
        return claim.subscriber_id, claim.list_ids
    except TokenError as first:
        try:
            legacy = verify_confirmation_token(settings, token)
        except TokenError:
            raise first from None
        return legacy.subscriber_id, (legacy.list_id,)


def confirm_token(session: Session, settings: Settings, token: str, *, ip: str = "") -> int:
    """The button's POST: confirm every list the link names that still awaits it. Returns how
    many subscriptions changed (0 when pressed twice). A person who had left everything and
    asked again becomes active; a list they left after this link was made stays left."""
    subscriber, lists = peek(session, settings, token)
    now = utcnow()
    changed = 0
    for mailing_list in lists:
        subscription = session.get(Subscription, (subscriber.id, mailing_list.id))
        if subscription is None or subscription.status != "unconfirmed":
            continue
        subscription.status = "confirmed"
        subscription.confirmed_at = now
        subscription.unsubscribed_at = None
        changed += 1
        events.record(
            session,
            "confirmed",
            channel="web",
            subscriber_id=subscriber.id,
            list_id=mailing_list.id,
            data={"source": "confirm-button", "ip": ip},
        )
    if changed:
        subscriber.confirmed_at = subscriber.confirmed_at or now
        if subscriber.status == "unsubscribed":
            subscriber.status = "active"
    session.flush()
    return changed


CHANGE_MESSAGES = Catalog(
    {
        "subject": ("请确认新的邮箱地址", "Please confirm your new email address"),
        "body": (
            "有人请求把简报的收件地址改为本邮箱。请打开下面的链接并按下确认按钮（48 小时内有效）：",
            "Someone asked to send the bulletin to this address instead. Open the link below "
            "and press the button to confirm (valid for 48 hours):",
        ),
        "ignore": (
            "如果这不是您本人的操作，请忽略本邮件，地址不会更改。",
            "If you did not ask for this, ignore this email and nothing changes.",
        ),
    }
)


def send_email_change(
    settings: Settings, subscriber: Subscriber, new_email: str, token: str
) -> str:
    """The confirmation of a new address goes to the new address (proof it is theirs)."""
    locale = subscriber.locale
    url = f"{settings.public_base_url.rstrip('/')}/p/email/{token}"
    message = EmailMessage()
    message["Subject"] = CHANGE_MESSAGES.get("subject", locale)
    message["From"] = Address(display_name=settings.from_name, addr_spec=settings.from_address)
    message["To"] = Address(display_name=subscriber.name, addr_spec=new_email)
    message["Auto-Submitted"] = "auto-generated"
    body = CHANGE_MESSAGES.get("body", locale)
    ignore = CHANGE_MESSAGES.get("ignore", locale)
    message.set_content(f"{body}\n\n{url}\n\n{ignore}\n")
    return send_transactional(settings, message)
