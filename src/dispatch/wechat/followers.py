"""Followers in: the account's openids (user/get) and details (user/info/batchget) → subscribers.

Why in pages with a stored cursor: WeChat hands out openids 10,000 at a time after a
`next_openid`, and a 30,000-follower account takes minutes over a slow line. Each page is
written in one transaction together with the run's cursor, so an interrupted sync (a dropped
connection, a killed process, a WeChat error halfway) resumes at the page after the last one
stored and never half-writes a page. A follower that no finished run has seen is marked
unfollowed (its subscription to the followers list becomes `unsubscribed`; nothing is
deleted). Tags come from tags/get and each follower's tagid_list (a campaign may target one
tag with mass/sendall). Subscribe / unsubscribe events (dispatch.wechat.callbacks) use
`apply_follow_change` to update one follower at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection, Engine, and_, bindparam, insert, select, text, update
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.models import utcnow
from dispatch.models.subscriber import MailingList, Subscriber, Subscription
from dispatch.models.wechat import WechatFollower, WechatSyncRun, WechatTag
from dispatch.subscribers import bulk
from dispatch.vocabulary import Channel, EventKind, SubscriptionStatus
from dispatch.wechat.client import WechatClient

BATCHGET_SIZE = 100  # user/info/batchget takes at most 100 openids
BATCHGET_THREADS = 4  # parallel batchget calls (WeChat allows far more per minute)

followers = WechatFollower.__table__
subscribers = Subscriber.__table__
subscriptions = Subscription.__table__

MESSAGES = Catalog(
    {
        "list_name": ("微信公众号关注者", "WeChat followers"),
        "progress": (
            "已同步 {seen}/{total} 位关注者（新增 {created}，更新 {updated}）",
            "synced {seen}/{total} followers ({created} new, {updated} updated)",
        ),
        "done": (
            "同步完成：{seen} 位关注者，新增 {created}，更新 {updated}，取消关注 {unfollowed}",
            "sync finished: {seen} followers, {created} new, {updated} updated, "
            "{unfollowed} unfollowed",
        ),
        "resumed": (
            "继续上次中断的同步（第 {pages} 页之后）",
            "resuming the interrupted sync (after page {pages})",
        ),
    }
)


@dataclass
class SyncReport:
    run_id: int
    list_id: int
    total: int
    seen: int
    created: int
    updated: int
    unfollowed: int
    pages: int
    resumed: bool
    tags: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def locale_of(language: str | None) -> str:
    """WeChat's language (zh_CN, zh_TW, en, …) → the subscriber locale dispatch speaks."""
    return "en" if (language or "").lower().startswith("en") else "zh-CN"


def ensure_list(session: Session, slug: str) -> MailingList:
    from dispatch.subscribers.service import create_list

    found = session.scalars(select(MailingList).where(MailingList.slug == slug)).first()
    if found is not None:
        return found
    return create_list(session, slug, MESSAGES.get("list_name", "zh-CN"), optin="single")


def sync_tags(session: Session, client: WechatClient) -> int:
    """tags/get → wechat_tags (name and follower count per tag)."""
    now = utcnow()
    known = {
        t.tag_id: t
        for t in session.scalars(select(WechatTag).where(WechatTag.account == client.account))
    }
    tags = client.tags_get()
    for tag in tags:
        row = known.get(int(tag["id"]))
        if row is None:
            row = WechatTag(account=client.account, tag_id=int(tag["id"]))
            session.add(row)
        row.name, row.count, row.updated_at = (
            str(tag.get("name", ""))[:64],
            int(tag.get("count", 0)),
            now,
        )
    session.commit()
    return len(tags)


def _details(client: WechatClient, openids: Sequence[str], pool: ThreadPoolExecutor) -> list[dict]:
    parts = [openids[i : i + BATCHGET_SIZE] for i in range(0, len(openids), BATCHGET_SIZE)]
    out: list[dict] = []
    for infos in pool.map(lambda part: client.user_batchget(list(part)), parts):
        out.extend(infos)
    return out


def _follower_values(info: dict[str, Any]) -> dict[str, Any]:
    return {
        "unionid": info.get("unionid") or None,
        "language": str(info.get("language") or "")[:16],
        "subscribe_time": int(info["subscribe_time"]) if info.get("subscribe_time") else None,
        "tag_ids": sorted(int(t) for t in info.get("tagid_list") or []),
    }


def store_page(
    conn: Connection, account: str, list_id: int, run_id: int, infos: Sequence[dict[str, Any]]
) -> tuple[int, int]:
    """Write one page of followers (those WeChat says still follow); returns (created, updated).

    New openids become active subscribers with a confirmed subscription to the list; a
    follower that had been marked unfollowed and follows again gets its subscription back;
    anyone else's subscription is left as it is (someone who unsubscribed from the list by
    link stays unsubscribed).
    """
    now = utcnow()
    infos = [i for i in infos if int(i.get("subscribe", 1)) == 1 and i.get("openid")]
    by_openid = {str(i["openid"]): i for i in infos}
    openids = list(by_openid)
    if not openids:
        return 0, 0
    known = _known_followers(conn, account, openids)
    people, new_people = _link_subscribers(conn, list_id, now, by_openid, known)
    inserts, changes, touched = [], [], []
    for openid in openids:
        values = {**_follower_values(by_openid[openid]), "subscriber_id": people.get(openid)}
        row = known.get(openid)
        if row is None:
            inserts.append(
                {
                    **values,
                    "account": account,
                    "openid": openid,
                    "subscribed": True,
                    "seen_run": run_id,
                    "updated_at": now,
                }
            )
        elif _stored_values(row) != values or not row.subscribed:
            changes.append({"b_id": row.id, **{f"b_{k}": v for k, v in values.items()}})
        else:
            touched.append(row.id)
    _insert_followers(conn, inserts)
    _update_followers(conn, run_id, now, changes, touched)
    return len(new_people), len(changes)


def _known_followers(conn: Connection, account: str, openids: list[str]) -> dict[str, Any]:
    """The stored follower rows of these openids, by openid."""
    f = followers.c
    return {
        row.openid: row
        for row in bulk.select_in(
            conn,
            select(
                f.id,
                f.openid,
                f.subscriber_id,
                f.unionid,
                f.language,
                f.subscribe_time,
                f.tag_ids,
                f.subscribed,
            ).where(f.account == account),
            f.openid,
            openids,
        )
    }


def _link_subscribers(
    conn: Connection,
    list_id: int,
    now: datetime,
    by_openid: dict[str, dict[str, Any]],
    known: dict[str, Any],
) -> tuple[dict[str, int], list[str]]:
    """Subscriber ids of the page's openids (new ones created), all of them on the list;
    returns (subscriber id by openid, the openids that became new subscribers)."""
    openids = list(by_openid)
    s = subscribers.c
    people = dict(bulk.select_in(conn, select(s.openid, s.id), s.openid, openids))
    new_people = [o for o in openids if o not in people]
    bulk.insert_subscribers(
        conn,
        [
            {
                "email": None,
                "email_key": None,
                "openid": o,
                "name": "",
                "locale": locale_of(by_openid[o].get("language")),
                "attributes": {},
            }
            for o in new_people
        ],
        list_id,
        now,
    )
    if new_people:
        people.update(bulk.select_in(conn, select(s.openid, s.id), s.openid, new_people))
    fresh = set(new_people)
    old_people = [people[o] for o in openids if o not in fresh]
    if old_people:  # on the list if they were not (a new list, a subscriber added by hand)
        bulk.add_confirmed_subscriptions(conn, list_id, now, ids=old_people)
    refollowed = [people[o] for o, row in known.items() if not row.subscribed and o in people]
    if refollowed:
        bulk.confirm_subscriptions(conn, list_id, refollowed, now)
    return people, new_people


def _stored_values(row: Any) -> dict[str, Any]:
    """A stored follower row in the shape of `_follower_values` plus its subscriber id."""
    return {
        "unionid": row.unionid,
        "language": row.language,
        "subscribe_time": row.subscribe_time,
        "tag_ids": sorted(row.tag_ids or []),
        "subscriber_id": row.subscriber_id,
    }


def _update_followers(
    conn: Connection, run_id: int, now: datetime, changes: list[dict[str, Any]], touched: list[int]
) -> None:
    """Changed followers get their new values; unchanged ones only the run that saw them."""
    f = followers.c
    if changes:
        conn.execute(
            update(followers)
            .where(f.id == bindparam("b_id"))
            .values(
                unionid=bindparam("b_unionid"),
                language=bindparam("b_language"),
                subscribe_time=bindparam("b_subscribe_time"),
                tag_ids=bindparam("b_tag_ids", type_=JSON()),
                subscriber_id=bindparam("b_subscriber_id"),
                subscribed=True,
                seen_run=run_id,
                updated_at=now,
            ),
            changes,
        )
    for part in bulk._parts(conn, touched):
        conn.execute(update(followers).where(bulk._in(conn, f.id, part)).values(seen_run=run_id))


def _insert_followers(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """New follower rows: on PostgreSQL one statement over one JSON parameter (executemany
    costs the driver a round of parameter handling per row), elsewhere executemany."""
    if not rows:
        return
    if not bulk.is_postgres(conn):
        conn.execute(insert(followers), rows)
        return
    payload = [{**r, "updated_at": r["updated_at"].isoformat()} for r in rows]
    conn.execute(
        text(
            "INSERT INTO wechat_followers (account, openid, subscriber_id, unionid, language, "
            "subscribe_time, tag_ids, subscribed, seen_run, updated_at) "
            "SELECT account, openid, subscriber_id, unionid, language, subscribe_time, tag_ids, "
            "subscribed, seen_run, updated_at FROM json_to_recordset(CAST(:rows AS json)) AS t("
            "account text, openid text, subscriber_id integer, unionid text, language text, "
            "subscribe_time integer, tag_ids json, subscribed boolean, seen_run integer, "
            "updated_at timestamptz)"
        ),
        {"rows": json.dumps(payload, ensure_ascii=False)},
    )


def _open_run(session: Session, account: str, list_id: int) -> tuple[WechatSyncRun, bool]:
    run = session.scalars(
        select(WechatSyncRun)
        .where(WechatSyncRun.account == account, WechatSyncRun.status == "running")
        .order_by(WechatSyncRun.id.desc())
    ).first()
    if run is not None and run.list_id == list_id:
        return run, True
    if run is not None:  # a run for another list: it can never finish now
        run.status, run.finished_at = "failed", utcnow()
    run = WechatSyncRun(account=account, list_id=list_id, status="running", next_openid="")
    session.add(run)
    session.commit()
    return run, False


def mark_unfollowed(session: Session, run: WechatSyncRun) -> int:
    """Followers no page of this finished run returned: unfollowed (list subscription ended)."""
    f = WechatFollower
    gone = session.execute(
        select(f.id, f.subscriber_id).where(
            f.account == run.account, f.subscribed.is_(True), f.seen_run != run.id
        )
    ).all()
    now = utcnow()
    ids = [g.id for g in gone]
    people = [g.subscriber_id for g in gone if g.subscriber_id is not None]
    conn = session.connection()
    for part in bulk._parts(conn, ids):
        conn.execute(
            update(followers)
            .where(bulk._in(conn, followers.c.id, part))
            .values(subscribed=False, updated_at=now)
        )
    for part in bulk._parts(conn, people):
        conn.execute(
            update(subscriptions)
            .where(
                and_(
                    subscriptions.c.list_id == run.list_id,
                    subscriptions.c.status != SubscriptionStatus.UNSUBSCRIBED,
                    bulk._in(conn, subscriptions.c.subscriber_id, part),
                )
            )
            .values(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=now)
        )
    for person in people:
        events.record(
            session,
            EventKind.UNSUBSCRIBED,
            channel=Channel.WECHAT,
            subscriber_id=person,
            list_id=run.list_id,
            data={"source": "wechat_sync"},
        )
    return len(gone)


def _fetch_page(
    session: Session, client: WechatClient, run: WechatSyncRun, pool: ThreadPoolExecutor
) -> tuple[dict[str, Any], list[str], list[dict]]:
    """The next page after the run's cursor: (page, its openids, their details). A WeChat
    error is stored on the run (which keeps its cursor) and raised."""
    try:
        page = client.user_get(run.next_openid)
        openids = list((page.get("data") or {}).get("openid") or [])
        openids = [o for o in openids if o]
        infos = _details(client, openids, pool) if openids else []
    except Exception as exc:
        session.rollback()
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        session.commit()
        raise
    return page, openids, infos


def sync_followers(
    engine: Engine,
    client: WechatClient,
    settings: Settings,
    *,
    list_slug: str | None = None,
    progress: Callable[[SyncReport], None] | None = None,
    threads: int = BATCHGET_THREADS,
) -> SyncReport:
    """Page through the account's followers into the list; resumes an interrupted run.

    Raises the WeChat error that stopped it (the run keeps its cursor for the next attempt).
    """
    with Session(engine, expire_on_commit=False) as session:
        mailing_list = ensure_list(session, list_slug or settings.wechat_sync_list)
        session.commit()
        tag_count = sync_tags(session, client)
        run, resumed = _open_run(session, client.account, mailing_list.id)
        report = SyncReport(
            run.id,
            mailing_list.id,
            run.total,
            run.seen,
            run.created,
            run.updated,
            0,
            run.pages,
            resumed,
            tag_count,
        )
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            while True:
                page, openids, infos = _fetch_page(session, client, run, pool)
                if not openids:
                    break
                conn = session.connection()
                created, updated = store_page(conn, client.account, mailing_list.id, run.id, infos)
                run.total = int(page.get("total") or 0)
                run.pages += 1
                run.seen += len(openids)
                run.created += created
                run.updated += updated
                run.next_openid = str(page.get("next_openid") or "")
                run.error = None
                session.commit()  # the page and the cursor together
                report.total, report.seen, report.pages = run.total, run.seen, run.pages
                report.created, report.updated = run.created, run.updated
                if progress is not None:
                    progress(report)
                if not run.next_openid:
                    break
        report.unfollowed = run.unfollowed = mark_unfollowed(session, run)
        run.status, run.finished_at = "finished", utcnow()
        session.commit()
        return report


def apply_follow_change(
    session: Session,
    settings: Settings,
    account: str,
    openid: str,
    following: bool,
    info: dict[str, Any] | None = None,
) -> int | None:
    """One subscribe / unsubscribe (from a verified callback): update that follower at once.

    Returns the subscriber id. Written through `session`; the caller commits.
    """
    mailing_list = ensure_list(session, settings.wechat_sync_list)
    conn = session.connection()
    f = followers.c
    row = conn.execute(
        select(f.id, f.subscriber_id, f.subscribed, f.seen_run).where(
            f.account == account, f.openid == openid
        )
    ).first()
    if following:
        store_page(
            conn,
            account,
            mailing_list.id,
            row.seen_run if row else 0,
            [{"subscribe": 1, "openid": openid, **(info or {})}],
        )
        person = conn.execute(
            select(subscribers.c.id).where(subscribers.c.openid == openid)
        ).scalar()
        kind = EventKind.SUBSCRIBED
    else:
        person = _unfollow(conn, mailing_list.id, openid, row)
        kind = EventKind.UNSUBSCRIBED
    if person is not None:
        events.record(
            session,
            kind,
            channel=Channel.WECHAT,
            subscriber_id=person,
            list_id=mailing_list.id,
            data={"source": "wechat_callback"},
        )
    return person


def _unfollow(conn: Connection, list_id: int, openid: str, row: Any) -> int | None:
    """The follower is marked unfollowed and leaves the followers list; returns its
    subscriber id (None when WeChat's openid is not a subscriber here)."""
    f = followers.c
    person = (
        row.subscriber_id
        if row
        else conn.execute(select(subscribers.c.id).where(subscribers.c.openid == openid)).scalar()
    )
    now = utcnow()
    if row is not None:
        conn.execute(
            update(followers).where(f.id == row.id).values(subscribed=False, updated_at=now)
        )
    if person is not None:
        conn.execute(
            update(subscriptions)
            .where(
                subscriptions.c.list_id == list_id,
                subscriptions.c.subscriber_id == person,
                subscriptions.c.status != SubscriptionStatus.UNSUBSCRIBED,
            )
            .values(status=SubscriptionStatus.UNSUBSCRIBED, unsubscribed_at=now)
        )
    return person
