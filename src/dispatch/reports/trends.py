"""Trends: the last issues side by side (per list), and people joining and leaving per month.

An issue's row sums its email campaigns (for one list: that list's row of each campaign's
report). Rates are those of the report (dispatch.reports.figures, people only); `rank` orders
the issues by open rate, best first (ties: the newer issue first).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from dispatch.models.base import utcnow
from dispatch.reports import figures, source
from dispatch.reports.report import current_cells
from dispatch.reports.tally import Cell

ISSUES = 12
MONTHS = 12


def _issue_row(session: Session, issue: Any, campaigns: list, list_id: int | None) -> dict:
    cells: Counter[Cell] = Counter()
    for campaign in campaigns:
        cells.update(current_cells(session, campaign)[0])
    dim, key = ("list", str(list_id)) if list_id is not None else ("total", "")
    row = figures.audience(figures.Cells(cells), dim, key)
    starts = [c.started_at for c in campaigns if c.started_at is not None]
    return {
        "issue_id": issue.id,
        "slug": issue.slug,
        "title": issue.title,
        "sent_at": min(starts) if starts else None,
        "audience": sum(c.total for c in campaigns) if list_id is None else row["counts"]["sent"],
        **row,
    }


def issue_rows(session: Session, list_id: int | None = None, limit: int = ISSUES) -> list[dict]:
    """The last `limit` sent issues (oldest first), each with its figures and its rank."""
    rows = []
    for issue, campaigns in source.sent_issues(session, list_id, limit):
        rows.append(_issue_row(session, issue, campaigns, list_id))
    rows.sort(key=lambda r: (r["sent_at"] or datetime.min.replace(tzinfo=None), r["issue_id"]))
    ranked = sorted(rows, key=lambda r: (-(r["rates"]["opened"] or 0.0), -r["issue_id"]))
    for position, row in enumerate(ranked, start=1):
        row["rank"] = position
    return rows


def trends(session: Session, list_id: int | None = None, now: datetime | None = None) -> dict:
    now = now or utcnow()
    return {
        "list_id": list_id,
        "issues": issue_rows(session, list_id),
        "months": source.joins_and_leaves(session, list_id, now, MONTHS),
        "lists": [{"id": k, "name": v} for k, v in source.all_lists(session).items()],
    }
