"""WeChat's own numbers for a campaign: what each mass send reported and how its articles read.

Why not email's columns: WeChat tells the sender neither opens nor clicks per follower. What
it does tell is, per mass send, MASSSENDJOBFINISH's TotalCount / FilterCount (after the
4-a-month rule and unfollows) / SentCount / ErrorCount, and per article per day the datacube
figures (reads, shares, favourites) from getarticlesummary. `pull_article_stats` fetches the
latter for the days after a send (WeChat keeps them for the week after); `campaign_report`
gives the campaign page both.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models.wechat import WechatArticleStat, WechatMassChunk

STAT_DAYS = 7  # datacube article figures cover the week after a send
BEIJING = timedelta(hours=8)


def _day(at: datetime) -> date:
    return (at.astimezone(UTC) + BEIJING).date()


def pull_article_stats(
    session: Session, client: Any, campaign_id: int | None = None, today: date | None = None
) -> int:
    """getarticlesummary for each day since each recent send; upserts wechat_article_stats.
    Returns the rows written. The caller commits."""
    today = today or _day(datetime.now(UTC))
    query = select(WechatMassChunk).where(
        WechatMassChunk.msg_data_id.is_not(None), WechatMassChunk.mode != "preview"
    )
    if campaign_id is not None:
        query = query.where(WechatMassChunk.campaign_id == campaign_id)
    chunks = [
        c for c in session.scalars(query) if _day(c.created_at) >= today - timedelta(STAT_DAYS)
    ]
    by_data_id = {str(c.msg_data_id): c.campaign_id for c in chunks}
    if not by_data_id:
        return 0
    first = min(_day(c.created_at) for c in chunks)
    written = 0
    day = first
    while day <= today:
        for item in client.datacube("getarticlesummary", day.isoformat()):
            msgid = str(item.get("msgid", ""))
            campaign = by_data_id.get(msgid.split("_", 1)[0])
            if campaign is None:
                continue
            row = session.scalars(
                select(WechatArticleStat).where(
                    WechatArticleStat.account == client.account,
                    WechatArticleStat.msgid == msgid,
                    WechatArticleStat.stat_date == day.isoformat(),
                )
            ).first()
            if row is None:
                row = WechatArticleStat(
                    account=client.account, msgid=msgid, stat_date=day.isoformat()
                )
                session.add(row)
            row.campaign_id = campaign
            row.title = str(item.get("title", ""))[:200]
            row.ref_date = str(item.get("ref_date", day.isoformat()))[:10]
            row.read_user = int(item.get("int_page_read_user", 0))
            row.read_count = int(item.get("int_page_read_count", 0))
            row.share_user = int(item.get("share_user", 0))
            row.share_count = int(item.get("share_count", 0))
            row.fav_user = int(item.get("add_to_fav_user", 0))
            row.fav_count = int(item.get("add_to_fav_count", 0))
            written += 1
        day += timedelta(days=1)
    session.flush()
    return written


def campaign_report(session: Session, campaign_id: int) -> dict[str, Any]:
    """The mass sends of a campaign with WeChat's counts, and its articles' figures."""
    chunks = session.scalars(
        select(WechatMassChunk)
        .where(WechatMassChunk.campaign_id == campaign_id)
        .order_by(WechatMassChunk.batch_no, WechatMassChunk.id)
    ).all()
    rows: list[dict[str, Any]] = [
        {
            "batch_no": c.batch_no,
            "mode": c.mode,
            "status": c.status,
            "wechat_status": (c.event or {}).get("status"),
            "msg_id": c.msg_id,
            "recipients": c.recipient_count,
            "total": c.total_count,
            "filtered": c.filter_count,
            "sent": c.sent_count,
            "errors": c.error_count,
            "errcode": c.errcode,
            "errmsg": c.errmsg,
        }
        for c in chunks
    ]
    totals = {
        key: sum(r[key] or 0 for r in rows)
        for key in ("recipients", "total", "filtered", "sent", "errors")
    }
    articles: dict[str, dict[str, Any]] = {}
    for s in session.scalars(
        select(WechatArticleStat)
        .where(WechatArticleStat.campaign_id == campaign_id)
        .order_by(WechatArticleStat.msgid, WechatArticleStat.stat_date)
    ):
        a = articles.setdefault(
            s.msgid,
            {"msgid": s.msgid, "title": s.title, "days": [], "read": 0, "share": 0, "fav": 0},
        )
        a["days"].append(
            {"date": s.stat_date, "read": s.read_user, "share": s.share_user, "fav": s.fav_user}
        )
        a["read"] += s.read_user  # getarticlesummary counts one day each
        a["share"] += s.share_user
        a["fav"] += s.fav_user
    return {"chunks": rows, "totals": totals, "articles": list(articles.values())}
