"""From report cells to the figures an office reports: people, rates with their definitions,
breakdowns and the time series. Pure: tests feed it cells and compare with hand counts.

Definitions (docs/reports.md, and shown beside each figure):
- sent: people whose message the receiving side's relay accepted;
- delivered: sent minus those whose message bounced later (a DSN after acceptance);
- bounced: people whose message bounced (at sending or later), over those attempted
  (sent plus bounced at sending);
- opened / clicked: people with at least one open / click; "by people" counts only opens and
  clicks made by a person, "all" adds Apple MPP and scanners; rates are over delivered;
- click-to-open: people who clicked over people who opened (both by people);
- complained, unsubscribed: people, over delivered.
A rate whose denominator is 0 is None (shown "—"), never a division by zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from dispatch.reports.classify import MPP, ORIGINS, PERSON, SCANNER
from dispatch.reports.tally import Cell

HOURLY_SPAN = timedelta(hours=48)  # hour by hour for two days, then day by day


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


class Cells:
    """Read access to summed cells: `get(dim, key, metric)` and per-dimension keys."""

    def __init__(self, cells: Mapping[Cell, int]):
        self.cells = dict(cells)

    def get(self, dim: str, key: str, metric: str) -> int:
        return int(self.cells.get((dim, key, metric), 0))

    def keys(self, dim: str) -> list[str]:
        return sorted({k for d, k, _m in self.cells if d == dim})

    def by_origin(self, dim: str, key: str, base: str) -> dict[str, int]:
        found = {o: self.get(dim, key, f"{base}:{o}") for o in ORIGINS}
        found["machine"] = found[MPP] + found[SCANNER]
        found["all"] = found[PERSON] + found["machine"]
        return found


def audience(cells: Cells, dim: str = "total", key: str = "") -> dict[str, Any]:
    """The people counts and rates of one row (the whole campaign, a provider, a list)."""
    get = cells.get
    sent, bounced = get(dim, key, "sent"), get(dim, key, "bounced")
    late = get(dim, key, "bounced_late")
    delivered = max(sent - late, 0)
    opened = cells.by_origin(dim, key, "opens")
    clicked = cells.by_origin(dim, key, "clickers")
    counts: dict[str, Any] = {
        "sent": sent,
        "delivered": delivered,
        "bounced": bounced,
        "bounced_late": late,
        "skipped": get(dim, key, "skipped"),
        "failed": get(dim, key, "failed"),
        "complained": get(dim, key, "complained"),
        "unsubscribed": get(dim, key, "unsubscribed"),
        "opened": opened,
        "clicked": clicked,
    }
    rates = {
        "delivered": rate(delivered, sent),
        "bounced": rate(bounced, sent + bounced - late),
        "opened": rate(opened[PERSON], delivered),
        "opened_all": rate(opened["all"], delivered),
        "clicked": rate(clicked[PERSON], delivered),
        "clicked_all": rate(clicked["all"], delivered),
        "click_to_open": rate(clicked[PERSON], opened[PERSON]),
        "complained": rate(counts["complained"], delivered),
        "unsubscribed": rate(counts["unsubscribed"], delivered),
    }
    return {"counts": counts, "rates": rates}


def breakdown(cells: Cells, dim: str, names: Mapping[str, str] | None = None) -> list[dict]:
    """One audience row per key of `dim`, largest first."""
    rows = [
        {"key": key, "name": (names or {}).get(key, key), **audience(cells, dim, key)}
        for key in cells.keys(dim)
    ]
    rows.sort(key=lambda r: (-r["counts"]["sent"], -r["counts"]["opened"]["all"], r["key"]))
    return rows


def agents(cells: Cells, dim: str) -> list[dict]:
    """Mail clients or devices: people who opened (by origin) and who clicked."""
    rows: list[dict[str, Any]] = [
        {
            "key": key,
            "opened": cells.by_origin(dim, key, "opens"),
            "clicked": cells.by_origin(dim, key, "clickers"),
        }
        for key in cells.keys(dim)
    ]
    rows.sort(key=lambda r: (-r["opened"][PERSON], -r["opened"]["all"], r["key"]))
    return rows


def _hour(key: str) -> datetime | None:
    try:
        return datetime.strptime(key, "%Y-%m-%dT%H").replace(tzinfo=None)
    except ValueError:
        return None


def _bucket_starts(start: datetime, now: datetime) -> list[tuple[datetime, timedelta]]:
    """Hourly buckets for the first 48 h from the send's hour, then daily, up to `now`."""
    first = start.replace(minute=0, second=0, microsecond=0)
    out: list[tuple[datetime, timedelta]] = []
    at = first
    while at <= now and at < first + HOURLY_SPAN:
        out.append((at, timedelta(hours=1)))
        at += timedelta(hours=1)
    while at <= now:
        out.append((at, timedelta(days=1)))
        at += timedelta(days=1)
    return out


def timeline(cells: Cells, start: datetime | None, now: datetime) -> dict[str, Any]:
    """Opens (first per person) and clicks (first per person and link) over time, by origin.

    The axis runs from the send's hour to the bucket holding `now` and never past it: events
    dated later (a wrong clock) are counted in the last bucket and reported as `future`.
    """
    naive_now = now.replace(tzinfo=None)
    hours = {k: _hour(k) for k in cells.keys("hour")}
    known = [h for h in hours.values() if h is not None]
    if start is None and not known:
        return {"buckets": [], "end": now, "future": 0}
    origin = start.replace(tzinfo=None) if start else min(known)
    origin = min([origin, *known]) if known else origin
    starts = _bucket_starts(min(origin, naive_now), naive_now)
    buckets: list[dict[str, Any]] = [
        {"start": s, "hours": int(size.total_seconds() // 3600), "opened": {}, "clicked": {}}
        for s, size in starts
    ]
    future = 0
    for key, at in hours.items():
        if at is None:
            continue
        if at > naive_now:
            future += cells.by_origin("hour", key, "opens")["all"]
            future += cells.by_origin("hour", key, "clicks")["all"]
            at = naive_now
        index = _bucket_index(starts, at)
        for name, base in (("opened", "opens"), ("clicked", "clicks")):
            for o, n in cells.by_origin("hour", key, base).items():
                buckets[index][name][o] = buckets[index][name].get(o, 0) + n
    for b in buckets:
        for name in ("opened", "clicked"):
            b[name] = {o: b[name].get(o, 0) for o in (*ORIGINS, "machine", "all")}
    return {"buckets": buckets, "end": now, "future": future}


def _bucket_index(starts: list[tuple[datetime, timedelta]], at: datetime) -> int:
    for i in range(len(starts) - 1, -1, -1):
        if starts[i][0] <= at:
            return i
    return 0
