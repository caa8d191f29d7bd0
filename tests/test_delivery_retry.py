"""Retry timing: exponential backoff with full jitter, within bounds, until max attempts."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from dispatch.config import load_settings
from dispatch.delivery.retry import backoff_cap, next_attempt, retry_delay


def test_cap_doubles_from_base_up_to_max():
    caps = [backoff_cap(n, 60, 3600) for n in range(1, 9)]
    assert caps == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff_cap(10_000, 60, 3600) == 3600  # no overflow


@pytest.mark.parametrize("attempts", [1, 2, 3, 6, 12])
def test_full_jitter_stays_within_zero_and_cap_and_spreads(attempts):
    rng = random.Random(attempts)
    cap = backoff_cap(attempts, 60, 6 * 3600)
    delays = [retry_delay(attempts, 60, 6 * 3600, rng) for _ in range(2000)]
    assert all(0 <= d <= cap for d in delays)
    # full jitter: uniform over the whole range, not bunched at the cap
    assert min(delays) < cap * 0.05 and max(delays) > cap * 0.95
    assert abs(sum(delays) / len(delays) - cap / 2) < cap * 0.05


def test_next_attempt_until_max_attempts_then_none():
    settings = load_settings(env={}).replace(
        max_attempts=3, retry_base_seconds=10, retry_max_seconds=100
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for attempts, cap in ((1, 10), (2, 20)):
        due = next_attempt(settings, attempts, now, random.Random(1))
        assert now <= due <= now + timedelta(seconds=cap)
    assert next_attempt(settings, 3, now) is None
