"""Who made a tracking hit: a person, Apple's Mail Privacy Protection proxy, or a link scanner.

Pure functions, no database: the rules below are the whole of it, and docs/reports.md repeats
them for the office that has to explain its open rate.

An **open** is machine-made when:
1. `mpp`: it comes from Apple's Mail Privacy Protection. MPP fetches every image of every
   message through Apple's proxies when the message arrives, whether anyone reads it or not.
   Its requests carry the bare agent `Mozilla/5.0` and come from Apple's network 17.0.0.0/8.
   Either sign is enough.
2. `scanner`: it comes from a security scanner: a known scanner agent (SCANNER_AGENTS: mail
   gateways, HTTP libraries, bots), a known scanner network (SCANNER_NETWORKS), or it arrives
   within SCANNER_SECONDS of the relay accepting the message (no person opens that fast).

A **click** is machine-made (`scanner`) on the same agent, network and timing rules, and when
it is one of ALL_AT_ONCE_LINKS or more clicks of one delivery (on different links) within
ALL_AT_ONCE_SECONDS of it (a scanner follows every link; a person reads, then clicks one).
MPP does not click.

Anything else is `person`. The rules err towards counting a person: an unknown agent is a person.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache

PERSON, MPP, SCANNER = "person", "mpp", "scanner"
ORIGINS = (PERSON, MPP, SCANNER)

MPP_AGENTS = frozenset({"mozilla/5.0"})
MPP_NETWORKS = (ipaddress.ip_network("17.0.0.0/8"),)  # Apple Inc.
SCANNER_SECONDS = 10.0
ALL_AT_ONCE_LINKS = 3
ALL_AT_ONCE_SECONDS = 5.0
# lower-case substrings of user agents that only machines send
SCANNER_AGENTS = (
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
    "symantec",
    "messagelabs",
    "trendmicro",
    "trend micro",
    "forcepoint",
    "fortiguard",
    "sophos",
    "cisco-ironport",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "go-http-client",
    "curl/",
    "wget/",
    "okhttp",
    "java/",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "bot",
    "spider",
    "crawler",
    "scanner",
)
# published egress networks of mail security gateways
SCANNER_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "64.235.144.0/20",  # Barracuda
        "209.222.80.0/21",  # Barracuda
        "148.163.128.0/19",  # Proofpoint
        "67.231.144.0/20",  # Proofpoint
        "205.139.110.0/24",  # Mimecast
        "207.211.30.0/24",  # Mimecast
        "40.94.0.0/16",  # Microsoft Defender for Office 365
    )
)


@lru_cache(maxsize=4096)
def _network_origin(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return PERSON
    if any(address in net for net in MPP_NETWORKS):
        return MPP
    if any(address in net for net in SCANNER_NETWORKS):
        return SCANNER
    return PERSON


@lru_cache(maxsize=4096)
def _agent_origin(agent: str) -> str:
    lowered = agent.strip().lower()
    if lowered in MPP_AGENTS:
        return MPP
    if any(token in lowered for token in SCANNER_AGENTS):
        return SCANNER
    return PERSON


def classify_open(agent: str | None, ip: str | None, at: datetime, sent_at: datetime | None) -> str:
    """`mpp`, `scanner` or `person` for an open at `at` of a message accepted at `sent_at`."""
    for origin in (_agent_origin(agent or ""), _network_origin(ip or "")):
        if origin != PERSON:
            return origin
    if sent_at is not None and (at - sent_at).total_seconds() < SCANNER_SECONDS:
        return SCANNER
    return PERSON


def classify_click(
    agent: str | None, ip: str | None, at: datetime, sent_at: datetime | None
) -> str:
    """`scanner` or `person` for one click (MPP only prefetches images, so an MPP sign on a
    click means a scanner behind Apple's network or a bare agent: a machine either way)."""
    return PERSON if classify_open(agent, ip, at, sent_at) == PERSON else SCANNER


def in_burst(at: datetime, click_times: Sequence[datetime]) -> bool:
    """True when ALL_AT_ONCE_LINKS or more of one delivery's link clicks (this one included)
    fall within ALL_AT_ONCE_SECONDS of the click at `at`."""
    near = sum(1 for t in click_times if abs((t - at).total_seconds()) <= ALL_AT_ONCE_SECONDS)
    return near >= ALL_AT_ONCE_LINKS
