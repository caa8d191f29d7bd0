"""Record normalised events: the one function every area calls to say what happened."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from dispatch.models import EVENT_KINDS, Event, utcnow
from dispatch.vocabulary import Channel


def record(
    session: Session,
    kind: str,
    *,
    channel: str = Channel.EMAIL,
    campaign_id: int | None = None,
    delivery_id: int | None = None,
    subscriber_id: int | None = None,
    list_id: int | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Event:
    """Add an event to the session (the caller's transaction commits it with the state change)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    event = Event(
        kind=kind,
        channel=channel,
        campaign_id=campaign_id,
        delivery_id=delivery_id,
        subscriber_id=subscriber_id,
        list_id=list_id,
        data=data or {},
        occurred_at=at or utcnow(),
    )
    session.add(event)
    return event
