"""When a deferred delivery is tried again: exponential backoff with full jitter.

Full jitter (a uniform draw between 0 and the exponential cap) spreads the retries of a
whole batch that failed together, so a recovering server is not hit by all of them at once.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from dispatch.config import Settings


def backoff_cap(attempts: int, base_seconds: float, max_seconds: float) -> float:
    """The upper bound of the delay after `attempts` failed attempts (attempts >= 1)."""
    exponent = max(attempts - 1, 0)
    # cap the exponent before computing so a large attempt count never overflows
    if exponent > 60:
        return max_seconds
    return min(max_seconds, base_seconds * (2**exponent))


def retry_delay(
    attempts: int, base_seconds: float, max_seconds: float, rng: random.Random | None = None
) -> float:
    """A delay drawn uniformly from [0, cap] (AWS's "full jitter")."""
    cap = backoff_cap(attempts, base_seconds, max_seconds)
    return (rng or random).uniform(0.0, cap)


def next_attempt(
    settings: Settings, attempts: int, now: datetime, rng: random.Random | None = None
) -> datetime | None:
    """When to try again after `attempts` attempts, or None when the attempts are used up."""
    if attempts >= settings.max_attempts:
        return None
    delay = retry_delay(attempts, settings.retry_base_seconds, settings.retry_max_seconds, rng)
    return now + timedelta(seconds=delay)
