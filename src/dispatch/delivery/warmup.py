"""Domain warm-up: a new sending domain's daily volume ramps up while its mail is welcome.

The plan (settings; shipped default after Ghost's 42-day ramp, but faster while stats allow):
day one `warmup_start` (200) messages; each following day the allowance grows by
`warmup_growth` (x2) if yesterday's bounce rate stayed under `warmup_max_bounce_rate` (2 %)
and its complaint rate under `warmup_max_complaint_rate` (0.1 %) and at least half of
yesterday's allowance was used (a quiet day proves nothing, so it holds); above a threshold
the allowance holds, above twice a threshold it halves. Once the allowance reaches
`warmup_target` the domain is warm and uncapped.

Every campaign from the domain counts against the same daily allowance (the engine reserves
from the "warmup:<domain>" daily counter before each chunk), so two campaigns on one day do not
double the volume. Each day's decision is stored (`warmup_days`) with its reason.

`allowance_today(session, settings, domain)` is the plain function pages and the CLI call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.delivery.quota import local_day, used_in_db
from dispatch.models import Campaign, Delivery, Event, WarmupDay, utcnow
from dispatch.vocabulary import EventKind, WarmupState


@dataclass(frozen=True)
class Allowance:
    domain: str
    day: str
    day_number: int
    allowance: int  # 0 means uncapped (warm, or not under warm-up)
    used: int
    reason: str
    warm: bool

    @property
    def left(self) -> int | None:
        return None if self.warm else max(self.allowance - self.used, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "day": self.day,
            "day_number": self.day_number,
            "allowance": None if self.warm else self.allowance,
            "used": self.used,
            "left": self.left,
            "warm": self.warm,
            "reason": self.reason,
        }


def scope(domain: str) -> str:
    return f"warmup:{domain.lower()}"


def from_domain(settings: Settings) -> str:
    return settings.from_address.rpartition("@")[2].lower()


def under_warmup(settings: Settings, domain: str) -> bool:
    return domain.lower() in {d.lower() for d in settings.warmup_domains}


# the engine's synchronous refusals write bounced / complained; DSN and ARF processing
# (dispatch.bounces) writes bounce_hard / complaint: both are the day's bounces and complaints
BOUNCE_KINDS: tuple[str, ...] = (EventKind.BOUNCED, EventKind.BOUNCE_HARD)
COMPLAINT_KINDS: tuple[str, ...] = (EventKind.COMPLAINED, EventKind.COMPLAINT)


def _day_bounds(day: date, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0, 0), tzinfo=zone)
    return start, start + timedelta(days=1)


def day_stats(session: Session, settings: Settings, domain: str, day: date) -> dict[str, int]:
    """sent / bounced / complained of `day` for email campaigns (the From domain is global)."""
    start, end = _day_bounds(day, settings.send_timezone)
    sent = used_in_db(session, scope(domain), day.isoformat())
    kinds = dict(
        session.execute(
            select(Event.kind, func.count())
            .join(Campaign, Campaign.id == Event.campaign_id)
            .where(
                Event.kind.in_((*BOUNCE_KINDS, *COMPLAINT_KINDS)),
                Event.occurred_at >= start,
                Event.occurred_at < end,
                Campaign.channel == "email",
                Campaign.is_test.is_(False),
            )
            .group_by(Event.kind)
        ).all()
    )
    return {
        "sent": sent,
        "bounced": sum(int(kinds.get(kind, 0)) for kind in BOUNCE_KINDS),
        "complained": sum(int(kinds.get(kind, 0)) for kind in COMPLAINT_KINDS),
    }


def decide(settings: Settings, previous: int, stats: dict[str, int]) -> tuple[int, str]:
    """Tomorrow's allowance from today's (`previous`) and today's stats, with the reason."""
    sent = stats["sent"]
    bounce = stats["bounced"] / sent if sent else 0.0
    complaint = stats["complained"] / sent if sent else 0.0
    figures = f"sent {sent}, bounces {bounce:.2%}, complaints {complaint:.3%}"
    if (
        bounce > 2 * settings.warmup_max_bounce_rate
        or complaint > 2 * settings.warmup_max_complaint_rate
    ):
        return max(previous // 2, settings.warmup_start), f"reduced ({figures})"
    if bounce > settings.warmup_max_bounce_rate or complaint > settings.warmup_max_complaint_rate:
        return previous, f"held: over threshold ({figures})"
    if sent < previous / 2:
        return previous, f"held: less than half used ({figures})"
    grown = int(previous * settings.warmup_growth)
    return min(max(grown, previous + 1), settings.warmup_target), f"grown ({figures})"


def allowance_today(
    session: Session, settings: Settings, domain: str, now: datetime | None = None
) -> Allowance:
    """Today's allowance of `domain` (decided and stored on first use each day)."""
    now = now or utcnow()
    domain = domain.lower()
    today = local_day(now, settings.send_timezone)
    used = used_in_db(session, scope(domain), today.isoformat())
    if not under_warmup(settings, domain):
        return Allowance(domain, today.isoformat(), 0, 0, used, "not under warm-up", True)
    row = session.get(WarmupDay, (domain, today.isoformat()))
    if row is None:
        last = session.scalars(
            select(WarmupDay)
            .where(WarmupDay.domain == domain, WarmupDay.day < today.isoformat())
            .order_by(WarmupDay.day.desc())
            .limit(1)
        ).first()
        if last is None:
            number, allowance, reason = 1, settings.warmup_start, "day one of the plan"
        else:
            last_day = date.fromisoformat(last.day)
            stats = day_stats(session, settings, domain, last_day)
            allowance, reason = decide(settings, last.allowance, stats)
            number = last.day_number + (today - last_day).days
        row = WarmupDay(
            domain=domain,
            day=today.isoformat(),
            day_number=number,
            allowance=allowance,
            reason=reason,
            created_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:  # another worker decided first: use theirs
            row = session.get(WarmupDay, (domain, today.isoformat()), populate_existing=True)
            assert row is not None
    warm = row.allowance >= settings.warmup_target
    return Allowance(
        domain, row.day, row.day_number, row.allowance, used, row.reason or "", warm=warm
    )


def plan(session: Session, settings: Settings, domain: str, days: int = 14) -> list[dict]:
    """The recent days of the plan as stored (newest last), for the admin and the CLI."""
    rows = session.scalars(
        select(WarmupDay)
        .where(WarmupDay.domain == domain.lower())
        .order_by(WarmupDay.day.desc())
        .limit(days)
    ).all()
    return [
        {
            "day": r.day,
            "day_number": r.day_number,
            "allowance": r.allowance,
            "used": used_in_db(session, scope(domain), r.day),
            "reason": r.reason,
        }
        for r in reversed(rows)
    ]


def projected(settings: Settings, days: int = 14) -> list[int]:
    """The shipped plan's ramp when every day goes well (for docs and the status page)."""
    out, value = [], settings.warmup_start
    for _ in range(days):
        out.append(value)
        if value >= settings.warmup_target:
            break
        value = min(int(value * settings.warmup_growth), settings.warmup_target)
    return out


def state_of(reason: str, allowance: int, settings: Settings) -> WarmupState:
    """The day's state word from its stored reason (written by `decide` / `allowance_today`)."""
    if allowance >= settings.warmup_target:
        return WarmupState.WARM
    if reason.startswith("reduced"):
        return WarmupState.REDUCED
    if reason.startswith("held: over threshold"):
        return WarmupState.HELD_RATES
    if reason.startswith("held"):
        return WarmupState.HELD_QUIET
    if reason.startswith("grown"):
        return WarmupState.GROWN
    return WarmupState.FIRST


def schedule(
    session: Session,
    settings: Settings,
    domain: str,
    now: datetime | None = None,
    past: int = 14,
    ahead: int = 7,
) -> list[dict[str, Any]]:
    """The plan as one table (the admin page and `dispatch relays status` both show this):
    the stored days up to today, then the days ahead grown from today's allowance as if
    every day goes well (`used` is None for those)."""
    today = allowance_today(session, settings, domain, now=now)
    rows: list[dict[str, Any]] = [
        {**day, "state": str(state_of(day["reason"] or "", day["allowance"], settings))}
        for day in plan(session, settings, domain, days=past)
    ]
    value, number, day = today.allowance, today.day_number, date.fromisoformat(today.day)
    for _ in range(ahead):
        if today.warm or value >= settings.warmup_target:
            break
        value = min(max(int(value * settings.warmup_growth), value + 1), settings.warmup_target)
        number, day = number + 1, day + timedelta(days=1)
        rows.append(
            {
                "day": day.isoformat(),
                "day_number": number,
                "allowance": value,
                "used": None,
                "reason": "",
                "state": str(WarmupState.AHEAD),
            }
        )
    return rows


def delivered_today(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """Email messages sent today (all campaigns), for the status view."""
    now = now or utcnow()
    start, end = _day_bounds(local_day(now, settings.send_timezone), settings.send_timezone)
    return int(
        session.scalar(
            select(func.count()).where(
                Delivery.status == "sent", Delivery.sent_at >= start, Delivery.sent_at < end
            )
        )
        or 0
    )
