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
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.delivery.reputation import COMPLAINT_KINDS, HARD_BOUNCE_KINDS
from dispatch.models import Campaign, Delivery, Event, utcnow
from dispatch.models.subscriber import Suppression
from dispatch.vocabulary import Channel, DeliveryStatus

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


def overview(session: Session, settings: Settings, days: int = 30) -> dict[str, Any]:
    """Rates over `days` (bounces, complaints), suppression growth, per-provider delivery."""
    now = utcnow()
    since = now - timedelta(days=days)
    rows = session.execute(
        select(Delivery.id, Delivery.email, Delivery.status)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(
            Campaign.channel == Channel.EMAIL,
            Campaign.is_test.is_(False),
            Delivery.status.in_(FINISHED),
            Delivery.updated_at >= since,
        )
    ).all()
    bounced_ids = {i for i, _, status in rows if status == DeliveryStatus.BOUNCED}
    late = session.execute(
        select(Event.delivery_id, Event.kind).where(
            Event.occurred_at >= since,
            Event.delivery_id.is_not(None),
            Event.kind.in_((*HARD_BOUNCE_KINDS, *COMPLAINT_KINDS)),
        )
    ).all()
    ids = {i for i, _, _ in rows}
    bounced_ids |= {d for d, kind in late if kind in HARD_BOUNCE_KINDS and d in ids}
    complained_ids = {d for d, kind in late if kind in COMPLAINT_KINDS and d in ids}
    per_provider: dict[str, Counter] = {}
    provider_of = provider_namer(settings)
    for delivery_id, email, status in rows:
        provider = provider_of((email or "").rpartition("@")[2])
        counter = per_provider.setdefault(provider, Counter())
        counter["total"] += 1
        if status == DeliveryStatus.SENT and delivery_id not in bounced_ids:
            counter["delivered"] += 1
        if delivery_id in bounced_ids:
            counter["bounced"] += 1
    total = len(rows)
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
        "hard_bounces": len(bounced_ids),
        "complaints": len(complained_ids),
        "bounce_rate": len(bounced_ids) / total if total else 0.0,
        "complaint_rate": len(complained_ids) / total if total else 0.0,
        "providers": providers,
        "suppression": {"total": suppressed_total or 0, "weeks": weeks},
        "warmup": warmup_allowance(session, settings),
    }
