"""SPF, DMARC and DKIM key records: parsed and judged by what their RFCs call invalid.

- SPF (RFC 7208): exactly one "v=spf1" record (4.5: two are a permerror), known mechanisms
  only (4.6.1), at most one redirect= (6), at most 10 terms that cause DNS lookups (include,
  a, mx, ptr, exists, redirect; 4.6.4), counted through includes and redirects.
- DMARC (RFC 7489 6.3/6.4): "v=DMARC1" first, "p=" right after it, tag=value pairs separated
  by ";", p/sp in none|quarantine|reject, adkim/aspf in r|s, pct 0-100, rua/ruf URIs.
- DKIM key (RFC 6376 3.6.1): tag list with p= holding a base64 SubjectPublicKeyInfo (or, for
  k=ed25519, the raw 32-byte key, RFC 8463); a truncated key does not parse and says so.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from dispatch.deliverability.dns import LookupFailed, Resolver

MAX_SPF_LOOKUPS = 10
MAX_SPF_VOID_LOOKUPS = 2
SPF_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
SPF_LOOKUP_TERMS = frozenset({"include", "a", "mx", "ptr", "exists", "redirect"})
_SPF_TERM = re.compile(
    r"^(?P<q>[+\-~?]?)(?P<name>[a-z][a-z0-9_.\-]*)(?:(?P<sep>[:=])(?P<value>.*))?$", re.I
)


class RecordError(ValueError):
    """A record that the RFC calls invalid; the message says which rule it breaks."""


# ------------------------------------------------------------------------------------------ SPF


@dataclass(frozen=True)
class SpfTerm:
    qualifier: str  # + - ~ ?
    name: str  # mechanism or modifier name, lower case
    value: str  # domain-spec / address / "" ; for modifiers the value after "="
    modifier: bool


def spf_records(txts: list[str]) -> list[str]:
    """The TXT strings that are SPF records ("v=spf1" then a space or the end)."""
    return [t for t in txts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def parse_spf(record: str) -> list[SpfTerm]:
    """The terms of one SPF record; RecordError on a syntax error (a permerror)."""
    parts = record.split()
    if not parts or parts[0].lower() != "v=spf1":
        raise RecordError("an SPF record must start with v=spf1")
    terms: list[SpfTerm] = []
    redirects = 0
    for raw in parts[1:]:
        match = _SPF_TERM.match(raw)
        if not match:
            raise RecordError(f"SPF term {raw!r} is not a mechanism or a modifier")
        name = match["name"].lower()
        if match["sep"] == "=":
            if match["q"]:
                raise RecordError(f"SPF modifier {raw!r} cannot have a qualifier")
            if name == "redirect":
                redirects += 1
            terms.append(SpfTerm("", name, match["value"] or "", True))
            continue
        if name not in SPF_MECHANISMS:
            raise RecordError(f"unknown SPF mechanism {name!r} in {raw!r}")
        value = match["value"] or ""
        if name in ("ip4", "ip6"):
            try:
                network = ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise RecordError(f"SPF {name}:{value} is not a valid address or network") from None
            if (name == "ip4") != (network.version == 4):
                raise RecordError(f"SPF {name}:{value} has the wrong address family")
        if name in ("include", "exists") and not value:
            raise RecordError(f"SPF {name} needs a domain ({raw!r})")
        if name == "all" and value:
            raise RecordError(f"SPF 'all' takes no argument ({raw!r})")
        terms.append(SpfTerm(match["q"] or "+", name, value, False))
    if redirects > 1:
        raise RecordError("an SPF record may have at most one redirect= modifier")
    return terms


@dataclass
class SpfWalk:
    """The result of following one domain's SPF through its includes and redirects."""

    lookups: int = 0
    void_lookups: int = 0
    includes: list[str] = field(default_factory=list)  # every include/redirect target seen
    problems: list[str] = field(default_factory=list)  # permerrors met on the way


def _domain_and_cidr(value: str, default: str) -> tuple[str, int | None, int | None]:
    domain, _, rest = (value or default).partition("/")
    v4 = v6 = None
    if rest:
        bits = rest.split("/")
        try:
            if bits[0]:
                v4 = int(bits[0])
            if len(bits) > 2 and bits[2]:
                v6 = int(bits[2])
        except ValueError:
            pass
    return domain or default, v4, v6


def _record_for(resolver: Resolver, domain: str) -> str | None:
    records = spf_records(resolver.txt_or_empty(domain))
    if len(records) > 1:
        raise RecordError(f"{domain} publishes {len(records)} SPF records (only one is allowed)")
    return records[0] if records else None


def walk_spf(resolver: Resolver, domain: str) -> SpfWalk:
    """Count the DNS-querying terms of `domain`'s SPF through includes (RFC 7208 4.6.4)."""
    walk = SpfWalk()
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or walk.lookups > MAX_SPF_LOOKUPS:
            return
        seen.add(name)
        try:
            record = _record_for(resolver, name)
        except RecordError as exc:
            walk.problems.append(str(exc))
            return
        if record is None:
            if name != domain:
                walk.void_lookups += 1
                walk.problems.append(f"{name} (included) has no SPF record")
            return
        try:
            terms = parse_spf(record)
        except RecordError as exc:
            walk.problems.append(f"{name}: {exc}")
            return
        for term in terms:
            if term.name in SPF_LOOKUP_TERMS:
                walk.lookups += 1
            if term.name in ("include", "redirect"):
                walk.includes.append(term.value.lower().rstrip("."))
                visit(term.value.lower().rstrip("."))

    visit(domain.lower())
    return walk


def spf_check_host(resolver: Resolver, address: str, domain: str) -> str:
    """RFC 7208 check_host() for `address`: pass, fail, softfail, neutral, none, permerror,
    temperror. Macros are not expanded (a term with '%' is a permerror here, and said so)."""
    ip = ipaddress.ip_address(address)
    budget = [MAX_SPF_LOOKUPS]

    def spend() -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise RecordError("more than 10 DNS lookups")

    def evaluate(name: str) -> str:
        record = _record_for(resolver, name)
        if record is None:
            return "none"
        terms = parse_spf(record)
        redirect = None
        for term in terms:
            if term.modifier:
                if term.name == "redirect":
                    redirect = term.value
                continue
            if "%" in term.value:
                raise RecordError(f"macro in {term.name}:{term.value} is not evaluated here")
            matched = False
            if term.name == "all":
                matched = True
            elif term.name in ("ip4", "ip6"):
                network = ipaddress.ip_network(term.value, strict=False)
                matched = ip.version == network.version and ip in network
            elif term.name == "a":
                spend()
                target, v4, v6 = _domain_and_cidr(term.value, name)
                matched = _in_any(ip, resolver.addresses(target), v4, v6)
            elif term.name == "mx":
                spend()
                target, v4, v6 = _domain_and_cidr(term.value, name)
                try:
                    hosts = [host for _, host in resolver.mx(target)]
                except LookupFailed as exc:
                    if exc.kind == "timeout":
                        raise
                    hosts = []
                matched = any(_in_any(ip, resolver.addresses(h), v4, v6) for h in hosts[:10])
            elif term.name == "include":
                spend()
                result = evaluate(term.value)
                if result == "none":
                    raise RecordError(f"include:{term.value} has no SPF record")
                matched = result == "pass"
            elif term.name in ("exists", "ptr"):
                spend()  # not evaluated (ptr is deprecated; exists needs macros)
            if matched:
                return {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}[term.qualifier]
        if redirect:
            spend()
            result = evaluate(redirect)
            return "permerror" if result == "none" else result
        return "neutral"

    try:
        return evaluate(domain)
    except RecordError:
        return "permerror"
    except LookupFailed as exc:
        return "temperror" if exc.kind in ("timeout", "error") else "permerror"


def _in_any(ip, addresses: list[str], v4: int | None, v6: int | None) -> bool:
    for text in addresses:
        other = ipaddress.ip_address(text)
        if other.version != ip.version:
            continue
        prefix = (v4 if other.version == 4 else v6) or other.max_prefixlen
        if ip in ipaddress.ip_network(f"{other}/{prefix}", strict=False):
            return True
    return False


# ---------------------------------------------------------------------------------------- DMARC

_DMARC_TAGS = {
    "v",
    "p",
    "sp",
    "adkim",
    "aspf",
    "pct",
    "rua",
    "ruf",
    "fo",
    "rf",
    "ri",
    "np",
    "psd",
    "t",
}


def dmarc_records(txts: list[str]) -> list[str]:
    return [t for t in txts if re.match(r"^\s*v\s*=\s*DMARC1\s*(;|$)", t)]


def parse_dmarc(record: str) -> dict[str, str]:
    """Tags of a DMARC record; RecordError naming the first rule of RFC 7489 6.3/6.4 it breaks."""
    parts = [p.strip() for p in record.strip().split(";")]
    if parts and parts[-1] == "":
        parts.pop()
    tags: dict[str, str] = {}
    for index, part in enumerate(parts):
        if "=" not in part:
            raise RecordError(f"DMARC term {part!r} is not tag=value")
        key, _, value = part.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key in tags:
            raise RecordError(f"DMARC tag {key!r} appears twice")
        if index == 0 and (key != "v" or value != "DMARC1"):
            raise RecordError("a DMARC record must start with v=DMARC1")
        if index == 1 and key != "p":
            raise RecordError("the DMARC p= tag must come right after v=DMARC1")
        tags[key] = value
    if "p" not in tags:
        raise RecordError("a DMARC record needs a p= policy")
    for key in ("p", "sp", "np"):
        if key in tags and tags[key].lower() not in ("none", "quarantine", "reject"):
            raise RecordError(f"DMARC {key}={tags[key]!r} must be none, quarantine or reject")
    for key in ("adkim", "aspf"):
        if key in tags and tags[key].lower() not in ("r", "s"):
            raise RecordError(f"DMARC {key}={tags[key]!r} must be r (relaxed) or s (strict)")
    if "pct" in tags and not (tags["pct"].isdigit() and 0 <= int(tags["pct"]) <= 100):
        raise RecordError(f"DMARC pct={tags['pct']!r} must be a whole number from 0 to 100")
    for key in ("rua", "ruf"):
        for uri in filter(None, (u.strip() for u in tags.get(key, "").split(","))):
            if not re.match(r"^[a-z][a-z0-9+.\-]*:\S+$", uri, re.I):
                raise RecordError(f"DMARC {key} entry {uri!r} is not a URI (mailto:…)")
    unknown = sorted(set(tags) - _DMARC_TAGS)
    if unknown:
        raise RecordError(f"unknown DMARC tag(s): {', '.join(unknown)}")
    return {
        k: (v.lower() if k in ("p", "sp", "np", "adkim", "aspf") else v) for k, v in tags.items()
    }


# ----------------------------------------------------------------------------------------- DKIM


@dataclass(frozen=True)
class DkimKey:
    key_type: str  # rsa | ed25519
    bits: int  # RSA modulus size; 256 for Ed25519
    public_der: bytes  # SubjectPublicKeyInfo (RSA) or raw key (Ed25519)
    tags: dict[str, str]


def parse_dkim_key(record: str) -> DkimKey:
    """The public key of a DKIM TXT record; RecordError for a revoked, truncated or odd key."""
    tags: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in record.split(";"))):
        key, sep, value = part.partition("=")
        if not sep:
            raise RecordError(f"DKIM term {part!r} is not tag=value")
        tags[key.strip().lower()] = re.sub(r"\s+", "", value)
    if tags.get("v", "DKIM1") != "DKIM1":
        raise RecordError(f"DKIM v={tags['v']!r} must be DKIM1")
    key_type = tags.get("k", "rsa").lower()
    if "p" not in tags:
        raise RecordError("the DKIM record has no p= public key")
    if not tags["p"]:
        raise RecordError("the DKIM key is revoked (empty p=)")
    try:
        raw = base64.b64decode(tags["p"], validate=True)
    except (binascii.Error, ValueError):
        raise RecordError(
            "the DKIM p= value is not valid base64 (truncated or mangled when published?)"
        ) from None
    if key_type == "ed25519":
        if len(raw) != 32:
            raise RecordError(f"the Ed25519 key is {len(raw)} bytes, not 32 (truncated?)")
        ed25519.Ed25519PublicKey.from_public_bytes(raw)
        return DkimKey("ed25519", 256, raw, tags)
    if key_type != "rsa":
        raise RecordError(f"unknown DKIM key type k={key_type}")
    try:
        key = load_der_public_key(raw)
    except ValueError:
        raise RecordError(
            f"the DKIM p= value ({len(tags['p'])} characters) is not a complete RSA public key: "
            "truncated (TXT strings over 255 characters must be split, not cut)?"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise RecordError("k=rsa but p= holds another kind of key")
    return DkimKey("rsa", key.key_size, raw, tags)


# ------------------------------------------------------------------------------------ alignment

# Second-level labels under which organisations register (enough for China and the common
# cases; a full Public Suffix List would be exact).
_PUBLIC_SECOND_LEVEL = frozenset(
    {"com.cn", "net.cn", "org.cn", "gov.cn", "edu.cn", "ac.cn", "mil.cn"}
    | {"co.uk", "ac.uk", "org.uk", "gov.uk", "com.hk", "edu.hk", "org.hk", "com.tw", "edu.tw"}
    | {"co.jp", "ac.jp", "or.jp", "com.au", "edu.au", "org.au", "com.sg", "edu.sg"}
)


def organizational_domain(domain: str) -> str:
    """The registered domain (RFC 7489 3.2), approximated: two labels, three under a known
    public second level such as edu.cn."""
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in _PUBLIC_SECOND_LEVEL:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(identifier_domain: str, from_domain: str, mode: str = "r") -> bool:
    """DMARC identifier alignment: strict means equal, relaxed means the same org domain."""
    a, b = identifier_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)
