"""A confirmed list of N readers, loaded fast: the data the send and fan-out benches (and the
scale tests) start from.

On PostgreSQL the database makes the rows itself (INSERT … SELECT over generate_series: a
million subscribers in seconds, not the minutes that a million parameter sets take); on SQLite
rows go in chunks. The tables are deliberately NOT analysed afterwards: the engine's queries
must keep their plans on never-analysed tables (autovacuum may not have run yet after a big
import), and the benches measure exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from dispatch.models import utcnow
from dispatch.models.subscriber import MailingList, Subscriber, Subscription
from dispatch.paths import PROJECT_ROOT

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"
CHUNK = 5000

_PG_SUBSCRIBERS = text(
    """
    INSERT INTO subscribers (email, email_key, name, locale, attributes, status,
                             preferred_channel, created_at)
    SELECT address, address, '读者' || i, 'zh-CN', '{}', 'active', 'email', :now
    FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i,
         LATERAL (SELECT 'reader' || i || '@'
                         || (CAST(:domains AS text[]))[1 + i % CAST(:n AS integer)]
                  AS address) AS a
    """
)
# a university bulletin's readers: mostly QQ and NetEase mailboxes, the campus, a few abroad
MIXED_DOMAINS = (
    ("qq.com",) * 8
    + ("163.com",) * 3
    + ("126.com", "sina.com", "gmail.com", "outlook.com")
    + ("alumni.example.edu.cn",) * 4
)
_PG_SUBSCRIPTIONS = text(
    """
    INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, confirmed_at, source)
    SELECT id, :list_id, 'confirmed', :now, :now, 'bench' FROM subscribers
    WHERE id > :after
    """
)


def reader_address(i: int, domains: Sequence[str] = ("example.net",)) -> str:
    return f"reader{i}@{domains[i % len(domains)]}"


def seed_list(
    engine: Engine,
    recipients: int,
    *,
    slug: str = "bench",
    domains: Sequence[str] = ("example.net",),
    issue_dir: Path | None = SAMPLE_ISSUE,
) -> tuple[int | None, int]:
    """Publish the sample issue (unless `issue_dir` is None) and make one confirmed list of
    `recipients` new subscribers (reader1@… reader<N>@…, over `domains` in turn); returns
    (issue id, list id)."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        issue_id = None
        if issue_dir is not None:
            from dispatch.content.store import publish_source

            issue_id = publish_source(session, issue_dir).id
        mailing_list = MailingList(
            slug=slug, name=slug.title(), description="", optin="single", created_at=now
        )
        session.add(mailing_list)
        session.flush()
        list_id = mailing_list.id
        after = int(session.scalar(select(Subscriber.id).order_by(Subscriber.id.desc())) or 0)
        if session.get_bind().dialect.name == "postgresql":
            params = {"domains": list(domains), "n": len(domains), "now": now}
            params.update(first=1, last=recipients)
            session.execute(_PG_SUBSCRIBERS, params)
            session.execute(_PG_SUBSCRIPTIONS, {"list_id": list_id, "now": now, "after": after})
        else:
            _seed_in_chunks(session, recipients, list_id, domains, after, now)
    return issue_id, list_id


def _seed_in_chunks(
    session: Session, n: int, list_id: int, domains: Sequence[str], after: int, now
) -> None:
    for start in range(1, n + 1, CHUNK):
        rows = [
            {
                "email": reader_address(i, domains),
                "email_key": reader_address(i, domains),
                "name": f"读者{i}",
                "locale": "zh-CN",
                "attributes": {},
                "status": "active",
                "created_at": now,
            }
            for i in range(start, min(start + CHUNK, n + 1))
        ]
        session.execute(insert(Subscriber.__table__), rows)
    ids = session.scalars(select(Subscriber.id).where(Subscriber.id > after)).all()
    for start in range(0, len(ids), CHUNK):
        session.execute(
            insert(Subscription.__table__),
            [
                {
                    "subscriber_id": i,
                    "list_id": list_id,
                    "status": "confirmed",
                    "created_at": now,
                    "confirmed_at": now,
                    "source": "bench",
                }
                for i in ids[start : start + CHUNK]
            ],
        )
