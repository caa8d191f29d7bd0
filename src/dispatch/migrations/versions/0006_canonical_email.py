"""canonical email keys: subscribers and suppressions compared on canonical_email

Revision ID: i18_canonical_email
Revises: 0005

Adds `email_key` (lower-case local part, IDNA domain) to subscribers and suppressions, fills it,
merges subscribers that turn out to be one mailbox written in different cases, and makes the
key unique. Every merge is REPORTED: one `merged` event per mailbox (kept id, merged ids, the
addresses as they were written) that `dispatch subscribers merges` lists, and one log line.

How a merge decides (the safe side always wins: nobody who left is mailed again):
- the oldest row (lowest id) is kept, with its address as written;
- the person's status is the most restrictive of the group (blocklisted > complained >
  bounced > unsubscribed > active);
- per list, unsubscribed beats confirmed beats unconfirmed;
- name, openid and attributes are filled from the others where the kept row has none;
- deliveries and events of merged rows point to the kept row (unless the kept row already
  has a delivery of that campaign, then the old row's delivery keeps its id as history).
Duplicate suppressions of one mailbox keep the oldest row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from dispatch.canonical import canonical_email
from dispatch.models.base import UTCDateTime

revision = "i18_canonical_email"
down_revision = "0005"
branch_labels = None
depends_on = None

STATUS_RANK = {"active": 0, "unsubscribed": 1, "bounced": 2, "complained": 3, "blocklisted": 4}
SUBSCRIPTION_RANK = {"unconfirmed": 0, "confirmed": 1, "unsubscribed": 2}

subscribers = sa.table(
    "subscribers",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("email_key", sa.String),
    sa.column("openid", sa.String),
    sa.column("name", sa.String),
    sa.column("attributes", sa.JSON),
    sa.column("status", sa.String),
    sa.column("confirmed_at", UTCDateTime),
)
subscriptions = sa.table(
    "subscriptions",
    sa.column("subscriber_id", sa.Integer),
    sa.column("list_id", sa.Integer),
    sa.column("status", sa.String),
    sa.column("created_at", UTCDateTime),
    sa.column("confirmed_at", UTCDateTime),
    sa.column("unsubscribed_at", UTCDateTime),
)
suppressions = sa.table(
    "suppressions",
    sa.column("id", sa.Integer),
    sa.column("email", sa.String),
    sa.column("email_key", sa.String),
)
deliveries = sa.table(
    "deliveries", sa.column("campaign_id", sa.Integer), sa.column("subscriber_id", sa.Integer)
)
events = sa.table(
    "events",
    sa.column("kind", sa.String),
    sa.column("channel", sa.String),
    sa.column("occurred_at", UTCDateTime),
    sa.column("subscriber_id", sa.Integer),
    sa.column("data", sa.JSON),
)


def _log():
    from dispatch.log import get_logger

    return get_logger("dispatch.migrations")


def _fill_keys(conn: sa.Connection, table: sa.TableClause) -> dict[str, list[int]]:
    """Set email_key on every row with an email; return key -> ids (oldest first)."""
    groups: dict[str, list[int]] = defaultdict(list)
    updates = []
    rows = conn.execute(
        sa.select(table.c.id, table.c.email).where(table.c.email.is_not(None)).order_by(table.c.id)
    )
    for row_id, email in rows:
        key = canonical_email(email)
        groups[key].append(row_id)
        updates.append({"b_id": row_id, "b_key": key})
    for i in range(0, len(updates), 1000):
        conn.execute(
            table.update()
            .where(table.c.id == sa.bindparam("b_id"))
            .values(email_key=sa.bindparam("b_key")),
            updates[i : i + 1000],
        )
    return {key: ids for key, ids in groups.items() if len(ids) > 1}


def _merge_group(conn: sa.Connection, key: str, ids: list[int], now: datetime) -> None:
    s, sub = subscribers, subscriptions
    rows = {r.id: r for r in conn.execute(sa.select(s).where(s.c.id.in_(ids)))}
    keep, others = ids[0], ids[1:]
    kept = rows[keep]
    status = max((rows[i].status for i in ids), key=lambda v: STATUS_RANK.get(v, 4))
    attributes: dict = {}
    for i in reversed(ids):
        value = rows[i].attributes
        if isinstance(value, str):
            value = json.loads(value or "{}")
        attributes.update(value or {})
    name = kept.name or next((rows[i].name for i in others if rows[i].name), "")
    openid = kept.openid or next((rows[i].openid for i in others if rows[i].openid), None)
    confirmed = [rows[i].confirmed_at for i in ids if rows[i].confirmed_at is not None]

    per_list: dict[int, list] = defaultdict(list)
    for rec in conn.execute(sa.select(sub).where(sub.c.subscriber_id.in_(ids))):
        per_list[rec.list_id].append(rec)
    conn.execute(sub.delete().where(sub.c.subscriber_id.in_(others)))
    for list_id, recs in per_list.items():
        best = max(recs, key=lambda r: SUBSCRIPTION_RANK.get(r.status, 2))
        values = {
            "status": best.status,
            "created_at": min(r.created_at for r in recs),
            "confirmed_at": best.confirmed_at,
            "unsubscribed_at": best.unsubscribed_at,
        }
        if any(r.subscriber_id == keep for r in recs):
            conn.execute(
                sub.update()
                .where(sub.c.subscriber_id == keep, sub.c.list_id == list_id)
                .values(**values)
            )
        else:
            conn.execute(sub.insert().values(subscriber_id=keep, list_id=list_id, **values))

    taken = sa.select(deliveries.c.campaign_id).where(deliveries.c.subscriber_id == keep)
    conn.execute(
        deliveries.update()
        .where(deliveries.c.subscriber_id.in_(others), deliveries.c.campaign_id.not_in(taken))
        .values(subscriber_id=keep)
    )
    conn.execute(
        events.update().where(events.c.subscriber_id.in_(others)).values(subscriber_id=keep)
    )
    conn.execute(s.delete().where(s.c.id.in_(others)))  # before the openid moves (unique)
    conn.execute(
        s.update()
        .where(s.c.id == keep)
        .values(
            status=status,
            name=name,
            openid=openid,
            attributes=attributes,
            confirmed_at=min(confirmed) if confirmed else None,
        )
    )
    conn.execute(
        events.insert().values(
            kind="merged",
            channel="email",
            occurred_at=now,
            subscriber_id=keep,
            data={
                "table": "subscribers",
                "source": revision,
                "key": key,
                "kept": keep,
                "merged": others,
                "addresses": [rows[i].email for i in ids],
                "status": status,
            },
        )
    )
    _log().warning("subscribers.merged", kept=keep, merged=others, status=status)


def _merge_suppressions(conn: sa.Connection, key: str, ids: list[int], now: datetime) -> None:
    addresses = [
        r.email
        for r in conn.execute(
            sa.select(suppressions.c.email)
            .where(suppressions.c.id.in_(ids))
            .order_by(suppressions.c.id)
        )
    ]
    conn.execute(suppressions.delete().where(suppressions.c.id.in_(ids[1:])))
    conn.execute(
        events.insert().values(
            kind="merged",
            channel="email",
            occurred_at=now,
            subscriber_id=None,
            data={
                "table": "suppressions",
                "source": revision,
                "key": key,
                "kept": ids[0],
                "merged": ids[1:],
                "addresses": addresses,
            },
        )
    )
    _log().warning("suppressions.merged", kept=ids[0], merged=ids[1:])


def upgrade() -> None:
    op.add_column("subscribers", sa.Column("email_key", sa.String(320), nullable=True))
    op.add_column("suppressions", sa.Column("email_key", sa.String(320), nullable=True))
    conn = op.get_bind()
    now = datetime.now(UTC)
    for key, ids in _fill_keys(conn, subscribers).items():
        _merge_group(conn, key, ids, now)
    for key, ids in _fill_keys(conn, suppressions).items():
        _merge_suppressions(conn, key, ids, now)
    op.create_index("uq_subscribers_email_key", "subscribers", ["email_key"], unique=True)
    op.create_index("uq_suppressions_email_key", "suppressions", ["email_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_suppressions_email_key", table_name="suppressions")
    op.drop_index("uq_subscribers_email_key", table_name="subscribers")
    op.drop_column("suppressions", "email_key")
    op.drop_column("subscribers", "email_key")
