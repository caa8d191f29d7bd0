"""A campaign's report, and an issue's across its campaigns: the tallies plus the newest events.

`campaign_report` reads the rolled-up tallies (dispatch.reports.rollup) and tallies the events
newer than the watermark itself, so the figures are current to the second without counting a
million events per view. When the rollup has fallen far behind (TAIL_LIMIT events), the view
rolls up first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from dispatch.content.model import IssueDoc
from dispatch.models.base import utcnow
from dispatch.models.delivery import Campaign
from dispatch.reports import figures, rollup, source
from dispatch.reports.links import link_owners
from dispatch.reports.tally import Cell

TAIL_LIMIT = 50_000
# up to this many recipients a view re-reads the hit counters itself (cheap); a bigger
# campaign's are snapshotted by the periodic rollup (or on its first view)
LIVE_HITS_MAX = 50_000


def current_cells(session: Session, campaign: Campaign) -> tuple[Counter[Cell], dict[str, Any]]:
    """The campaign's cells now (tallies + tail) and how fresh each part is."""
    mark = source.watermark(session, campaign.id)
    if mark is None or mark.hits_at is None or campaign.total <= LIVE_HITS_MAX:
        rollup.refresh_hits(session, campaign)
        mark = source.watermark(session, campaign.id)
    after = mark.event_id if mark else 0
    n, tail = rollup.tail_cells(session, campaign, after, TAIL_LIMIT)
    if tail is None:
        rollup.refresh(session, campaign)
        return current_cells(session, campaign)
    cells: Counter[Cell] = Counter(source.tallies(session, [campaign.id]))
    cells.update(tail)
    freshness = {
        "rolled_up_through": after,
        "tail_events": n,
        "hits_at": mark.hits_at if mark else None,
    }
    return cells, freshness


def _links(cells: figures.Cells, doc: IssueDoc | None) -> list[dict[str, Any]]:
    owners = link_owners(doc) if doc is not None else []
    indexes = sorted(
        {int(k) for k in cells.keys("link") if k.lstrip("-").isdigit()} | {o.index for o in owners}
    )
    by_index = {o.index: o for o in owners}
    rows = []
    for i in indexes:
        if i < 0:
            continue
        owner = by_index.get(i)
        rows.append(
            {
                "index": i,
                "url": owner.url if owner else "",
                "section": owner.section if owner else "",
                "article": owner.article if owner else "",
                "anchor": owner.anchor if owner else "",
                "clickers": cells.by_origin("link", str(i), "clicks"),
                "hits": cells.get("hits", str(i), "hits"),
            }
        )
    return rows


def _grouped(links: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Clicks per article or per section: unique clickers of its links (a person clicking two
    links of one article counts twice: "link clicks by people"), and hits."""
    groups: dict[str, dict[str, Any]] = {}
    for link in links:
        name = link[field] or "—"
        group = groups.setdefault(
            name,
            {
                "name": name,
                "section": link["section"],
                "links": 0,
                "person": 0,
                "all": 0,
                "hits": 0,
            },
        )
        group["links"] += 1
        group["person"] += link["clickers"]["person"]
        group["all"] += link["clickers"]["all"]
        group["hits"] += link["hits"]
    return sorted(groups.values(), key=lambda g: (-g["person"], -g["all"], g["name"]))


def build(
    cells_raw: Counter[Cell],
    *,
    start: datetime | None,
    now: datetime,
    doc: IssueDoc | None,
    list_names: dict[int, str],
) -> dict[str, Any]:
    """Every figure of a report from its cells (pure: the tests' entry point)."""
    cells = figures.Cells(cells_raw)
    links = _links(cells, doc)
    return {
        "as_of": now,
        **figures.audience(cells),
        "hits": {
            "opens": cells.get("hits", "-1", "hits"),
            "clicks": sum(link["hits"] for link in links),
        },
        "links": links,
        "articles": _grouped(links, "article"),
        "sections": _grouped(links, "section"),
        "timeline": figures.timeline(cells, start, now),
        "by_list": figures.breakdown(cells, "list", {str(k): v for k, v in list_names.items()}),
        "by_provider": figures.breakdown(cells, "provider"),
        "by_client": figures.agents(cells, "client"),
        "by_device": figures.agents(cells, "device"),
    }


def campaign_report(
    session: Session, campaign: Campaign, doc: IssueDoc | None, now: datetime | None = None
) -> dict[str, Any]:
    """The report of one campaign (`doc`: its issue, for the link table's articles)."""
    now = now or utcnow()
    cells, freshness = current_cells(session, campaign)
    report = build(
        cells,
        start=campaign.started_at,
        now=now,
        doc=doc,
        list_names=source.list_names(session, campaign.list_ids or []),
    )
    report.update(freshness)
    report["recipients"] = campaign.total
    report["pending"] = max(campaign.total - _settled_people(report), 0)
    report["campaigns"] = [_campaign_row(campaign)]
    return report


def issue_report(
    session: Session,
    campaigns: Sequence[Campaign],
    doc: IssueDoc | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An issue's report: its email campaigns' cells summed (a person sent the issue by two
    campaigns counts twice), the time axis from the first send."""
    now = now or utcnow()
    cells: Counter[Cell] = Counter()
    for campaign in campaigns:
        cells.update(current_cells(session, campaign)[0])
    starts = [c.started_at for c in campaigns if c.started_at is not None]
    list_ids = sorted({int(i) for c in campaigns for i in c.list_ids or []})
    report = build(
        cells,
        start=min(starts) if starts else None,
        now=now,
        doc=doc,
        list_names=source.list_names(session, list_ids),
    )
    report["recipients"] = sum(c.total for c in campaigns)
    report["pending"] = max(report["recipients"] - _settled_people(report), 0)
    report["campaigns"] = [_campaign_row(c) for c in campaigns]
    return report


def _settled_people(report: dict[str, Any]) -> int:
    """People whose message reached an end: sent, failed, bounced at sending, skipped."""
    c = report["counts"]
    return c["sent"] + c["failed"] + c["bounced"] - c["bounced_late"] + c["skipped"]


def _campaign_row(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "channel": campaign.channel,
        "status": campaign.status,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "total": campaign.total,
    }
