"""Double opt-in: the confirmation email and what its link does.

The link carries a signed, expiring token (dispatch.tokens) naming subscriber and list, so the
web side needs no stored state to confirm; an old link for an unsubscribed person does nothing.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.message import EmailMessage
from html import escape

from sqlalchemy.orm import Session

from dispatch.config import Settings, get_settings
from dispatch.i18n import Catalog
from dispatch.models.subscriber import MailingList, Subscriber
from dispatch.subscribers import service
from dispatch.tokens import TokenError, confirmation_url, verify_confirmation_token
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
        f'<!doctype html><html lang="{html_lang}"><body style="font-family:sans-serif;line-height:1.6">'
        f"<p>{escape(greeting)}</p><p>{escape(body)}</p>"
        f'<p><a href="{escape(url)}" style="display:inline-block;padding:8px 16px;background:#1a5fb4;'
        f'color:#fff;text-decoration:none;border-radius:4px">{escape(MESSAGES.get("button", locale))}</a></p>'
        f'<p style="font-size:12px;color:#666">{escape(url)}</p>'
        f'<p style="font-size:12px;color:#666">{escape(ignore)}</p></body></html>',
        subtype="html",
    )
    return message


def send_confirmation(
    settings: Settings, subscriber: Subscriber, mailing_list: MailingList
) -> str | None:
    """Send the confirmation email; WeChat-only followers (no email) get none. Returns Message-ID."""
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
