"""Does an address's domain accept mail? One MX lookup (falling back to A/AAAA, RFC 5321 §5)
so the public form can say "this domain has no mail server" instead of accepting an address
that bounces at send time. DNS that does not answer is not a verdict: the address passes.
"""

from __future__ import annotations

import threading
import time

import dns.exception
import dns.resolver

from dispatch.config import Settings

CACHE_SECONDS = 600
_cache: dict[tuple[str, str], tuple[bool | None, float]] = {}
_lock = threading.Lock()


def _resolver(settings: Settings) -> dns.resolver.Resolver:
    """The same nameservers as `dispatch doctor` (setting dns_nameservers), short timeout."""
    from dispatch.deliverability.dns import parse_nameservers

    servers = parse_nameservers(settings.dns_nameservers)
    if not servers:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host for host, _port in servers]
        resolver.port = servers[0][1]
    resolver.lifetime = resolver.timeout = min(settings.dns_timeout, 2.0)
    return resolver


def _lookup(settings: Settings, domain: str) -> bool | None:
    resolver = _resolver(settings)
    try:
        answer = resolver.resolve(domain, "MX")
        # a "null MX" (RFC 7505: preference 0, exchange ".") says: no mail here
        return any(str(r.exchange) not in (".", "") for r in answer)
    except dns.resolver.NXDOMAIN:
        return False
    except dns.resolver.NoAnswer:
        pass
    except (dns.exception.Timeout, dns.resolver.NoNameservers):
        return None
    for kind in ("A", "AAAA"):
        try:
            resolver.resolve(domain, kind)
            return True
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except (dns.exception.Timeout, dns.resolver.NoNameservers):
            return None
    return False


def known(settings: Settings, domain: str) -> bool:
    """Whether accepts_mail would answer from its cache (without asking DNS)."""
    hit = _cache.get((settings.dns_nameservers, domain.lower()))
    return hit is not None and hit[1] > time.monotonic()


def accepts_mail(settings: Settings, domain: str) -> bool | None:
    """True / False, or None when DNS could not tell (cached for ten minutes)."""
    key = (settings.dns_nameservers, domain.lower())
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
    verdict = _lookup(settings, domain)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = (verdict, now + CACHE_SECONDS)
    return verdict
