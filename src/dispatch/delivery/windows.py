"""Sending windows and spreading: when a campaign may send, and how fast to spread it.

A window is "HH:MM-HH:MM" in `send_timezone` (Asia/Shanghai by default); it may cross
midnight ("21:00-07:00"). A campaign takes its window from its options (`window`), else the
`send_window` setting; none means any hour. Spreading over N hours turns into a campaign
rate of total / N per hour, so the sends are even instead of all in the first minutes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "bad_window": (
            "发送时段 {value!r} 无效：请用 HH:MM-HH:MM，例如 08:00-21:00",
            "sending window {value!r} is invalid: use HH:MM-HH:MM, e.g. 08:00-21:00",
        ),
        "bad_zone": ("未知时区 {value!r}", "unknown time zone {value!r}"),
        "bad_spread": (
            "分散发送小时数必须在 1 到 720 之间：{value!r}",
            "spread hours must be between 1 and 720: {value!r}",
        ),
        "outside": (
            "在发送时段 {window}（{tz}）之外，{at} 继续",
            "outside the sending window {window} ({tz}); continues at {at}",
        ),
    }
)

_WINDOW = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class WindowError(ValueError):
    """A window, time zone or spread that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class SendingWindow:
    start: time
    end: time
    tz: str

    @property
    def text(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.tz)).time()
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # crosses midnight

    def next_open(self, now: datetime) -> datetime:
        """`now` when inside, else the next moment the window opens."""
        if self.contains(now):
            return now
        zone = ZoneInfo(self.tz)
        local = now.astimezone(zone)
        candidate = datetime.combine(local.date(), self.start, tzinfo=zone)
        if candidate <= local:
            candidate += timedelta(days=1)
        return candidate

    def reason(self, now: datetime) -> str:
        at = self.next_open(now).strftime("%Y-%m-%d %H:%M")
        return MESSAGES.both("outside", window=self.text, tz=self.tz, at=at)


def check_zone(tz: str) -> str:
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(MESSAGES.both("bad_zone", value=tz)) from None
    return tz


def parse_window(value: str | None, tz: str) -> SendingWindow | None:
    """A window from "HH:MM-HH:MM" (None for empty); WindowError on anything else."""
    if not value or not str(value).strip():
        return None
    match = _WINDOW.match(str(value))
    if not match:
        raise WindowError(MESSAGES.both("bad_window", value=value))
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if not (0 <= h1 <= 24 and 0 <= h2 <= 24 and m1 < 60 and m2 < 60):
        raise WindowError(MESSAGES.both("bad_window", value=value))
    if (h1 == 24 and m1) or (h2 == 24 and m2):
        raise WindowError(MESSAGES.both("bad_window", value=value))
    start = time(h1 % 24, m1)
    end = time(h2 % 24, m2)
    return SendingWindow(start, end, check_zone(tz))


def check_spread(hours: float | int | str | None) -> float:
    """0 for "no spreading"; else hours within 1..720 (WindowError otherwise)."""
    if hours in (None, "", 0, "0"):
        return 0.0
    try:
        value = float(hours)
    except (TypeError, ValueError):
        raise WindowError(MESSAGES.both("bad_spread", value=hours)) from None
    if not 1 <= value <= 720:
        raise WindowError(MESSAGES.both("bad_spread", value=hours))
    return value


def campaign_window(options: dict | None, default: str, tz: str) -> SendingWindow | None:
    options = options or {}
    return parse_window(options.get("window") or default, options.get("timezone") or tz)


def spread_rate_per_hour(total: int, hours: float) -> float:
    """The campaign's hourly rate that spreads `total` messages evenly over `hours`."""
    if hours <= 0 or total <= 0:
        return 0.0
    return max(total / hours, 1.0)
