"""A campaign's progress per receiving provider, with each provider's current throttle state.

Why its own module: the campaign page, `dispatch campaigns show` and the API all show it, and
the throttle state lives in Redis (dispatch.delivery.throttle), not in the campaign's rows.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.models import Delivery
from dispatch.vocabulary import DeliveryStatus


def provider_counts(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    """[{provider, sent, deferred, bounced, failed, open, total}] biggest provider first."""
    rows = session.execute(
        select(Delivery.provider, Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.provider, Delivery.status)
    ).all()
    by_provider: dict[str, dict[str, Any]] = {}
    for provider, status, n in rows:
        name = provider or "other"
        entry = by_provider.setdefault(
            name,
            {"provider": name, "sent": 0, "deferred": 0, "bounced": 0, "failed": 0, "open": 0},
        )
        if status in (DeliveryStatus.SENT, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED):
            entry[str(status)] += int(n)
        elif status == DeliveryStatus.DEFERRED:
            entry["deferred"] += int(n)
            entry["open"] += int(n)
        elif status in (DeliveryStatus.PENDING, DeliveryStatus.SENDING):
            entry["open"] += int(n)
    out = list(by_provider.values())
    for entry in out:
        entry["total"] = sum(int(n) for p, _, n in rows if (p or "other") == entry["provider"])
    return sorted(out, key=lambda e: (-e["total"], e["provider"]))


def provider_progress(
    session: Session, settings: Settings | None, campaign_id: int
) -> list[dict[str, Any]]:
    """provider_counts plus `throttle` (state, speed, seconds left, last reply) when known."""
    out = provider_counts(session, campaign_id)
    if settings is None or not out:
        return out
    try:
        from dispatch.delivery.throttle import provider_throttle

        throttle = provider_throttle(settings)
        now = time.time()
        for entry in out:
            state = throttle.state(entry["provider"])
            entry["throttle"] = state.as_dict(now, settings.throttle_recovery_seconds)
    except Exception:  # noqa: BLE001 - Redis down: the counts still show
        pass
    return out
