"""The honest-opens rules (dispatch.reports.classify) and the user-agent reader, one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dispatch.reports.agents import MAX_AGENT, parse_agent
from dispatch.reports.classify import (
    MPP,
    PERSON,
    SCANNER,
    classify_click,
    classify_open,
    in_burst,
)

SENT = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
LATER = SENT + timedelta(hours=3)
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"


def test_apple_mpp_by_agent_or_network():
    assert classify_open("Mozilla/5.0", "203.0.113.1", LATER, SENT) == MPP
    assert classify_open(FIREFOX, "17.58.101.4", LATER, SENT) == MPP
    assert classify_open(FIREFOX, "203.0.113.1", LATER, SENT) == PERSON


def test_scanners_by_agent_network_and_timing():
    assert classify_open("Barracuda Sentinel (EE)", "203.0.113.1", LATER, SENT) == SCANNER
    assert classify_open(FIREFOX, "148.163.130.2", LATER, SENT) == SCANNER  # Proofpoint
    assert classify_open(FIREFOX, "203.0.113.1", SENT + timedelta(seconds=4), SENT) == SCANNER
    assert classify_open(FIREFOX, "203.0.113.1", SENT + timedelta(seconds=40), SENT) == PERSON
    assert classify_click("python-requests/2.31", "", LATER, SENT) == SCANNER
    assert classify_click("Mozilla/5.0", "", LATER, SENT) == SCANNER  # MPP never clicks
    assert classify_open(None, None, LATER, None) == PERSON  # nothing known: a person


def test_all_links_at_once():
    times = [LATER, LATER + timedelta(seconds=1), LATER + timedelta(seconds=2)]
    assert in_burst(LATER, times)
    assert not in_burst(LATER, times[:2])
    spread = [LATER, LATER + timedelta(minutes=1), LATER + timedelta(minutes=2)]
    assert not in_burst(LATER, spread)


def test_huge_and_odd_agents_are_read_safely():
    assert parse_agent("x" * 10_000).client == "unknown"
    assert parse_agent(FIREFOX + " " + "y" * 10_000).client == "Firefox"
    assert parse_agent(None).device == "unknown"
    assert parse_agent("Mozilla/5.0").device == "proxy"
    assert len(("a" * 20_000)[:MAX_AGENT]) == 512
