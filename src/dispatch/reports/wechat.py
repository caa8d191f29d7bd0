"""An issue's WeChat numbers beside its email numbers: what WeChat itself reports.

WeChat tells a sender no per-follower opens or clicks; what the WeChat channel stores
(dispatch.wechat.stats) is each mass send's job result (MASSSENDJOBFINISH: total, after
filters, sent, errors) and each article's daily reads, shares and saves (datacube
getarticlesummary). This sums them over the issue's WeChat campaigns.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dispatch.reports import source
from dispatch.vocabulary import Channel
from dispatch.wechat.stats import campaign_report

TOTALS = ("recipients", "total", "filtered", "sent", "errors")


def issue_wechat(session: Session, issue_id: int) -> dict[str, Any] | None:
    """Summed WeChat figures of the issue, or None when it was not sent on WeChat."""
    campaigns = source.issue_campaigns(session, issue_id, Channel.WECHAT)
    if not campaigns:
        return None
    totals = dict.fromkeys(TOTALS, 0)
    articles: dict[str, dict[str, Any]] = {}
    for campaign in campaigns:
        part = campaign_report(session, campaign.id)
        for key in TOTALS:
            totals[key] += int(part["totals"].get(key) or 0)
        for article in part["articles"]:
            seen = articles.setdefault(
                article["title"] or article["msgid"],
                {"title": article["title"], "read": 0, "share": 0, "fav": 0},
            )
            for key in ("read", "share", "fav"):
                seen[key] += int(article[key])
    reads = sum(a["read"] for a in articles.values())
    return {
        "campaigns": [c.id for c in campaigns],
        "totals": totals,
        "articles": sorted(articles.values(), key=lambda a: -a["read"]),
        "reads": reads,
        "shares": sum(a["share"] for a in articles.values()),
        "favs": sum(a["fav"] for a in articles.values()),
    }
