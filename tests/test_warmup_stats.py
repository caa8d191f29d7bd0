"""The warm-up's daily stats count every bounce and complaint kind: the engine's synchronous
ones (bounced / complained) and those DSN and ARF processing records (bounce_hard /
complaint); soft bounces and auto-replies are not bounces."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bounce_helpers import sent_campaign
from dispatch import events
from dispatch.delivery.warmup import day_stats
from dispatch.vocabulary import EventKind


def test_day_stats_count_the_old_and_the_new_event_kinds(session, settings):
    sent = sent_campaign(session, ["a@example.net", "b@example.net"])
    day = date(2026, 11, 20)
    noon = datetime.combine(day, time(12, 0), tzinfo=ZoneInfo(settings.send_timezone))
    kinds = [
        EventKind.BOUNCED,
        EventKind.BOUNCE_HARD,
        EventKind.BOUNCE_HARD,
        EventKind.BOUNCE_SOFT,
        EventKind.AUTO_REPLY,
        EventKind.COMPLAINED,
        EventKind.COMPLAINT,
        EventKind.COMPLAINT,
        EventKind.COMPLAINT,
    ]
    for kind in kinds:
        events.record(session, kind, campaign_id=sent.campaign_id, at=noon)
    # the next day's does not count for this one
    events.record(
        session, EventKind.BOUNCE_HARD, campaign_id=sent.campaign_id, at=noon + timedelta(days=1)
    )
    session.commit()
    stats = day_stats(session, settings, "example.org", day)
    assert (stats["bounced"], stats["complained"]) == (3, 4)
