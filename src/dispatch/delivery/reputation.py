"""The reputation guard: a running campaign pauses itself before its bounces or complaints hurt
the sending domain.

Why: a relay (a university's Postfix, Tencent Exmail) does not stop a sender whose list is
stale; receivers simply start blocking the domain. Amazon SES pauses an account at about 10 %
bounces or 0.5 % complaints; Gmail wants complaints under 0.3 %. The guard watches the same
two rates per campaign, over the most recent `reputation_window` finished deliveries (with at
least `reputation_min_sample` of them), and pauses the campaign with the figures and the worst
recipient domains named, so an administrator can clean the list and resume.

Where the signals come from: a delivery counts as hard-bounced when its row says so (the
receiving server refused it during our SMTP conversation) or when a hard-bounce event names
it (DSNs that arrive later); as complained when a complaint event names it. So bounces and
complaints recorded after the send count as soon as they arrive.

A resume starts a fresh window (`options["reputation_since"]`), so the deliveries that caused
the pause do not pause the campaign again at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, exists, select, text
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.log import get_logger
from dispatch.models import Campaign, Delivery, Event, utcnow
from dispatch.vocabulary import CampaignStatus, DeliveryStatus, EventKind, PauseCause

log = get_logger(__name__)

# event kinds that mark a delivery as hard-bounced / complained (the engine's synchronous
# bounces write "bounced"; DSN and ARF processing adds the others)
HARD_BOUNCE_KINDS: tuple[str, ...] = (EventKind.BOUNCED, EventKind.BOUNCE_HARD)
COMPLAINT_KINDS: tuple[str, ...] = (EventKind.COMPLAINED, EventKind.COMPLAINT)
PAUSE_EVENT = EventKind.CAMPAIGN_PAUSED
FINISHED_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)
CHECK_EVERY_CHUNKS = 4  # without a bounce in the chunk, look every this many chunks
WORST_DOMAINS = 3

MESSAGES = Catalog(
    {
        "paused": (
            "信誉保护暂停：最近 {sample} 封中{what}；问题最多的收件域名：{domains}。"
            "清理列表后可恢复发送",
            "paused by the reputation guard: of the last {sample} deliveries, {what_en}; worst "
            "recipient domains: {domains}. Clean the list, then resume",
        ),
        "bounces": (
            "硬退信 {count} 封（{rate}，上限 {limit}）",
            "{count} hard bounces ({rate}, limit {limit})",
        ),
        "complaints": (
            "投诉 {count} 次（{rate}，上限 {limit}）",
            "{count} complaints ({rate}, limit {limit})",
        ),
    }
)


@dataclass(frozen=True)
class Reading:
    """A campaign's recent signals."""

    sample: int
    hard_bounces: int
    complaints: int
    worst_domains: list[tuple[str, int, int]] = field(default_factory=list)  # domain, bad, sent

    @property
    def bounce_rate(self) -> float:
        return self.hard_bounces / self.sample if self.sample else 0.0

    @property
    def complaint_rate(self) -> float:
        return self.complaints / self.sample if self.sample else 0.0

    def as_dict(self) -> dict:
        return {
            "sample": self.sample,
            "hard_bounces": self.hard_bounces,
            "complaints": self.complaints,
            "bounce_rate": round(self.bounce_rate, 4),
            "complaint_rate": round(self.complaint_rate, 5),
            "worst_domains": [
                {"domain": d, "bad": bad, "deliveries": n} for d, bad, n in self.worst_domains
            ],
        }


def _since(campaign: Campaign) -> datetime | None:
    value = (campaign.options or {}).get("reputation_since")
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _window(
    session: Session, settings: Settings, campaign: Campaign, since: datetime | None
) -> list[Any]:
    """(id, email, updated_at, bounced?, complained?) of the campaign's most recent
    `reputation_window` finished deliveries."""
    d, e = Delivery.__table__.c, Event.__table__.c
    conditions = [d.campaign_id == campaign.id, d.status.in_(FINISHED_STATUSES)]
    if since is not None:
        conditions.append(d.updated_at >= since)
    window = (
        select(d.id, d.email, d.status, d.updated_at)
        .where(and_(*conditions))
        .order_by(d.updated_at.desc(), d.id.desc())
        .limit(max(settings.reputation_window, 1))
        .subquery()
    )
    if session.get_bind().dialect.name == "postgresql":
        # read the window in the order of ix_deliveries_campaign_updated and stop after it:
        # on stale statistics (a campaign analysed at fan-out, when nothing was sent) the
        # planner would sort every finished row of the campaign, every few chunks (a cost
        # that grows with the campaign); for this transaction only
        session.execute(text("SET LOCAL enable_sort = off"))
    bounce_event = exists().where(e.delivery_id == window.c.id, e.kind.in_(HARD_BOUNCE_KINDS))
    complaint_event = exists().where(e.delivery_id == window.c.id, e.kind.in_(COMPLAINT_KINDS))
    rows = session.execute(
        select(
            window.c.id,
            window.c.email,
            window.c.updated_at,
            (window.c.status == DeliveryStatus.BOUNCED) | bounce_event,
            complaint_event,
        )
    ).all()
    return list(rows)


def read(session: Session, settings: Settings, campaign: Campaign) -> Reading:
    """Hard bounces and complaints among the campaign's most recent finished deliveries.

    The window is the last `reputation_window` deliveries by their last change. A signal that
    arrives later (a DSN, an ARF report) counts when it names a delivery in the window, or
    when it arrived during the window's time span even if its delivery is older: the rate is
    what receivers are seeing now.
    """
    d, e = Delivery.__table__.c, Event.__table__.c
    since = _since(campaign)
    rows = _window(session, settings, campaign, since)
    email_of = {row[0]: row[1] for row in rows}
    bounced = {row[0] for row in rows if row[3]}
    complained = {row[0] for row in rows if row[4]}
    if rows:
        window_start = min(row[2] for row in rows)
        late_conditions = [
            e.campaign_id == campaign.id,
            e.kind.in_((*HARD_BOUNCE_KINDS, *COMPLAINT_KINDS)),
            e.occurred_at >= window_start,
            e.delivery_id.is_not(None),
        ]
        if since is not None:
            late_conditions.append(e.occurred_at >= since)
        late = session.execute(
            select(e.delivery_id, e.kind, d.email)
            .join(Delivery.__table__, d.id == e.delivery_id)
            .where(and_(*late_conditions))
        ).all()
        for delivery_id, kind, email in late:
            email_of.setdefault(delivery_id, email)
            (bounced if kind in HARD_BOUNCE_KINDS else complained).add(delivery_id)
    per_domain: Counter[str] = Counter(_domain(email) for _, email, *_ in rows)
    bad_per_domain: Counter[str] = Counter(_domain(email_of[i]) for i in bounced | complained)
    worst = [
        (domain, bad, max(per_domain[domain], bad))
        for domain, bad in sorted(bad_per_domain.items(), key=lambda kv: (-kv[1], kv[0]))
    ][:WORST_DOMAINS]
    return Reading(len(rows), len(bounced), len(complained), worst)


def _domain(email: str | None) -> str:
    return (email or "").rpartition("@")[2].lower() or "-"


def verdict(settings: Settings, reading: Reading) -> str | None:
    """The pause reason ('中文 / English') when a rate is over its threshold, else None."""
    if reading.sample < max(settings.reputation_min_sample, 1):
        return None
    over_bounces = reading.bounce_rate > settings.reputation_max_bounce_rate
    over_complaints = reading.complaint_rate > settings.reputation_max_complaint_rate
    if not (over_bounces or over_complaints):
        return None
    parts_zh, parts_en = [], []
    if over_bounces:
        args = {
            "count": reading.hard_bounces,
            "rate": f"{reading.bounce_rate:.1%}",
            "limit": f"{settings.reputation_max_bounce_rate:.1%}",
        }
        parts_zh.append(MESSAGES.get("bounces", "zh-CN", **args))
        parts_en.append(MESSAGES.get("bounces", "en", **args))
    if over_complaints:
        args = {
            "count": reading.complaints,
            "rate": f"{reading.complaint_rate:.2%}",
            "limit": f"{settings.reputation_max_complaint_rate:.2%}",
        }
        parts_zh.append(MESSAGES.get("complaints", "zh-CN", **args))
        parts_en.append(MESSAGES.get("complaints", "en", **args))
    domains = ", ".join(f"{d} ({bad}/{n})" for d, bad, n in reading.worst_domains) or "-"
    zh, en = MESSAGES.messages["paused"]
    return (
        zh.format(sample=reading.sample, what="，".join(parts_zh), domains=domains)
        + " / "
        + en.format(sample=reading.sample, what_en="; ".join(parts_en), domains=domains)
    )


def any_signal(session: Session, campaign: Campaign) -> bool:
    """Whether the campaign has any hard bounce or complaint at all (since its last resume).

    Why: `read` walks the whole window (1,000 rows, two event probes each) and the engine asks
    every few chunks; a campaign without a single bad signal cannot be over a threshold, and
    two index probes (ix_events_campaign_kind, ix_deliveries_campaign_status) say so.
    """
    d, e = Delivery.__table__.c, Event.__table__.c
    since = _since(campaign)
    event_conditions = [
        e.campaign_id == campaign.id,
        e.kind.in_(HARD_BOUNCE_KINDS + COMPLAINT_KINDS),
    ]
    row_conditions = [d.campaign_id == campaign.id, d.status == DeliveryStatus.BOUNCED]
    if since is not None:
        event_conditions.append(e.occurred_at >= since)
        row_conditions.append(d.updated_at >= since)
    found = session.execute(
        select(exists().where(and_(*event_conditions)), exists().where(and_(*row_conditions)))
    ).one()
    return any(found)


def guard(engine: Engine, settings: Settings, campaign_id: int) -> str | None:
    """Read the campaign's signals and pause it when they are over the thresholds.

    Returns the pause reason when this call paused the campaign. Test sends are never paused.
    """
    from dispatch.delivery import campaigns as campaign_service

    with Session(engine, expire_on_commit=False) as session, session.begin():
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.is_test or campaign.status != CampaignStatus.RUNNING:
            return None
        if not any_signal(session, campaign):
            return None
        reading = read(session, settings, campaign)
        reason = verdict(settings, reading)
        if reason is None:
            return None
        try:
            campaign_service.transition(session, campaign, CampaignStatus.PAUSED, reason=reason)
        except campaign_service.InvalidTransition:  # paused or cancelled meanwhile
            return None
        from dispatch import events

        events.record(
            session,
            PAUSE_EVENT,
            channel=campaign.channel,
            campaign_id=campaign_id,
            data={"by": PauseCause.REPUTATION, **reading.as_dict()},
            at=utcnow(),
        )
    log.warning("campaign.reputation_paused", campaign_id=campaign_id, **reading.as_dict())
    return reason


def due(chunk_index: int, chunk_had_bounce: bool) -> bool:
    """Whether the engine consults the guard after this chunk: after a chunk with a bounce,
    after a batch's first chunk (signals that arrived since the last batch), then every
    CHECK_EVERY_CHUNKS chunks."""
    return chunk_had_bounce or chunk_index % CHECK_EVERY_CHUNKS == 0
