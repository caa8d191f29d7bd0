"""SMTP relays: several, each with its weight, quotas and limits, chosen per batch and failed over.

Settings `[[relays]]` (TOML array of tables, or DISPATCH_RELAYS as JSON), one table per relay:

    name = "aliyun"                        # unique; shown in status and logs
    url = "smtps://smtpdm.aliyun.com:465"  # smtp:// (?starttls=1) or smtps://, no credentials
    username = "bulletin@mail.example.org"
    password_env = "ALIYUN_SMTP_PASSWORD"  # the password is read from this environment variable
    weight = 3                             # share of traffic among relays with room
    max_connections = 4                    # open connections across all workers (0: no cap)
    rate_per_second = 27                   # 0: no limit
    rate_per_hour = 0
    daily_quota = 10000                    # messages a day (send_timezone); 0: no quota
    from_domains = ["example.org"]         # From domains it may carry; empty: any
    providers = []                         # recipient providers it carries; empty: any
    allow_invalid_certificate = false      # never true in production: TLS unverified

With no [[relays]], `smtp_url` / `smtp_username` / `smtp_password` form the single relay
"default" (the embedded outbox when smtp_url is empty).

Shared state (Redis when configured, else in-process): a relay that failed to connect or
refused our sender is "down" for relay_down_seconds; connection slots; quotas are counted by
dispatch.delivery.quota (Redis + database).
"""

from __future__ import annotations

import os
import random
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from dispatch.config import ConfigError, Settings
from dispatch.delivery.ratelimit import Limit
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "bad": ("中继 {relay}：{field} {why}", "relay {relay}: {field} {why}"),
        "dup": ("中继名称 {relay!r} 重复", "relay name {relay!r} is used twice"),
        "unknown": (
            "中继 {relay}：未知字段 {field!r}（可用：{known}）",
            "relay {relay}: unknown field {field!r} (known: {known})",
        ),
        "no_password": (
            "中继 {relay}：环境变量 {env} 未设置（password_env）",
            "relay {relay}: environment variable {env} is not set (password_env)",
        ),
    }
)

_FIELDS = {
    "name",
    "url",
    "username",
    "password_env",
    "weight",
    "max_connections",
    "rate_per_second",
    "rate_per_hour",
    "daily_quota",
    "from_domains",
    "providers",
    "allow_invalid_certificate",
}
DEFAULT_RELAY = "default"


@dataclass(frozen=True)
class Relay:
    name: str
    url: str
    host: str
    port: int
    security: Literal["plain", "starttls", "tls"]
    username: str = ""
    password: str = field(default="", repr=False)
    weight: int = 1
    max_connections: int = 0
    rate_per_second: float = 0.0
    rate_per_hour: float = 0.0
    daily_quota: int = 0
    from_domains: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    allow_invalid_certificate: bool = False
    cafile: str | None = None

    def carries(self, from_domain: str, provider: str) -> bool:
        """May this relay carry mail from `from_domain` to a recipient of `provider`?"""
        if self.from_domains and from_domain.lower() not in self.from_domains:
            return False
        return not self.providers or provider in self.providers

    def ssl_context(self) -> ssl.SSLContext:
        """Verified TLS unless this relay explicitly allows an invalid certificate."""
        ctx = ssl.create_default_context(cafile=self.cafile)
        if self.allow_invalid_certificate:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    @property
    def limit(self) -> Limit:
        return Limit(f"relay:{self.name}", self.rate_per_second, self.rate_per_hour)

    def public(self) -> dict[str, Any]:
        """What status pages may show (no credentials)."""
        return {
            "name": self.name,
            "url": self.url,
            "username": self.username,
            "weight": self.weight,
            "max_connections": self.max_connections,
            "rate_per_second": self.rate_per_second,
            "rate_per_hour": self.rate_per_hour,
            "daily_quota": self.daily_quota,
            "from_domains": list(self.from_domains),
            "providers": list(self.providers),
            "allow_invalid_certificate": self.allow_invalid_certificate,
        }


def parse_relay_url(url: str, relay: str = DEFAULT_RELAY) -> tuple[str, int, str, str | None, bool]:
    """(host, port, security, cafile, verify) of smtp://host:port[?starttls=1] or smtps://…;
    ConfigError naming the relay and what is wrong."""

    def bad(why: str) -> ConfigError:
        shown = url if "@" not in url else url.split("//", 1)[0] + "//***@" + url.split("@", 1)[1]
        return ConfigError(MESSAGES.both("bad", relay=relay, field=f"url {shown!r}", why=why))

    if not isinstance(url, str) or not url:
        raise bad("is missing")
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise bad("must start with smtp:// or smtps://")
    if parts.username or parts.password:
        raise bad("must not contain credentials (use username / password_env)")
    if not parts.hostname:
        raise bad("has no host")
    try:
        port = parts.port
    except ValueError:
        raise bad("has a port that is not a number from 1 to 65535") from None
    if port is not None and not 1 <= port <= 65535:
        raise bad("has a port that is not a number from 1 to 65535")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    starttls = query.get("starttls", "0").lower() in ("1", "true", "yes", "on")
    security = "tls" if parts.scheme == "smtps" else "starttls" if starttls else "plain"
    verify = query.get("verify", "1").lower() not in ("0", "false", "no", "off")
    cafile = unquote(query["cafile"]) if query.get("cafile") else None
    default_port = 465 if security == "tls" else 587 if starttls else 25
    return parts.hostname, port or default_port, security, cafile, verify


def _relay_from(spec: Any, index: int, env: dict[str, str]) -> Relay:
    if not isinstance(spec, dict):
        raise ConfigError(
            MESSAGES.both("bad", relay=f"#{index + 1}", field="entry", why="must be a table")
        )
    name = spec.get("name")
    label = name if isinstance(name, str) and name else f"#{index + 1}"
    for key in spec:
        if key not in _FIELDS:
            raise ConfigError(
                MESSAGES.both("unknown", relay=label, field=key, known=", ".join(sorted(_FIELDS)))
            )
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(MESSAGES.both("bad", relay=label, field="name", why="is missing"))
    host, port, security, cafile, verify = parse_relay_url(spec.get("url", ""), label)
    allow_invalid = _certificate_choice(spec, label, verify)
    username, password = _credentials(spec, label, env)
    return Relay(
        name=name.strip(),
        url=spec["url"],
        host=host,
        port=port,
        security=security,  # type: ignore[arg-type]
        username=username,
        password=password,
        weight=int(_number(spec, label, "weight", integer=True, minimum=1)),
        max_connections=int(_number(spec, label, "max_connections", integer=True)),
        rate_per_second=float(_number(spec, label, "rate_per_second")),
        rate_per_hour=float(_number(spec, label, "rate_per_hour")),
        daily_quota=int(_number(spec, label, "daily_quota", integer=True)),
        from_domains=_strings(spec, label, "from_domains"),
        providers=_strings(spec, label, "providers"),
        allow_invalid_certificate=allow_invalid,
        cafile=cafile,
    )


def _number(
    spec: dict[str, Any], label: str, key: str, *, integer: bool = False, minimum: float = 0
) -> float:
    """A numeric field of a relay (weight defaults to 1, the others to 0)."""
    value = spec.get(key, 0 if key != "weight" else 1)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= minimum
    if ok and integer and not float(value).is_integer():
        ok = False
    if not ok:
        why = f"must be {'an integer' if integer else 'a number'} >= {minimum:g}"
        raise ConfigError(MESSAGES.both("bad", relay=label, field=key, why=why))
    return value


def _strings(spec: dict[str, Any], label: str, key: str) -> tuple[str, ...]:
    """A list-of-strings field of a relay, trimmed and lower-cased."""
    value = spec.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(
            MESSAGES.both("bad", relay=label, field=key, why="must be a list of strings")
        )
    return tuple(v.strip().lower() for v in value)


def _certificate_choice(spec: dict[str, Any], label: str, verify: bool) -> bool:
    """allow_invalid_certificate, required to be true when the URL turns checks off."""
    allow_invalid = spec.get("allow_invalid_certificate", False)
    if not isinstance(allow_invalid, bool):
        raise ConfigError(
            MESSAGES.both(
                "bad", relay=label, field="allow_invalid_certificate", why="must be true or false"
            )
        )
    if not verify and not allow_invalid:
        raise ConfigError(
            MESSAGES.both(
                "bad",
                relay=label,
                field="url",
                why="turns certificate checks off (verify=0): set allow_invalid_certificate = true "
                "if you really mean it",
            )
        )
    return allow_invalid


def _credentials(spec: dict[str, Any], label: str, env: dict[str, str]) -> tuple[str, str]:
    """(username, password); the password only from the environment variable it names."""
    password = ""
    password_env = spec.get("password_env", "")
    if password_env:
        if not isinstance(password_env, str) or password_env not in env:
            raise ConfigError(MESSAGES.both("no_password", relay=label, env=password_env))
        password = env[password_env]
    username = spec.get("username", "")
    if not isinstance(username, str):
        raise ConfigError(MESSAGES.both("bad", relay=label, field="username", why="must be text"))
    return username, password


def parse_relays(settings: Settings, env: dict[str, str] | None = None) -> list[Relay]:
    """The relays in effect, validated (ConfigError names the relay and the field)."""
    env = dict(os.environ if env is None else env)
    if not settings.relays:
        url = settings.smtp_url
        if not url:  # the embedded outbox: the channel finds (or starts) it when it connects
            return [Relay(name=DEFAULT_RELAY, url="", host="", port=0, security="plain")]
        host, port, security, cafile, verify = parse_relay_url(url, DEFAULT_RELAY)
        return [
            Relay(
                name=DEFAULT_RELAY,
                url=url,
                host=host,
                port=port,
                security=security,  # type: ignore[arg-type]
                username=settings.smtp_username,
                password=settings.smtp_password,
                allow_invalid_certificate=not verify,
                cafile=cafile,
            )
        ]
    if not isinstance(settings.relays, list):
        raise ConfigError(
            MESSAGES.both("bad", relay="*", field="relays", why="must be a list of tables")
        )
    relays = [_relay_from(spec, i, env) for i, spec in enumerate(settings.relays)]
    seen: set[str] = set()
    for relay in relays:
        if relay.name in seen:
            raise ConfigError(MESSAGES.both("dup", relay=relay.name))
        seen.add(relay.name)
    return relays


# ---------------------------------------------------------------------------------------------
# Shared state: down marks and connection slots (Redis, or this process)
# ---------------------------------------------------------------------------------------------


class RelayState:
    """Which relays are down and how many connections each holds, shared by all workers."""

    def __init__(self, redis_client: Any = None, prefix: str = "dispatch:", clock=time.time):
        self.redis = redis_client
        self.prefix = prefix
        self.clock = clock
        self._down: dict[str, tuple[float, str]] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    # down marks ----------------------------------------------------------------------------

    def mark_down(self, name: str, seconds: float, reason: str) -> None:
        until = self.clock() + seconds
        if self.redis is not None:
            key = f"{self.prefix}relay:down:{name}"
            self.redis.set(key, f"{until}|{reason[:300]}", px=max(int(seconds * 1000), 1))
            return
        with self._lock:
            self._down[name] = (until, reason)

    def down_until(self, name: str) -> tuple[float, str] | None:
        """(epoch until, reason) while the relay rests, else None."""
        if self.redis is not None:
            value = self.redis.get(f"{self.prefix}relay:down:{name}")
            if not value:
                return None
            until, _, reason = value.decode("utf-8", "replace").partition("|")
            return float(until), reason
        with self._lock:
            entry = self._down.get(name)
        if entry and entry[0] > self.clock():
            return entry
        return None

    def mark_up(self, name: str) -> None:
        if self.redis is not None:
            self.redis.delete(f"{self.prefix}relay:down:{name}")
        with self._lock:
            self._down.pop(name, None)

    # connection slots ------------------------------------------------------------------------

    _TAKE = """
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
    if tonumber(ARGV[3]) > 0 and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
      return 0
    end
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
    redis.call('EXPIRE', KEYS[1], 86400)
    return 1
    """

    def take_slot(self, scope: str, cap: int, lease_seconds: float) -> str | None:
        """A connection slot of `scope` ("relay:x", "provider:y") or None when all are taken;
        slots expire after lease_seconds so a dead worker's slot comes back."""
        token = uuid.uuid4().hex
        now = self.clock()
        if cap <= 0:
            return token
        if self.redis is not None:
            ok = self.redis.eval(
                self._TAKE,
                1,
                f"{self.prefix}slots:{scope}",
                now,
                now + lease_seconds,
                cap,
                token,
            )
            return token if int(ok) else None
        with self._lock:
            held = {k: v for k, v in self._slots.get(scope, {}).items() if v > now}
            if len(held) >= cap:
                self._slots[scope] = held
                return None
            held[token] = now + lease_seconds
            self._slots[scope] = held
        return token

    def free_slot(self, scope: str, token: str | None) -> None:
        if token is None:
            return
        if self.redis is not None:
            self.redis.zrem(f"{self.prefix}slots:{scope}", token)
            return
        with self._lock:
            self._slots.get(scope, {}).pop(token, None)


_local_state = RelayState()


def relay_state(settings: Settings, redis_client: Any = None) -> RelayState:
    if redis_client is None and settings.redis_url:
        redis_client = redis_for(settings)
    if redis_client is None:
        return _local_state
    return RelayState(redis_client, settings.redis_key_prefix or "dispatch:")


_clients: dict[str, Any] = {}


def redis_for(settings: Settings) -> Any:
    """One Redis client per URL per process (None without redis_url)."""
    if not settings.redis_url:
        return None
    client = _clients.get(settings.redis_url)
    if client is None:
        import redis

        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=5
        )
        _clients[settings.redis_url] = client
    return client


def pick_relay(candidates: Sequence[Relay], rng: random.Random | None = None) -> Relay | None:
    """One relay chosen by weight among `candidates` (those with room), or None."""
    if not candidates:
        return None
    total = sum(r.weight for r in candidates)
    point = (rng or random).uniform(0, total)
    for relay in candidates:
        point -= relay.weight
        if point <= 0:
            return relay
    return candidates[-1]


def check_sending_settings(settings: Settings) -> None:
    """Relays, provider table, window and time zone usable? Raises ConfigError /
    ProviderTableError naming the setting (or file:line); called when a worker starts."""
    from dispatch.delivery.providers import check_providers
    from dispatch.delivery.windows import WindowError, check_zone, parse_window

    parse_relays(settings)
    check_providers(settings)
    try:
        check_zone(settings.send_timezone)
        parse_window(settings.send_window, settings.send_timezone)
    except WindowError as exc:
        raise ConfigError(str(exc)) from None
