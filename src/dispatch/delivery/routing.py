"""One batch's sending policy: which rows may go now, through which relay, and what to hold.

The engine asks this, chunk by chunk, before it hands recipients to a channel:
- provider holds: rows whose provider is backing off (dispatch.delivery.throttle) wait for the
  end of the backoff, without an attempt counted; the other providers go on;
- provider rates: each provider's configured rate x its current speed (rate limiter scopes
  "provider:<name>"), so a recovering provider speeds up gradually;
- warm-up: the From domain's daily allowance (dispatch.delivery.warmup), shared by campaigns;
- relays: a relay chosen by weight among those that carry this From domain and provider, are
  not marked down, have a free connection slot and daily quota left; quota is reserved in
  the daily counter before sending and the unused part given back afterwards.
Rows that no relay can take today wait for the next day (quota) or for the first relay to come
back (down); the engine shows the reason on the campaign.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.delivery import warmup
from dispatch.delivery.providers import OTHER, load_providers
from dispatch.delivery.quota import DailyCounter, next_day_start
from dispatch.delivery.ratelimit import Limit
from dispatch.delivery.relays import Relay, parse_relays, pick_relay, redis_for, relay_state
from dispatch.delivery.throttle import provider_throttle
from dispatch.i18n import Catalog
from dispatch.log import get_logger
from dispatch.models import utcnow
from dispatch.vocabulary import Outcome

log = get_logger(__name__)

MESSAGES = Catalog(
    {
        "quota": (
            "所有中继今日配额已用完，{at} 继续",
            "every relay's daily quota is used; continues at {at}",
        ),
        "down": (
            "没有可用的中继（{reasons}），{at} 重试",
            "no relay available ({reasons}); retrying at {at}",
        ),
        "no_route": (
            "没有中继可以发送发件域 {domain} 到 {provider}",
            "no relay may carry mail from {domain} to {provider}",
        ),
        "warmup": (
            "域名 {domain} 预热中：今日额度 {allowance} 已用完，{at} 继续",
            "domain {domain} is warming up: today's allowance of {allowance} is used; continues "
            "at {at}",
        ),
        "throttled": (
            "{provider} 要求放慢：{reason}",
            "{provider} asks us to slow down: {reason}",
        ),
    }
)


@dataclass
class Wait:
    """Rows that cannot go now, until when, and why (shown on the campaign)."""

    until: datetime
    reason: str


@dataclass
class Assignment:
    groups: dict[str, list[Any]] = field(default_factory=dict)  # relay name -> rows
    waiting: list[Any] = field(default_factory=list)
    wait: Wait | None = None


class SendingPolicy:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        clock=utcnow,
        rng: random.Random | None = None,
    ):
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()
        self.relays: list[Relay] = parse_relays(settings)
        self.by_name = {r.name: r for r in self.relays}
        redis_client = redis_for(settings)
        prefix = settings.redis_key_prefix or "dispatch:"
        self.state = relay_state(settings, redis_client)
        self.counter = DailyCounter(engine, settings.send_timezone, redis_client, prefix)
        self.throttle = provider_throttle(settings, redis_client)
        self.table = load_providers(settings)
        self.from_domain = warmup.from_domain(settings)
        self.slots: dict[str, str | None] = {}  # scope -> slot token held by this batch
        self.no_slot: set[str] = set()

    # -- provider throttling --------------------------------------------------------------------

    def split_held(self, rows: Sequence[Any]) -> tuple[list[Any], dict[str, list[Any]]]:
        """(rows that may go, {provider: rows held while it backs off})."""
        providers = sorted({r.provider or OTHER for r in rows})
        now = self.throttle.clock()
        blocked = {p for p, s in self.throttle.states(providers).items() if s.blocked(now)}
        blocked |= {p for p in providers if f"provider:{p}" in self.no_slot}
        go: list[Any] = []
        held: dict[Any, list[Any]] = {}
        for r in rows:
            p = r.provider or OTHER
            if p in blocked:
                held.setdefault(p, []).append(r)
            else:
                go.append(r)
        return go, held

    def held_until(self, provider: str) -> datetime:
        if f"provider:{provider}" in self.no_slot and not self.throttle.state(provider).blocked(
            self.throttle.clock()
        ):
            return self.clock() + timedelta(seconds=self.rng.uniform(5, 20))
        return datetime.fromtimestamp(self.throttle.retry_at(provider), UTC)

    def provider_limit(self, provider: str) -> Limit | None:
        entry = self.table.get(provider)
        if entry.rate_per_second <= 0 and entry.rate_per_hour <= 0:
            return None
        speed = self.throttle.speed(provider)
        return Limit(
            f"provider:{provider}",
            entry.rate_per_second * speed,
            entry.rate_per_hour * speed,
        )

    def take_provider_slot(self, provider: str) -> bool:
        """A connection slot of the provider for this batch (its max_connections)."""
        scope = f"provider:{provider}"
        if scope in self.slots:
            return True
        cap = self.table.get(provider).max_connections
        token = self.state.take_slot(scope, cap, self.settings.lease_seconds)
        if token is None:
            self.no_slot.add(scope)
            return False
        self.slots[scope] = token
        return True

    def throttled(self, provider: str, reason: str) -> None:
        state = self.throttle.throttled(provider, reason)
        log.warning(
            "provider.throttled",
            provider=provider,
            until=datetime.fromtimestamp(state.until, UTC).isoformat(),
            strikes=state.strikes,
            speed_after=state.factor,
            reason=reason[:200],
        )

    # -- warm-up ------------------------------------------------------------------------------

    def warmup_reserve(self, wanted: int) -> tuple[int, Wait | None]:
        """How many of `wanted` the From domain's warm-up allows now (all when not warming)."""
        if not warmup.under_warmup(self.settings, self.from_domain):
            return wanted, None
        now = self.clock()
        with Session(self.engine) as session, session.begin():
            allowance = warmup.allowance_today(session, self.settings, self.from_domain, now)
        if allowance.warm:
            return wanted, None
        granted = self.counter.reserve(
            warmup.scope(self.from_domain), wanted, allowance.allowance, now
        )
        if granted >= wanted:
            return granted, None
        at = next_day_start(now, self.settings.send_timezone)
        reason = MESSAGES.both(
            "warmup",
            domain=self.from_domain,
            allowance=allowance.allowance,
            at=at.strftime("%Y-%m-%d %H:%M %Z"),
        )
        return granted, Wait(at, reason)

    def warmup_give_back(self, n: int) -> None:
        if n > 0 and warmup.under_warmup(self.settings, self.from_domain):
            self.counter.give_back(warmup.scope(self.from_domain), n, self.clock())

    # -- relays -------------------------------------------------------------------------------

    def _usable(self, relay: Relay) -> bool:
        if self.state.down_until(relay.name) is not None:
            return False
        scope = f"relay:{relay.name}"
        if scope in self.slots:
            return True
        if scope in self.no_slot:
            return False
        token = self.state.take_slot(scope, relay.max_connections, self.settings.lease_seconds)
        if token is None:
            self.no_slot.add(scope)
            return False
        self.slots[scope] = token
        return True

    def assign(self, rows: Sequence[Any], exclude: set[str] | None = None) -> Assignment:
        """Rows grouped by the relay each goes through; quota is reserved for every row placed."""
        now = self.clock()
        out = Assignment()
        exhausted: set[str] = set(exclude or ())
        reasons: dict[str, str] = {}
        quota_full = False
        usable_now: dict[str, bool] = {}  # one look per relay per call, only at candidates
        for row in rows:
            provider = row.provider or OTHER
            placed = False
            while not placed:
                candidates = [
                    r
                    for r in self.relays
                    if r.name not in exhausted and r.carries(self.from_domain, provider)
                ]
                for r in candidates:
                    if r.name not in usable_now:
                        usable_now[r.name] = self._usable(r)
                usable = [r for r in candidates if usable_now[r.name]]
                relay = pick_relay(usable, self.rng)
                if relay is None:
                    break
                if relay.daily_quota > 0:
                    got = self.counter.reserve(f"relay:{relay.name}", 1, relay.daily_quota, now)
                    if not got:
                        exhausted.add(relay.name)
                        reasons[relay.name] = "daily quota used"
                        quota_full = True
                        continue
                out.groups.setdefault(relay.name, []).append(row)
                placed = True
            if not placed:
                out.waiting.append(row)
        if out.waiting:
            out.wait = self._why_waiting(now, exhausted, reasons, quota_full, out.waiting)
        return out

    def _why_waiting(
        self,
        now: datetime,
        exhausted: set[str],
        reasons: dict[str, str],
        quota_full: bool,
        waiting: Sequence[Any],
    ) -> Wait:
        downs = []
        for relay in self.relays:
            down = self.state.down_until(relay.name)
            if down is not None:
                downs.append((down[0], relay.name, down[1]))
            elif f"relay:{relay.name}" in self.no_slot:
                downs.append((now.timestamp() + 10, relay.name, "no free connection"))
        carried = any(
            r.carries(self.from_domain, row.provider or OTHER)
            for r in self.relays
            for row in waiting
        )
        if not carried:
            provider = waiting[0].provider or OTHER
            return Wait(
                now + timedelta(hours=1),
                MESSAGES.both("no_route", domain=self.from_domain, provider=provider),
            )
        if downs and (not quota_full or len(exhausted) < len(self.relays)):
            at = datetime.fromtimestamp(min(d[0] for d in downs), UTC) + timedelta(seconds=1)
            text = "; ".join(f"{name}: {why}" for _, name, why in sorted(downs))
            return Wait(at, MESSAGES.both("down", reasons=text, at=at.strftime("%H:%M:%S")))
        at = next_day_start(now, self.settings.send_timezone)
        return Wait(at, MESSAGES.both("quota", at=at.strftime("%Y-%m-%d %H:%M %Z")))

    def give_back(self, relay_name: str, n: int) -> None:
        relay = self.by_name.get(relay_name)
        if relay is not None and relay.daily_quota > 0 and n > 0:
            self.counter.give_back(f"relay:{relay_name}", n, self.clock())

    def relay_failed(self, relay_name: str, reason: str, seconds: float | None = None) -> bool:
        """Mark a relay down (only when there is another to fail over to); True if marked."""
        if len(self.relays) < 2:
            return False
        seconds = self.settings.relay_down_seconds if seconds is None else seconds
        self.state.mark_down(relay_name, seconds, reason)
        log.warning("relay.down", relay=relay_name, seconds=seconds, reason=reason[:200])
        return True

    def close(self) -> None:
        for scope, token in self.slots.items():
            try:
                self.state.free_slot(scope, token)
            except Exception:  # noqa: BLE001 - slots expire by themselves
                pass
        self.slots.clear()


def is_relay_fault(result: Any) -> bool:
    """A result that says the relay (not the recipient or the provider) failed us."""
    data = result.data or {}
    stage = data.get("halted_at") or data.get("stage")  # untried rows: why the send halted
    if result.outcome not in (Outcome.DEFERRED, Outcome.PAUSED, Outcome.THROTTLED):
        return False
    if stage in ("connect", "helo", "auth"):
        return True
    if stage == "mail":
        return True
    if result.outcome == Outcome.PAUSED and "relay" in (result.text or "").lower():
        return True
    return result.outcome == Outcome.DEFERRED and "dropped again" in (result.text or "")


def may_reroute(result: Any) -> bool:
    """Nothing of this message reached the relay: it may go through another one now."""
    data = result.data or {}
    return not data.get("body_sent") and data.get("stage") in (
        "connect",
        "helo",
        "auth",
        "mail",
        "not_attempted",
    )
