"""Receiving providers: the shipped table (providers.toml) mapping recipient domains to QQ,
NetEase, Gmail…, each with its own rate, connection cap and reply rules.

Why a data file: limits and throttle replies change more often than code, and an operator
must be able to read and override them (setting `providers_file`) without a release. A bad
file stops the service at start with `file:line: problem`, never half-applies.

Domains not in the table are looked up by MX (an institution hosted by Tencent Exmail is QQ
for throttling purposes); the answer is cached per process and, with Redis, across workers.
Anything still unknown is the provider "other" (no provider limits, generic reply rules).
"""

from __future__ import annotations

import re
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.log import get_logger

log = get_logger(__name__)

SHIPPED_TABLE = Path(__file__).with_name("providers.toml")
OTHER = "other"
REPLY_KINDS = ("throttle", "sender", "deferred", "bounced", "failed")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_FIELDS = {
    "label",
    "domains",
    "mx",
    "rate_per_second",
    "rate_per_hour",
    "max_connections",
    "replies",
}
_REPLY_FIELDS = {"pattern", "kind", "meaning", "source"}

MESSAGES = Catalog(
    {
        "missing": ("找不到服务商表文件", "provider table file not found"),
        "syntax": ("TOML 语法错误：{error}", "TOML syntax error: {error}"),
        "no_table": ("缺少 [providers.<名称>] 表", "no [providers.<name>] table"),
        "bad_name": (
            "服务商名称 {name!r} 无效（小写字母、数字、-、_）",
            "provider name {name!r} is invalid (lower-case letters, digits, - and _)",
        ),
        "unknown_field": (
            "服务商 {name}：未知字段 {field!r}（可用：{known}）",
            "provider {name}: unknown field {field!r} (known: {known})",
        ),
        "bad_field": (
            "服务商 {name}：字段 {field!r} {why}",
            "provider {name}: field {field!r} {why}",
        ),
        "bad_reply": (
            "服务商 {name} 第 {index} 条回复规则：{why}",
            "provider {name}, reply rule {index}: {why}",
        ),
        "dup_domain": (
            "域名 {domain} 同时属于 {first} 和 {second}",
            "domain {domain} belongs to both {first} and {second}",
        ),
    }
)


class ProviderTableError(ValueError):
    """The provider table cannot be used; str() is `file:line: problem`."""

    def __init__(self, path: Path | str, line: int | None, message: str):
        self.path, self.line, self.message = str(path), line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


@dataclass(frozen=True)
class ReplyRule:
    """One provider reply and what it means for us."""

    pattern: str
    kind: str
    meaning: str = ""
    source: str = ""
    regex: re.Pattern[str] = field(default=re.compile(""), compare=False, repr=False)

    def matches(self, code: int | None, text: str) -> bool:
        return bool(self.regex.search(f"{code or ''} {text}".strip()))


@dataclass(frozen=True)
class Provider:
    name: str
    label: str = ""
    domains: tuple[str, ...] = ()
    mx: tuple[str, ...] = ()
    rate_per_second: float = 0.0
    rate_per_hour: float = 0.0
    max_connections: int = 0
    replies: tuple[ReplyRule, ...] = ()

    def rule_for(self, code: int | None, text: str) -> ReplyRule | None:
        """The first of this provider's reply rules matching the reply, if any."""
        for rule in self.replies:
            if rule.matches(code, text):
                return rule
        return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "domains": list(self.domains),
            "mx": list(self.mx),
            "rate_per_second": self.rate_per_second,
            "rate_per_hour": self.rate_per_hour,
            "max_connections": self.max_connections,
            "replies": [
                {"pattern": r.pattern, "kind": r.kind, "meaning": r.meaning, "source": r.source}
                for r in self.replies
            ],
        }


@dataclass(frozen=True)
class ProviderTable:
    providers: dict[str, Provider]
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        by_domain: dict[str, str] = {}
        for p in self.providers.values():
            for d in p.domains:
                by_domain[d] = p.name
        object.__setattr__(self, "_by_domain", by_domain)

    def get(self, name: str | None) -> Provider:
        """The provider called `name`; unknown names (and None) are "other"."""
        return self.providers.get(name or OTHER) or Provider(OTHER, label="other / 其他")

    def by_domain(self, domain: str) -> str | None:
        return self._by_domain.get(domain.lower().rstrip("."))  # type: ignore[attr-defined]

    def by_mx(self, mx_hosts: Iterable[str]) -> str | None:
        for host in mx_hosts:
            host = "." + host.lower().rstrip(".")
            for p in self.providers.values():
                if any(host.endswith(suffix) for suffix in p.mx):
                    return p.name
        return None

    def known_domains(self) -> dict[str, str]:
        return dict(self._by_domain)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Loading, with the line of every problem
# ---------------------------------------------------------------------------------------------


def _line_of(text: str, name: str, key: str | None = None, reply: int | None = None) -> int | None:
    """The line of `[providers.name]` (or of its `key = …`, or of its reply rule number)."""
    lines = text.splitlines()
    header = re.compile(rf"^\s*\[\s*providers\.{re.escape(name)}\s*\]")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if reply is not None:
        rule_header = re.compile(rf"^\s*\[\[\s*providers\.{re.escape(name)}\.replies\s*\]\]")
        seen = 0
        for i, line in enumerate(lines):
            if rule_header.match(line):
                seen += 1
                if seen == reply:
                    if key is None:
                        return i + 1
                    for j in range(i + 1, len(lines)):
                        if lines[j].lstrip().startswith("["):
                            break
                        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[j]):
                            return j + 1
                    return i + 1
        return start + 1 if start is not None else None
    if start is None:
        return None
    if key is None:
        return start + 1
    for j in range(start + 1, len(lines)):
        if lines[j].lstrip().startswith("["):
            break
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[j]):
            return j + 1
    return start + 1


def _syntax_line(error: str, text: str = "") -> int | None:
    match = re.search(r"at line (\d+)", error)
    if match:
        return int(match[1])
    if "end of document" in error and text:
        return max(len(text.splitlines()), 1)
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def parse_table(text: str, path: Path | str = "<providers>") -> dict[str, Provider]:
    """Parse and validate one provider table file's text; ProviderTableError on any problem."""
    raw = _providers_section(text, path)
    out = {name: _parse_provider(text, path, name, spec) for name, spec in raw.items()}
    _check_unique_domains(text, path, out)
    return out


def _providers_section(text: str, path: Path | str) -> dict[str, Any]:
    """The `[providers]` table of the file: valid TOML with nothing else at the top."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProviderTableError(
            path, _syntax_line(str(exc), text), MESSAGES.both("syntax", error=exc)
        ) from None
    unknown_top = set(data) - {"providers"}
    if unknown_top:
        key = sorted(unknown_top)[0]
        line = next(
            (i + 1 for i, ln in enumerate(text.splitlines()) if re.match(rf"^\s*\[?{key}\b", ln)),
            None,
        )
        raise ProviderTableError(path, line, MESSAGES.both("no_table"))
    raw = data.get("providers")
    if not isinstance(raw, dict):
        raise ProviderTableError(path, None, MESSAGES.both("no_table"))
    return raw


class _ProviderErrors:
    """Builds the errors of one provider's section, each with the line it points at."""

    def __init__(self, text: str, path: Path | str, name: str):
        self.text, self.path, self.name = text, path, name

    def __call__(
        self, key: str | None, message: str, reply: int | None = None
    ) -> ProviderTableError:
        return ProviderTableError(self.path, _line_of(self.text, self.name, key, reply), message)

    def field(self, key: str, why: str) -> ProviderTableError:
        return self(key, MESSAGES.both("bad_field", name=self.name, field=key, why=why))

    def rule(self, index: int, key: str | None, why: str) -> ProviderTableError:
        return self(key, MESSAGES.both("bad_reply", name=self.name, index=index, why=why), index)


def _parse_provider(text: str, path: Path | str, name: str, spec: Any) -> Provider:
    """One `[providers.<name>]` section, checked field by field."""
    bad = _ProviderErrors(text, path, name)
    if not _NAME.match(name) or not isinstance(spec, dict):
        raise bad(None, MESSAGES.both("bad_name", name=name))
    for key in spec:
        if key not in _FIELDS:
            raise bad(
                key,
                MESSAGES.both(
                    "unknown_field", name=name, field=key, known=", ".join(sorted(_FIELDS))
                ),
            )
    domains = _strings(bad, spec, "domains")
    mx = tuple(m if m.startswith(".") else "." + m for m in _strings(bad, spec, "mx"))
    for key in ("rate_per_second", "rate_per_hour", "max_connections"):
        if key in spec and not _number(spec[key]):
            raise bad.field(key, "must be a number >= 0")
    if "max_connections" in spec and not isinstance(spec["max_connections"], int):
        raise bad.field("max_connections", "must be an integer")
    label = spec.get("label", name)
    if not isinstance(label, str):
        raise bad.field("label", "must be text")
    rules_raw = spec.get("replies", [])
    if not isinstance(rules_raw, list):
        raise bad.field("replies", "must be [[providers.<name>.replies]] tables")
    rules = [_parse_rule(bad, index, rule) for index, rule in enumerate(rules_raw, start=1)]
    return Provider(
        name=name,
        label=label,
        domains=domains,
        mx=mx,
        rate_per_second=float(spec.get("rate_per_second", 0)),
        rate_per_hour=float(spec.get("rate_per_hour", 0)),
        max_connections=int(spec.get("max_connections", 0)),
        replies=tuple(rules),
    )


def _strings(bad: _ProviderErrors, spec: dict, key: str) -> tuple[str, ...]:
    """A list-of-strings field, trimmed and lower-cased (empty when absent)."""
    value = spec.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise bad.field(key, "must be a list of strings")
    return tuple(v.strip().lower() for v in value)


def _parse_rule(bad: _ProviderErrors, index: int, rule: Any) -> ReplyRule:
    """One `[[providers.<name>.replies]]` rule (numbered from 1 in errors)."""
    if not isinstance(rule, dict):
        raise bad.rule(index, None, "must be a table")
    for key in rule:
        if key not in _REPLY_FIELDS:
            raise bad.rule(index, key, f"unknown field {key!r}")
    pattern = rule.get("pattern")
    if not isinstance(pattern, str) or not pattern:
        raise bad.rule(index, "pattern", "pattern is missing")
    try:
        regex = re.compile(pattern, re.I)
    except re.error as exc:
        raise bad.rule(
            index, "pattern", f"pattern is not a valid regular expression: {exc}"
        ) from None
    kind = rule.get("kind")
    if kind not in REPLY_KINDS:
        raise bad.rule(index, "kind", f"kind must be one of {', '.join(REPLY_KINDS)}")
    return ReplyRule(
        pattern=pattern,
        kind=kind,
        meaning=str(rule.get("meaning", "")),
        source=str(rule.get("source", "")),
        regex=regex,
    )


def _check_unique_domains(text: str, path: Path | str, providers: dict[str, Provider]) -> None:
    """A domain belongs to one provider only."""
    seen: dict[str, str] = {}
    for p in providers.values():
        for d in p.domains:
            if d in seen and seen[d] != p.name:
                raise ProviderTableError(
                    path,
                    _line_of(text, p.name, "domains"),
                    MESSAGES.both("dup_domain", domain=d, first=seen[d], second=p.name),
                )
            seen[d] = p.name


def read_table_file(path: Path) -> dict[str, Provider]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProviderTableError(path, None, MESSAGES.both("missing")) from None
    except UnicodeDecodeError as exc:
        raise ProviderTableError(path, None, f"not UTF-8: {exc}") from None
    return parse_table(text, path)


@lru_cache(maxsize=8)
def _load(override: str) -> ProviderTable:
    providers = read_table_file(SHIPPED_TABLE)
    sources = [str(SHIPPED_TABLE)]
    if override:
        path = Path(override)
        extra = read_table_file(path)
        given = tomllib.loads(path.read_text(encoding="utf-8"))["providers"]
        # an operator's entry changes the fields it names (a new name is a new provider);
        # domains it claims leave the other providers
        moved = {d for p in extra.values() for d in p.domains}
        for name, p in list(providers.items()):
            if name not in extra and moved & set(p.domains):
                providers[name] = replace(p, domains=tuple(d for d in p.domains if d not in moved))
        for name, p in extra.items():
            base = providers.get(name)
            if base is None:
                providers[name] = p
            else:
                providers[name] = replace(base, **{k: getattr(p, k) for k in given[name]})
        sources.append(override)
    return ProviderTable(providers, tuple(sources))


def load_providers(settings: Settings) -> ProviderTable:
    """The table in effect (shipped + `providers_file`); cached per file name."""
    return _load(str(getattr(settings, "providers_file", "") or ""))


def check_providers(settings: Settings) -> None:
    """Fail early (workers, web, CLI at start) with the file and line of a bad table."""
    _load.cache_clear()
    load_providers(settings)


# ---------------------------------------------------------------------------------------------
# Which provider a recipient domain belongs to
# ---------------------------------------------------------------------------------------------

MxLookup = Callable[[str], Sequence[str]]
MX_CACHE_SECONDS = 24 * 3600.0
_mx_cache: dict[str, tuple[str, float]] = {}
_mx_lock = threading.Lock()


def dns_mx_lookup(settings: Settings) -> MxLookup:
    """MX host names of a domain, best first, through the doctor's resolver (setting
    `dns_nameservers` points it at a given server; tests use dnsmasq on loopback)."""
    from dispatch.deliverability.dns import LookupFailed, Resolver

    resolver = Resolver.from_settings(settings)

    def lookup(domain: str) -> Sequence[str]:
        try:
            answer = resolver.query(domain, "MX")
        except LookupFailed:
            return []
        return [str(r.exchange).rstrip(".") for r in sorted(answer, key=lambda r: r.preference)]

    return lookup


def provider_for_domains(
    settings: Settings,
    domains: Iterable[str],
    *,
    table: ProviderTable | None = None,
    mx_lookup: MxLookup | None = None,
    redis_client: Any = None,
    now: float | None = None,
    budget_seconds: float | None = None,
) -> dict[str, str]:
    """domain -> provider name for each domain: the table first, then MX (cached a day).

    `budget_seconds` bounds the time spent asking DNS (fan-out runs in a transaction): once
    it is spent, the domains not yet looked up are "other" for this campaign (not cached)."""
    started = time.monotonic()
    table = table or load_providers(settings)
    now = time.time() if now is None else now
    out: dict[str, str] = {}
    unknown: list[str] = []
    for raw in domains:
        domain = raw.lower().rstrip(".")
        name = table.by_domain(domain)
        if name:
            out[raw] = name
        else:
            unknown.append(raw)
    if not unknown or not settings.provider_mx_lookup:
        out.update(dict.fromkeys(unknown, OTHER))
        return out
    prefix = f"{settings.redis_key_prefix or 'dispatch:'}mxprovider:"
    lookup = mx_lookup or dns_mx_lookup(settings)
    for raw in unknown:
        domain = raw.lower().rstrip(".")
        with _mx_lock:
            cached = _mx_cache.get(domain)
        if cached and cached[1] > now:
            out[raw] = cached[0]
            continue
        name = None
        if redis_client is not None:
            try:
                value = redis_client.get(prefix + domain)
                name = value.decode() if value else None
            except Exception:  # noqa: BLE001 - a cache, not a source of truth
                name = None
        if name is None and budget_seconds is not None:
            if time.monotonic() - started > budget_seconds:
                out[raw] = OTHER  # out of time: not cached, the next campaign asks again
                continue
        if name is None:
            name = table.by_mx(lookup(domain)) or OTHER
            if redis_client is not None:
                try:
                    redis_client.set(prefix + domain, name, ex=int(MX_CACHE_SECONDS))
                except Exception:  # noqa: BLE001
                    pass
        with _mx_lock:
            _mx_cache[domain] = (name, now + MX_CACHE_SECONDS)
        out[raw] = name
    return out


def domain_of(address: str | None) -> str:
    return (address or "").rpartition("@")[2].lower().rstrip(".")
