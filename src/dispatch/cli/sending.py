"""`dispatch providers` and `dispatch relays status`: the sending limits in effect, readable.

Both validate on the way (a bad provider table or relay setting is one `file:line` /
`relay x: field` error line and exit 1), so they double as a configuration check.
"""

from __future__ import annotations

import time
from typing import Any

import click
from sqlalchemy.orm import Session

from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.config import ConfigError
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "providers_title": ("接收服务商（{sources}）", "receiving providers ({sources})"),
        "relays_title": ("中继", "relays"),
        "down": ("停用至 {until}：{reason}", "down until {until}: {reason}"),
        "up": ("可用", "up"),
        "warmup": (
            "预热 {domain}：第 {day} 天，今日额度 {allowance}，已用 {used}（{reason}）",
            "warm-up {domain}: day {day}, today's allowance {allowance}, used {used} ({reason})",
        ),
        "warm": ("{domain}：无预热上限", "{domain}: not capped by warm-up"),
        "throttle": (
            "{provider}：{state}，速度 {speed:.0%}{left}",
            "{provider}: {state}, speed {speed:.0%}{left}",
        ),
    }
)


def providers_view(settings) -> dict[str, Any]:
    from dispatch.delivery.providers import ProviderTableError, check_providers, load_providers

    try:
        check_providers(settings)
    except ProviderTableError as exc:
        fail(str(exc))
    table = load_providers(settings)
    return {
        "sources": list(table.sources),
        "providers": [p.as_dict() for p in table.providers.values()],
    }


def relays_view(settings) -> dict[str, Any]:
    from dispatch.db import get_engine
    from dispatch.delivery import warmup
    from dispatch.delivery.providers import load_providers
    from dispatch.delivery.quota import DailyCounter
    from dispatch.delivery.relays import parse_relays, redis_for, relay_state
    from dispatch.delivery.throttle import provider_throttle

    try:
        relays = parse_relays(settings)
    except ConfigError as exc:
        fail(str(exc))
    redis_client = redis_for(settings)
    engine = get_engine(settings)
    counter = DailyCounter(
        engine, settings.send_timezone, redis_client, settings.redis_key_prefix or "dispatch:"
    )
    state = relay_state(settings, redis_client)
    out_relays = []
    for relay in relays:
        down = state.down_until(relay.name)
        used = counter.used(f"relay:{relay.name}")
        out_relays.append(
            {
                **relay.public(),
                "used_today": used,
                "left_today": max(relay.daily_quota - used, 0) if relay.daily_quota else None,
                "down_until": down[0] if down else None,
                "down_reason": down[1] if down else None,
            }
        )
    throttle = provider_throttle(settings, redis_client)
    now = time.time()
    names = list(load_providers(settings).providers)
    throttles = [
        s.as_dict(now, settings.throttle_recovery_seconds) for s in throttle.states(names).values()
    ]
    domain = warmup.from_domain(settings)
    with Session(engine) as session, session.begin():
        allowance = warmup.allowance_today(session, settings, domain)
        plan = warmup.plan(session, settings, domain)
        table = warmup.schedule(session, settings, domain) if not allowance.warm else []
    return {
        "relays": out_relays,
        "providers": throttles,
        "warmup": {
            **allowance.as_dict(),
            "plan": plan,
            "projected": warmup.projected(settings),
            "schedule": table,
        },
    }


def _print_providers(data: dict[str, Any]) -> None:
    click.echo(MESSAGES.both("providers_title", sources=", ".join(data["sources"])))
    for p in data["providers"]:
        limits = (
            f"{p['rate_per_second']:g}/s {p['rate_per_hour']:g}/h "
            f"conn {p['max_connections'] or '-'}"
        )
        click.echo(f"\n{p['name']:<10} {p['label']}  [{limits}]")
        click.echo(f"  domains: {', '.join(p['domains'])}")
        if p["mx"]:
            click.echo(f"  mx: {', '.join(p['mx'])}")
        for r in p["replies"]:
            click.echo(f"  {r['kind']:<8} /{r['pattern']}/  {r['meaning']}")
            click.echo(f"           source: {r['source']}")


def _print_relays(data: dict[str, Any]) -> None:
    click.echo(MESSAGES.both("relays_title"))
    for r in data["relays"]:
        quota = (
            f"{r['used_today']}/{r['daily_quota']}" if r["daily_quota"] else f"{r['used_today']}/-"
        )
        if r["down_until"]:
            until = time.strftime("%H:%M:%S", time.localtime(r["down_until"]))
            status = MESSAGES.both("down", until=until, reason=r["down_reason"])
        else:
            status = MESSAGES.both("up")
        click.echo(f"  {r['name']:<12} {r['url']}  weight {r['weight']}  today {quota}  {status}")
    for p in data["providers"]:
        if p["state"] != "normal":
            left = f", {p['seconds_left']} s" if p["seconds_left"] else ""
            click.echo(
                "  "
                + MESSAGES.both(
                    "throttle",
                    provider=p["provider"],
                    state=p["state"],
                    speed=p["speed"],
                    left=left,
                )
            )
    w = data["warmup"]
    if w["warm"]:
        click.echo(MESSAGES.both("warm", domain=w["domain"]))
    else:
        click.echo(
            MESSAGES.both(
                "warmup",
                domain=w["domain"],
                day=w["day_number"],
                allowance=w["allowance"],
                used=w["used"],
                reason=w["reason"],
            )
        )


@click.command("providers")
@json_option
def providers_cmd(as_json: bool) -> None:
    """Receiving providers, their limits and throttle replies / 接收服务商与限速规则."""
    emit(providers_view(settings_or_exit()), as_json, _print_providers)


@click.group("relays")
def relays_group() -> None:
    """SMTP relays: quotas, failover, warm-up / SMTP 中继."""


@relays_group.command("status")
@json_option
def relays_status(as_json: bool) -> None:
    """Relays, today's quota use, provider throttles, warm-up / 中继状态、配额、预热."""
    emit(relays_view(settings_or_exit()), as_json, _print_relays)


def register(main: click.Group) -> None:
    main.add_command(providers_cmd)
    main.add_command(relays_group)
