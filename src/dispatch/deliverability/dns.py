"""DNS questions for the doctor, through dnspython, with every failure named for what it is.

Why a wrapper: the doctor must report "no such record", "the domain does not exist" and "the
DNS server did not answer" differently (the first is something to publish, the last is
something to retry), and must never crash on any of them. `dns_nameservers` points the
resolver at a chosen server (tests run dnsmasq on a loopback port).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.resolver
import dns.reversename

from dispatch.config import ConfigError, Settings


class LookupFailed(Exception):
    """A DNS question that got no usable answer: `kind` is nxdomain, nodata, timeout or error."""

    def __init__(self, kind: str, name: str, rtype: str, detail: str = "", seconds: float = 0.0):
        self.kind, self.name, self.rtype, self.detail = kind, name, rtype, detail
        self.seconds = seconds
        super().__init__(f"{rtype} {name}: {kind}" + (f" ({detail})" if detail else ""))


def parse_nameservers(value: str) -> list[tuple[str, int]]:
    """'127.0.0.1:5353, ::1' -> [('127.0.0.1', 5353), ('::1', 53)]; ConfigError when malformed."""
    servers: list[tuple[str, int]] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        host, port = item, 53
        if item.startswith("["):  # [v6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.lstrip(":") or "53"
        elif item.count(":") == 1:
            host, port_text = item.split(":")
        else:
            port_text = "53"
        try:
            ipaddress.ip_address(host)
            port = int(port_text)
            if not 0 < port < 65536:
                raise ValueError(port)
        except ValueError:
            raise ConfigError(
                f"setting 'dns_nameservers': {item!r} is not an IP address with an optional port"
            ) from None
        servers.append((host, port))
    return servers


@dataclass
class Resolver:
    """A dnspython resolver plus a count of the questions asked (for the report)."""

    nameservers: list[tuple[str, int]] = field(default_factory=list)
    timeout: float = 3.0
    questions: int = 0

    def __post_init__(self) -> None:
        if self.nameservers:
            self._resolver = dns.resolver.Resolver(configure=False)
            self._resolver.nameservers = [host for host, _ in self.nameservers]
            self._resolver.port = self.nameservers[0][1]
        else:
            self._resolver = dns.resolver.Resolver()
        self._resolver.lifetime = self.timeout
        self._resolver.timeout = self.timeout
        self._cache: dict[tuple[str, str], list | LookupFailed] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Resolver:
        return cls(parse_nameservers(settings.dns_nameservers), settings.dns_timeout)

    def query(self, name: str, rtype: str) -> list:
        """The answer's rdata list; raises LookupFailed (cached, so a name is asked once)."""
        key = (name.lower().rstrip("."), rtype)
        cached = self._cache.get(key)
        if isinstance(cached, LookupFailed):
            raise cached
        if cached is not None:
            return cached
        self.questions += 1
        try:
            answer = self._resolver.resolve(name, rtype, raise_on_no_answer=True, search=False)
            result: list | LookupFailed = list(answer)
        except dns.resolver.NXDOMAIN:
            result = LookupFailed("nxdomain", name, rtype)
        except dns.resolver.NoAnswer:
            result = LookupFailed("nodata", name, rtype)
        except (dns.exception.Timeout, dns.resolver.LifetimeTimeout):
            result = LookupFailed(
                "timeout", name, rtype, f"no answer within {self.timeout:g} s", self.timeout
            )
        except dns.resolver.NoNameservers as exc:
            result = LookupFailed("error", name, rtype, f"server failure: {exc}")
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            result = LookupFailed("error", name, rtype, f"{type(exc).__name__}: {exc}")
        self._cache[key] = result
        if isinstance(result, LookupFailed):
            raise result
        return result

    def txt(self, name: str) -> list[str]:
        """TXT records as strings (the character-strings of each record joined, RFC 7208 3.3)."""
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.query(name, "TXT")]

    def txt_or_empty(self, name: str) -> list[str]:
        """TXT records, or [] when the name or the record does not exist (timeouts still raise)."""
        try:
            return self.txt(name)
        except LookupFailed as exc:
            if exc.kind in ("nxdomain", "nodata"):
                return []
            raise

    def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of `name` ([] when it has none; timeouts raise)."""
        found: list[str] = []
        for rtype in ("A", "AAAA"):
            try:
                found += [r.address for r in self.query(name, rtype)]
            except LookupFailed as exc:
                if exc.kind not in ("nxdomain", "nodata"):
                    raise
        return found

    def mx(self, name: str) -> list[tuple[int, str]]:
        """(preference, host) pairs, best first."""
        records = self.query(name, "MX")
        return sorted((r.preference, r.exchange.to_text().rstrip(".")) for r in records)

    def ptr(self, address: str) -> list[str]:
        name = dns.reversename.from_address(address).to_text()
        return [r.target.to_text().rstrip(".") for r in self.query(name, "PTR")]


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
