"""The canonical form of an email address: the one key for identity, dedupe and suppression.

Why: RFC 5321 lets a local part be case-sensitive, but no mailbox provider our users meet
uses that, and every large sender treats addresses case-insensitively. A person who
unsubscribed as `Li.Wei@Example.com` must stay unsubscribed when an import spells it
`li.wei@example.com`. The address is stored as given (that is what we send to); every
comparison uses `canonical_email`: Unicode NFC, local part lower-cased, domain in its IDNA
ASCII form (so `用户@例子.中国` and `用户@xn--fsqu00a.xn--fiqs8s` are one mailbox).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import idna

__all__ = ["canonical_email", "canonical_domain"]


@lru_cache(maxsize=4096)
def canonical_domain(domain: str) -> str:
    """Lower-case ASCII (IDNA/punycode) form of a domain; a domain IDNA refuses is only
    lower-cased (it is compared, never resolved, here)."""
    domain = domain.strip().rstrip(".")
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        return unicodedata.normalize("NFC", domain).lower()


def canonical_email(raw: str | None) -> str | None:
    """The comparison key of an address (None for None or blank)."""
    if raw is None:
        return None
    value = unicodedata.normalize("NFC", raw.strip())
    if not value:
        return None
    local, at, domain = value.rpartition("@")
    if not at:
        return value.lower()
    return f"{local.lower()}@{canonical_domain(domain)}"
