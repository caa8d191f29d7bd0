"""The public subscription form's rules: who may ask, for which lists, and what is sent.

Why one function for the whole post: the answer a visitor sees must be the same whether the
address was new, already subscribed, suppressed or over its confirmation cap (otherwise the
form tells anyone who subscribes), and every branch has to pass the same abuse checks first:
a per-IP post limit, a honeypot field, proof-of-work (or the tightly capped no-JavaScript
path), clean fields, a domain that accepts mail. Only then does the database change, and a
confirmation email is *granted* by per-address and per-IP caps, never simply sent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message

from sqlalchemy import bindparam, exists, insert, select
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.canonical import canonical_email
from dispatch.config import Settings
from dispatch.delivery.ratelimit import Limit, RateLimiter
from dispatch.i18n import Catalog, normalise_locale
from dispatch.models import Event, utcnow
from dispatch.models.subscriber import MailingList, Subscriber, Subscription, Suppression
from dispatch.subscribers import maildomain, optin, proof, service
from dispatch.subscribers.addresses import InvalidEmail, check_email
from dispatch.vocabulary import SubscriberStatus, SubscriptionStatus

CONFIRMED, UNCONFIRMED = SubscriptionStatus.CONFIRMED, SubscriptionStatus.UNCONFIRMED

NAME_MAX = 200

MESSAGES = Catalog(
    {
        "email_required": ("请填写邮箱地址。", "Please enter your email address."),
        "email_invalid": ("邮箱地址无效：{why}", "This email address is not valid: {why}"),
        "email_utf8": (
            "暂不支持 @ 前含非 ASCII 字符的邮箱地址（如中文用户名），请使用其他地址。",
            "Addresses with non-ASCII characters before the @ cannot be used yet; "
            "please use another address.",
        ),
        "email_no_mx": (
            "域名 {domain} 没有邮件服务器（无 MX 记录），无法投递到此地址。",
            "The domain {domain} has no mail server (no MX record); mail to it cannot arrive.",
        ),
        "name_invalid": (
            "姓名不能包含换行或控制字符，且不超过 200 字。",
            "The name may not contain line breaks or control characters, nor exceed 200 "
            "characters.",
        ),
        "lists_required": ("请至少选择一个订阅列表。", "Please choose at least one list."),
        "lists_unknown": ("没有可订阅的列表 {slug}。", "There is no public list {slug}."),
        "locale_invalid": ("不支持的语言。", "Unknown language."),
        "pow_invalid": (
            "表单的安全校验未通过，请刷新页面后重试。",
            "The form's security check failed; reload the page and try again.",
        ),
        "pow_expired": (
            "表单已过期，请刷新页面后重试。",
            "The form expired; reload the page and try again.",
        ),
        "pow_reused": (
            "此表单已提交过，请刷新页面后重试。",
            "This form was already sent; reload the page to send it again.",
        ),
        "too_many": (
            "提交过于频繁，请稍后再试。",
            "Too many requests from your network; please try again later.",
        ),
        "nojs_busy": (
            "请启用 JavaScript 后重试（未启用时每小时可提交的次数有限）。",
            "Please enable JavaScript and try again (without it only a few sign-ups an hour "
            "are accepted).",
        ),
    }
)


@dataclass
class SignupForm:
    email: str
    name: str = ""
    lists: list[str] = field(default_factory=list)  # public list slugs
    locale: str = ""
    honeypot: str = ""
    challenge: str = ""
    pow: str = ""
    client_ip: str = ""


@dataclass
class SignupResult:
    """accepted (the one answer a visitor sees), invalid (a field to fix) or limited (429)."""

    outcome: str
    message_key: str = "signup_done"
    field_name: str | None = None
    message_args: dict = field(default_factory=dict)
    # (subscriber id, list ids) when a confirmation email was granted, and the message
    # itself (its optin_sent event is in the transaction): send it after the commit
    confirmation: tuple[int, tuple[int, ...]] | None = None
    email: Message | None = None

    def message(self, locale: str) -> str:
        return MESSAGES.get(self.message_key, locale, **self.message_args)


def _invalid(key: str, field_name: str, **args: object) -> SignupResult:
    return SignupResult("invalid", key, field_name, dict(args))


def _digest(value: str) -> str:
    """Keys in Redis name no address or IP in clear."""
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def public_lists(session: Session) -> list[MailingList]:
    return list(
        session.scalars(
            select(MailingList).where(MailingList.public.is_(True)).order_by(MailingList.name)
        )
    )


@dataclass(frozen=True)
class PublicList:
    """What the form needs of a chosen list (read as plain columns: no ORM object per post)."""

    id: int
    slug: str
    name: str
    optin: str


# the hot path's statements, built once (Core: no ORM unit of work or entity per post)
PUBLIC_LISTS_BY_SLUG = select(
    MailingList.id, MailingList.slug, MailingList.name, MailingList.optin
).where(MailingList.slug.in_(bindparam("slugs", expanding=True)), MailingList.public.is_(True))
SUPPRESSED_OR_KNOWN = select(
    exists().where(Suppression.email_key == bindparam("key")),
    select(Subscriber.id).where(Subscriber.email_key == bindparam("key")).scalar_subquery(),
)
INSERT_PERSON = insert(Subscriber.__table__).returning(Subscriber.__table__.c.id)


def _check_fields(
    session: Session, settings: Settings, form: SignupForm
) -> tuple[SignupResult | None, str, list[PublicList]]:
    raw = form.email or ""
    if "\r" in raw or "\n" in raw or "\x00" in raw:
        return _invalid("email_invalid", "email", why="line break"), "", []
    if not raw.strip():
        return _invalid("email_required", "email"), "", []
    local = raw.strip().rpartition("@")[0]
    if not local.isascii():
        return _invalid("email_utf8", "email"), "", []
    try:
        address = check_email(raw)
    except InvalidEmail as exc:
        return _invalid("email_invalid", "email", why=str(exc)), "", []
    name = form.name or ""
    if len(name) > NAME_MAX or any(ord(c) < 32 or ord(c) == 127 for c in name):
        return _invalid("name_invalid", "name"), address, []
    if form.locale and normalise_locale(form.locale) is None:
        return _invalid("locale_invalid", "locale"), address, []
    slugs = [s.strip() for s in form.lists if s and s.strip()]
    if not slugs:
        return _invalid("lists_required", "lists"), address, []
    wanted = list(dict.fromkeys(slugs))
    found = {
        row.slug: PublicList(row.id, row.slug, row.name, row.optin)
        for row in session.connection().execute(PUBLIC_LISTS_BY_SLUG, {"slugs": wanted})
    }
    unknown = next((slug for slug in wanted if slug not in found), None)
    if unknown is not None:
        return _invalid("lists_unknown", "lists", slug=unknown[:64]), address, []
    chosen = [found[slug] for slug in wanted]
    return None, address, chosen


def uncached_mx_domain(settings: Settings, form: SignupForm) -> str | None:
    """The domain process() would ask DNS about (no verdict cached yet), if any: a caller on
    an event loop asks first from a thread, so a slow DNS server never blocks the loop."""
    if not settings.signup_check_mx:
        return None
    try:
        domain = check_email(form.email or "").rpartition("@")[2]
    except InvalidEmail:
        return None
    return None if maildomain.known(settings, domain) else domain


def process(
    session: Session,
    settings: Settings,
    limiter: RateLimiter,
    ledger: proof.Ledger,
    form: SignupForm,
) -> SignupResult:
    """Apply one post of the form; the caller commits, then sends the granted confirmation."""
    ip_key = _digest(form.client_ip or "?")
    if settings.signup_ip_per_minute > 0:
        per_minute = Limit(f"signup:post:{ip_key}", per_minute=settings.signup_ip_per_minute)
        if limiter.acquire([per_minute], 1).granted < 1:
            return SignupResult("limited", "too_many")
    if form.honeypot:  # a bot filled the hidden field: say thanks, do nothing
        return SignupResult("accepted")
    problem, address, chosen = _check_fields(session, settings, form)
    if problem is not None:
        return problem
    if form.challenge or form.pow:
        why = proof.check(settings, ledger, form.challenge, form.email, form.pow)
        if why is not None:
            return SignupResult("invalid", why, "pow")
    elif settings.signup_nojs_per_hour > 0:  # no JavaScript (or a script): a shared small cap
        nojs = Limit("signup:nojs", per_hour=settings.signup_nojs_per_hour)
        if limiter.acquire([nojs], 1).granted < 1:
            return SignupResult("limited", "nojs_busy")
    if settings.signup_check_mx:
        domain = address.rpartition("@")[2]
        if maildomain.accepts_mail(settings, domain) is False:
            return _invalid("email_no_mx", "email", domain=domain)
    pending = _subscribe(session, settings, form, address, chosen)
    if not pending:
        return SignupResult("accepted")
    subscriber, list_ids = pending
    caps = []
    interval = settings.signup_address_interval_seconds
    if interval > 0 or settings.signup_address_per_day > 0:
        caps.append(
            Limit(
                f"signup:addr:{_digest(address.lower())}",
                per_second=1 / interval if interval > 0 else 0.0,  # one per `interval` window
                per_day=settings.signup_address_per_day,
            )
        )
    if settings.signup_ip_per_day > 0:
        caps.append(Limit(f"signup:ipmail:{ip_key}", per_day=settings.signup_ip_per_day))
    if caps and limiter.acquire(caps, 1).granted < 1:
        events.record(
            session,
            "optin_capped",
            channel="email",
            subscriber_id=subscriber.id,
            data={"source": "web-form"},
        )
        return SignupResult("accepted")
    message, row = optin.compose_optin(
        settings, subscriber, [m for m in chosen if m.id in list_ids]
    )
    session.connection().execute(insert(Event.__table__), [row])
    return SignupResult("accepted", confirmation=(subscriber.id, list_ids), email=message)


def _lookup(session: Session, address: str) -> tuple[bool, int | None]:
    """(is the address suppressed, the id of the person who has it): one round trip, as
    service.is_suppressed and service.find_subscriber would answer (same canonical key)."""
    row = session.connection().execute(SUPPRESSED_OR_KNOWN, {"key": canonical_email(address)})
    suppressed, known_id = row.one()
    return bool(suppressed), known_id


def _subscribe(
    session: Session,
    settings: Settings,
    form: SignupForm,
    address: str,
    chosen: list[PublicList],
) -> tuple[Subscriber, tuple[int, ...]] | None:
    """Create or find the person; confirm single opt-in lists, leave double opt-in ones
    unconfirmed. Returns (the person, lists awaiting confirmation) or None.

    An anonymous form never changes an existing person's name or language, never lifts a
    suppression, and never re-subscribes someone who left without asking them first: such a
    person needs the confirmation link whatever the list's own opt-in setting.
    """
    suppressed, known_id = _lookup(session, address)
    if suppressed:
        return None
    now = utcnow()
    if known_id is None:
        subscriber = _create(session, settings, form, address, chosen, now)
        pending = [m.id for m in chosen if m.optin == "double"]
    else:
        subscriber = session.get_one(Subscriber, known_id)
        if subscriber.status in service.SUPPRESSED_STATUSES:
            return None
        pending = [m.id for m in chosen if _join(session, subscriber, m, now)]
    return (subscriber, tuple(pending)) if pending else None


def _create(
    session: Session,
    settings: Settings,
    form: SignupForm,
    address: str,
    chosen: list[PublicList],
    now: datetime,
) -> Subscriber:
    """A new person (the form's common case) in three plain INSERTs: the person, their
    subscriptions, their events; no unit of work to flush. Returns a detached Subscriber
    carrying what the confirmation email needs."""
    single = any(m.optin != "double" for m in chosen)
    person = Subscriber(
        email=address,
        name=(form.name or "").strip(),
        locale=normalise_locale(form.locale) or settings.locale,
    )
    conn = session.connection()
    person.id = conn.execute(
        INSERT_PERSON,
        {
            "email": address,
            "name": person.name,
            "locale": person.locale,
            "attributes": {},
            "status": SubscriberStatus.ACTIVE,
            "created_at": now,
            "confirmed_at": now if single else None,
        },
    ).scalar_one()
    conn.execute(
        insert(Subscription.__table__),
        [
            {
                "subscriber_id": person.id,
                "list_id": m.id,
                "created_at": now,
                "source": "web-form",
                "status": UNCONFIRMED if m.optin == "double" else CONFIRMED,
                "confirmed_at": None if m.optin == "double" else now,
            }
            for m in chosen
        ],
    )
    conn.execute(
        insert(Event.__table__),
        [_subscribed_event(person.id, m.id, m.optin == "double", False) for m in chosen],
    )
    return person


def _subscribed_event(subscriber_id: int, list_id: int, double: bool, again: bool) -> dict:
    return events.event_row(
        "subscribed",
        channel="web",
        subscriber_id=subscriber_id,
        list_id=list_id,
        data={
            "source": "web-form",
            "optin": "double" if double else "single",
            "resubscribe": again,
        },
    )


def _join(
    session: Session,
    subscriber: Subscriber,
    mailing_list: PublicList,
    now: datetime,
) -> bool:
    """Subscribe a known person to one list; True when it awaits confirmation."""
    existing = session.get(Subscription, (subscriber.id, mailing_list.id))
    active = subscriber.status == SubscriberStatus.ACTIVE
    if existing is not None and existing.status == CONFIRMED and active:
        return False
    left_before = subscriber.status == SubscriberStatus.UNSUBSCRIBED or (
        existing is not None and existing.status == SubscriptionStatus.UNSUBSCRIBED
    )
    double = mailing_list.optin == "double" or left_before
    subscription = existing or Subscription(
        subscriber_id=subscriber.id, list_id=mailing_list.id, created_at=now
    )
    if existing is None:
        session.add(subscription)
    subscription.source = "web-form"
    if double:
        subscription.status = UNCONFIRMED  # receives nothing until the button is pressed
    else:
        subscription.status = CONFIRMED
        subscription.confirmed_at = now
        subscription.unsubscribed_at = None
        subscriber.confirmed_at = subscriber.confirmed_at or now
    session.add(Event(**_subscribed_event(subscriber.id, mailing_list.id, double, left_before)))
    return double
