"""Fan-out: one Delivery row per recipient, made by the database in one INSERT … SELECT.

The recipients come from the subscribers area as a SELECT (distinct eligible subscribers of
the lists), so 100,000 people never become 100,000 Python objects here. Batch numbers are
assigned in the same statement (row_number() / batch size) and never change afterwards:
a batch, and a WeChat chunk's clientmsgid derived from it, is stable across retries.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    Subquery,
    case,
    cast,
    column,
    func,
    insert,
    literal,
    null,
    select,
    table,
    text,
)
from sqlalchemy.orm import Session

from dispatch.channels import channel_traits, fanout_batch_size, min_batch_size
from dispatch.config import Settings
from dispatch.models import Campaign, Delivery, utcnow
from dispatch.models.base import UTCDateTime
from dispatch.vocabulary import DeliveryStatus

INSERT_COLUMNS = (
    "campaign_id",
    "subscriber_id",
    "email",
    "openid",
    "name",
    "locale",
    "batch_no",
    "provider",
    "status",
    "attempts",
    "lease_until",
    "updated_at",
)

# the subscribers table as the seam describes it (id, email, name, locale, openid); a light
# table clause so test sends need no import of another area's model class
_subscribers = table(
    "subscribers",
    column("id", Integer),
    column("email", String),
    column("name", String),
    column("locale", String),
    column("openid", String),
)


def recipients_source(campaign: Campaign):
    """The SELECT of (id, email, name, locale, openid) this campaign goes to."""
    if campaign.is_test:
        ids = list((campaign.options or {}).get("test_subscriber_ids") or [])
        s = _subscribers
        return select(s.c.id, s.c.email, s.c.name, s.c.locale, s.c.openid).where(s.c.id.in_(ids))
    from dispatch.subscribers.service import recipients_select

    return recipients_select(
        list(campaign.list_ids), campaign.channel, (campaign.options or {}).get("channels")
    )


FAN_OUT_WORK_MEM = "64MB"  # PostgreSQL's sort memory during a fan-out (default 4MB)
MX_LOOKUP_BUDGET_SECONDS = 10.0  # DNS time per fan-out at most (it runs in a transaction)


def domain_expression(email, dialect: str):
    """The lower-cased domain part of an address column, in this database's SQL."""
    if dialect == "postgresql":
        return func.lower(func.split_part(email, "@", 2))
    return func.lower(func.substr(email, func.instr(email, "@") + 1))


def provider_expression(session: Session, settings: Settings, src) -> object:
    """A CASE mapping each recipient's domain to its provider (table first, then MX)."""
    from dispatch.delivery.providers import OTHER, provider_for_domains
    from dispatch.delivery.relays import redis_for

    dialect = session.get_bind().dialect.name
    domain = domain_expression(src.c.email, dialect)
    counted = session.execute(
        select(domain.label("d"), func.count()).group_by(domain).order_by(func.count().desc())
    ).all()
    domains = [d for d, _ in counted if d]
    lookup_settings = settings
    known = provider_for_domains(
        settings.replace(provider_mx_lookup=False), domains
    )  # the table alone: cheap
    unknown = [d for d in domains if known.get(d) == OTHER and not _reserved(d)]
    if unknown and settings.provider_mx_lookup:  # MX for the biggest unknown domains only
        try:
            redis_client = redis_for(settings)
        except Exception:  # noqa: BLE001 - the cache is optional
            redis_client = None
        known.update(
            provider_for_domains(
                lookup_settings,
                unknown[: settings.provider_mx_lookup_max],
                redis_client=redis_client,
                budget_seconds=MX_LOOKUP_BUDGET_SECONDS,
            )
        )
    by_provider: dict[str, list[str]] = {}
    for d, name in known.items():
        if name != OTHER:
            by_provider.setdefault(name, []).append(d)
    if not by_provider:
        return literal(OTHER, String)
    return case(
        *(
            (domain.in_(sorted(ds)), literal(name, String))
            for name, ds in sorted(by_provider.items())
        ),
        else_=literal(OTHER, String),
    )


def _reserved(domain: str) -> bool:
    """Documentation / test domains (RFC 2606, 6761): never worth a DNS query."""
    return domain in ("example.org", "example.com", "example.net") or domain.endswith(
        (
            ".example",
            ".test",
            ".invalid",
            ".localhost",
            ".example.org",
            ".example.com",
            ".example.net",
        )
    )


def recipient_count(session: Session, campaign: Campaign) -> int:
    """How many people a fan-out would reach now (scheduling refuses a send to nobody)."""
    src = recipients_source(campaign).subquery("recipients")
    return int(session.scalar(select(func.count()).select_from(src)) or 0)


def fan_out(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    now: datetime | None = None,
    *,
    only_new: bool = False,
) -> tuple[int, list[int]]:
    """Create the campaign's deliveries (in the caller's transaction). Returns (count, batches)
    of the rows made now.

    only_new: add only recipients who have no delivery in this campaign yet (people who joined
    its lists after it started), in new batches numbered after the existing ones.

    For a channel that sends through relays (email) each delivery gets its receiving
    provider, and the batches interleave providers: recipients are ordered by their relative
    position within their provider (the k-th of n QQ recipients sorts at k/n), so every batch
    holds each provider's share and a slowed-down provider is spread over the whole campaign
    instead of being the tail everyone waits on.
    """
    now = now or utcnow()
    if session.get_bind().dialect.name == "postgresql":
        # the windows sort every recipient twice: in memory, not in temporary files; and no
        # JIT compilation (a one-pass statement gains nothing from it). This transaction only.
        session.execute(text(f"SET LOCAL work_mem = '{FAN_OUT_WORK_MEM}'"))
        session.execute(text("SET LOCAL jit = off"))
    rows, first_batch = _numbered_rows(session, settings, campaign, now, only_new)
    session.execute(insert(Delivery.__table__).from_select(list(INSERT_COLUMNS), rows))
    total, last_batch = session.execute(
        select(func.count(), func.max(Delivery.batch_no)).where(
            Delivery.campaign_id == campaign.id, Delivery.batch_no >= first_batch
        )
    ).one()
    batches = list(range(first_batch, int(last_batch) + 1)) if total else []
    return int(total), batches


def _numbered_rows(
    session: Session, settings: Settings, campaign: Campaign, now: datetime, only_new: bool
) -> tuple[Select[Any], int]:
    """The SELECT of the new deliveries' columns (INSERT_COLUMNS), and the first batch."""
    source, first_batch = _recipients(session, campaign, only_new)
    src = source.order_by(None).subquery("recipients")  # the windows order them
    ranked = _ranked_by_provider(session, settings, campaign, src)
    batch_no = _batch_numbers(session, settings, campaign, src, ranked, first_batch)
    # the sweep re-enqueues a pending batch only after this "queued until" time passes
    queued_until = now + timedelta(seconds=settings.lease_seconds)
    rows = select(
        literal(campaign.id, Integer),
        ranked.c.id,
        ranked.c.email,
        ranked.c.openid,
        func.coalesce(ranked.c.name, ""),
        func.coalesce(ranked.c.locale, settings.locale),
        batch_no,
        ranked.c.provider,
        literal(DeliveryStatus.PENDING.value, String),
        literal(0, Integer),
        literal(queued_until, UTCDateTime()),
        literal(now, UTCDateTime()),
    )
    return rows, first_batch


def _recipients(session: Session, campaign: Campaign, only_new: bool) -> tuple[Select[Any], int]:
    """The recipients to fan out to and the first batch number (after the existing batches
    when only those without a delivery yet are added)."""
    source = recipients_source(campaign)
    if not only_new:
        return source, 0
    d = Delivery.__table__.c
    last = session.scalar(select(func.max(d.batch_no)).where(d.campaign_id == campaign.id))
    first_batch = 0 if last is None else int(last) + 1
    candidates = source.subquery("candidates")
    taken = select(d.subscriber_id).where(
        d.campaign_id == campaign.id, d.subscriber_id == candidates.c.id
    )
    return select(candidates).where(~taken.exists()), first_batch


def _ranked_by_provider(
    session: Session, settings: Settings, campaign: Campaign, src: Subquery
) -> Subquery:
    """The recipients with their provider and their relative position within it (0..1)."""
    provider: Any = (
        provider_expression(session, settings, src)
        if channel_traits(campaign.channel).relays
        else null()
    )
    inner = select(
        src.c.id,
        src.c.email,
        src.c.openid,
        src.c.name,
        src.c.locale,
        provider.label("provider"),
    ).subquery("with_provider")
    rank = func.row_number().over(partition_by=inner.c.provider, order_by=inner.c.id)
    size = func.count().over(partition_by=inner.c.provider)
    return select(
        inner,
        ((cast(rank, Float) - 0.5) / cast(size, Float)).label("position"),
    ).subquery("ranked")


def _batch_numbers(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    src: Subquery,
    ranked: Subquery,
    first_batch: int,
) -> Any:
    """Each ranked recipient's batch number, in order of position (providers interleaved)."""
    batch_size = fanout_batch_size(campaign.channel, settings)
    row_number = func.row_number().over(
        order_by=(ranked.c.position, ranked.c.provider, ranked.c.id)
    )
    if min_batch_size(campaign.channel) > 1:
        # spread evenly over ceil(n / size) batches, so the tail is never a batch of one
        # (20,001 followers: 6,667 + 6,667 + 6,667, not 10,000 + 10,000 + 1)
        n = int(session.scalar(select(func.count()).select_from(src)) or 0)
        spread = max(1, -(-n // batch_size))
        return ((row_number - 1) * literal(spread, Integer)).self_group().op("/")(
            literal(max(n, 1), Integer)
        ) + literal(first_batch, Integer)
    return (row_number - 1).self_group().op("/")(literal(batch_size, Integer)) + literal(
        first_batch, Integer
    )
