"""The deliverability page's figures: the last 30 days of email, per domain and per provider.

Hard bounces count a delivery refused during our SMTP conversation or named by a later
hard-bounce event; complaints count complaint events (see dispatch.delivery.reputation, which
watches the same signals per running campaign). Providers are the shipped provider table's
(dispatch.delivery.providers: QQ, NetEase, Sina, Gmail, Microsoft, …); other domains stand
for themselves.
"""

from __future__ import annotations

import importlib
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.delivery.reputation import COMPLAINT_KINDS, HARD_BOUNCE_KINDS
from dispatch.models import Campaign, Delivery, Event, utcnow
from dispatch.models.subscriber import Suppression
from dispatch.vocabulary import CampaignStatus, Channel, DeliveryStatus

LIVE = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)

FINISHED = (DeliveryStatus.SENT, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)


def provider_namer(settings: Settings):
    """domain -> provider label, from the shipped provider table (dispatch.delivery.providers,
    the same one the throttling obeys); a domain it does not know is shown as itself."""
    try:
        from dispatch.delivery.providers import load_providers

        table = load_providers(settings)
    except Exception:  # noqa: BLE001 - a broken override is reported where it is used
        table = None

    def name(domain: str) -> str:
        domain = domain.lower() or "-"
        found = table.by_domain(domain) if table is not None else None
        return (table.get(found).label or found) if found else domain

    return name


def warmup_allowance(session: Session, settings: Settings) -> dict[str, Any] | None:
    """Today's warm-up allowance of the From domain when it is under the warm-up plan
    (dispatch.delivery.warmup, "Sending like a good citizen"); None otherwise."""
    try:
        warmup = importlib.import_module("dispatch.delivery.warmup")
    except ImportError:
        return None
    domain = settings.from_address.rpartition("@")[2].lower()
    try:
        if not warmup.under_warmup(settings, domain):
            return None
        # (the plan decides today's allowance on first use, as the engine would)
        return warmup.allowance_today(session, settings, domain).as_dict()
    except Exception:  # noqa: BLE001 - the page shows everything else without it
        return None


def _signals(
    session: Session, provider_of, campaign_id: int, since: datetime | None
) -> dict[str, Any]:
    """One campaign's finished deliveries (updated since `since`, or all of them) per
    provider, with its hard bounces and complaints (during the conversation or later)."""
    if session.get_bind().dialect.name == "postgresql":
        return _signals_in_sql(session, provider_of, campaign_id, since)
    return _signals_in_python(session, provider_of, campaign_id, since)


def _signals_in_python(
    session: Session, provider_of, campaign_id: int, since: datetime | None
) -> dict[str, Any]:
    """_signals from the rows themselves (SQLite: no regular expressions to take a domain)."""
    where = [Delivery.campaign_id == campaign_id, Delivery.status.in_(FINISHED)]
    if since is not None:
        where.append(Delivery.updated_at >= since)
    rows = session.execute(select(Delivery.id, Delivery.email, Delivery.status).where(*where))
    ids, bounced_ids, per_provider = set(), set(), {}
    for delivery_id, email, status in rows:
        ids.add(delivery_id)
        if status == DeliveryStatus.BOUNCED:
            bounced_ids.add(delivery_id)
        per_provider.setdefault(provider_of((email or "").rpartition("@")[2]), []).append(
            (delivery_id, status)
        )
    late_where = [
        Event.campaign_id == campaign_id,
        Event.kind.in_((*HARD_BOUNCE_KINDS, *COMPLAINT_KINDS)),
        Event.delivery_id.is_not(None),
    ]
    if since is not None:
        late_where.append(Event.occurred_at >= since)
    late = session.execute(select(Event.delivery_id, Event.kind).where(*late_where)).all()
    bounced_ids |= {d for d, kind in late if kind in HARD_BOUNCE_KINDS and d in ids}
    complained = {d for d, kind in late if kind in COMPLAINT_KINDS and d in ids}
    providers = {
        name: {
            "total": len(members),
            "delivered": sum(
                1 for d, st in members if st == DeliveryStatus.SENT and d not in bounced_ids
            ),
            "bounced": sum(1 for d, _ in members if d in bounced_ids),
        }
        for name, members in per_provider.items()
    }
    return {
        "deliveries": len(ids),
        "hard_bounces": len(bounced_ids),
        "complaints": len(complained),
        "providers": providers,
    }


def _signals_in_sql(
    session: Session, provider_of, campaign_id: int, since: datetime | None
) -> dict[str, Any]:
    """_signals with the rows counted by PostgreSQL per (domain, status) and only the late
    bounces and complaints fetched (a sending campaign of a million has ~500,000 finished rows:
    a second of Python each time they were read one by one). Same figures."""
    domain = func.lower(func.coalesce(func.substring(Delivery.email, "[^@]*$"), ""))
    where = [Delivery.campaign_id == campaign_id, Delivery.status.in_(FINISHED)]
    if since is not None:
        where.append(Delivery.updated_at >= since)
    by = (domain, Delivery.status)
    counts = session.execute(select(*by, func.count()).where(*where).group_by(*by)).all()
    late_where = [
        *where,
        Event.campaign_id == campaign_id,
        Event.kind.in_((*HARD_BOUNCE_KINDS, *COMPLAINT_KINDS)),
    ]
    if since is not None:
        late_where.append(Event.occurred_at >= since)
    late = session.execute(
        select(Event.delivery_id, Event.kind, domain, Delivery.status)
        .join(Delivery, Delivery.id == Event.delivery_id)
        .where(*late_where)
    ).all()
    # a delivery whose row is not "bounced" but a later hard bounce names it: bounced too
    late_hard = {
        d: (dom, st)
        for d, kind, dom, st in late
        if kind in HARD_BOUNCE_KINDS and st != DeliveryStatus.BOUNCED
    }
    complained = {d for d, kind, _, _ in late if kind in COMPLAINT_KINDS}
    providers: dict[str, dict[str, int]] = {}
    total = hard = 0
    for dom, status, n in counts:
        entry = providers.setdefault(provider_of(dom), {"total": 0, "delivered": 0, "bounced": 0})
        entry["total"] += n
        total += n
        if status == DeliveryStatus.SENT:
            entry["delivered"] += n
        elif status == DeliveryStatus.BOUNCED:
            entry["bounced"] += n
            hard += n
    for dom, status in late_hard.values():
        entry = providers[provider_of(dom)]
        entry["bounced"] += 1
        if status == DeliveryStatus.SENT:
            entry["delivered"] -= 1
    return {
        "deliveries": total,
        "hard_bounces": hard + len(late_hard),
        "complaints": len(complained),
        "providers": providers,
    }


def _window_signals(session: Session, settings: Settings, since: datetime) -> dict[str, Any]:
    """The sums over the email campaigns of the window: a closed campaign that finished in it
    counts whole, from its stored tally (dispatch.tallies: counted once, not on each view);
    one still open counts its deliveries finished since `since`, live."""
    from dispatch import tallies

    provider_of = provider_namer(settings)
    campaigns = session.scalars(
        select(Campaign).where(
            Campaign.channel == Channel.EMAIL,
            Campaign.is_test.is_(False),
            Campaign.started_at.is_not(None),
            or_(
                Campaign.status.not_in(tallies.CLOSED),
                func.coalesce(Campaign.finished_at, Campaign.updated_at) >= since,
            ),
        )
    ).all()
    total: dict[str, Any] = {"deliveries": 0, "hard_bounces": 0, "complaints": 0}
    per_provider: dict[str, Counter] = {}
    for campaign in campaigns:
        if tallies.storable(campaign):
            part = tallies.figures(
                session,
                "deliverability",
                campaign,
                lambda c=campaign: _signals(session, provider_of, c.id, None),
                ignore_tracking=True,
            )
        elif campaign.status in LIVE:  # sending: counted every few seconds, not per view
            part = tallies.live(
                session,
                "deliverability",
                campaign,
                lambda s, c=campaign.id: _signals(s, provider_of, c, since),
            )
        else:
            part = _signals(session, provider_of, campaign.id, since)
        for key in total:
            total[key] += part[key]
        for name, counts in part["providers"].items():
            per_provider.setdefault(name, Counter()).update(counts)
    total["per_provider"] = per_provider
    return total


def overview(session: Session, settings: Settings, days: int = 30) -> dict[str, Any]:
    """Rates over `days` (bounces, complaints), suppression growth, per-provider delivery."""
    now = utcnow()
    signals = _window_signals(session, settings, now - timedelta(days=days))
    per_provider = signals["per_provider"]
    total = signals["deliveries"]
    providers = sorted(
        (
            {
                "provider": name,
                "total": c["total"],
                "delivered": c["delivered"],
                "bounced": c["bounced"],
                "delivery_rate": c["delivered"] / c["total"] if c["total"] else 0.0,
            }
            for name, c in per_provider.items()
        ),
        key=lambda p: (-p["total"], p["provider"]),
    )
    weeks = []
    for week in range((days + 6) // 7):
        start = now - timedelta(days=7 * (week + 1))
        end = now - timedelta(days=7 * week)
        added = session.scalar(
            select(func.count()).where(
                Suppression.email.is_not(None),
                Suppression.created_at >= start,
                Suppression.created_at < end,
            )
        )
        weeks.append(
            {"from": start.date().isoformat(), "to": end.date().isoformat(), "added": added or 0}
        )
    suppressed_total = session.scalar(select(func.count()).where(Suppression.email.is_not(None)))
    return {
        "days": days,
        "deliveries": total,
        "hard_bounces": signals["hard_bounces"],
        "complaints": signals["complaints"],
        "bounce_rate": signals["hard_bounces"] / total if total else 0.0,
        "complaint_rate": signals["complaints"] / total if total else 0.0,
        "providers": providers,
        "suppression": {"total": suppressed_total or 0, "weeks": weeks},
        "warmup": warmup_allowance(session, settings),
    }
