"""Record opens and clicks: the first per delivery (and link) is an Event, later ones a count.

One small transaction per hit: an atomic upsert of the (delivery, link) counter returns the
new count, and only when it is 1 is the `opened`/`clicked` event written, in the same commit.
Two racing hits both bump the counter but only one sees 1, so the event is written once. On
PostgreSQL both happen in a single statement (a data-modifying CTE, autocommit), one round
trip per hit.

Why plain SQL on the pooled DBAPI connection here (and not the ORM, as elsewhere): this is the
hot path (target 1,000 hits/s on two cores) and SQLAlchemy's per-statement machinery cost more
than the database work. The SQL is the same on SQLite (≥ 3.35) and PostgreSQL; values pass
through the columns' own SQLAlchemy bind processors, so rows are stored exactly as the models
write them, and the event row comes from `dispatch.events.event_row` like every other event.

On SQLite a process-wide lock serialises the hit transactions of this process, so threads
queue in Python instead of spinning in SQLite's busy handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from dispatch.events import EVENT_COLUMNS, event_row
from dispatch.log import get_logger
from dispatch.models import Event, EventDaily, utcnow
from dispatch.models.web import OPEN_LINK_INDEX, TrackingHit
from dispatch.vocabulary import Channel, EventKind

log = get_logger("dispatch.web.tracking")
_sqlite_write_lock = threading.Lock()
REF_CACHE_SIZE = 200_000  # delivery id → DeliveryRef, about 200 bytes each

REF_SQL = (
    "SELECT d.campaign_id, d.subscriber_id, c.channel, r.campaign_id FROM deliveries d "
    "JOIN campaigns c ON c.id = d.campaign_id "
    "LEFT JOIN campaign_rollups r ON r.campaign_id = d.campaign_id WHERE d.id = {p}"
)
BUMP_SQL = (
    "INSERT INTO tracking_hits (delivery_id, link_index, campaign_id, count, first_at, last_at) "
    "VALUES ({p}, {p}, {p}, 1, {p}, {p}) ON CONFLICT (delivery_id, link_index) "
    "DO UPDATE SET count = tracking_hits.count + 1, last_at = excluded.last_at RETURNING count"
)
# PostgreSQL: counter and first-hit event in ONE statement (a data-modifying CTE) in autocommit,
# so a hit costs one round trip; SQLite (in-process, no round trips) runs the two statements
_EVENT_INSERT = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
BUMP_AND_EVENT_PG = (
    "WITH bump AS ("
    + BUMP_SQL.format(p="%s")
    + ") "
    + _EVENT_INSERT
    + f"SELECT {', '.join(['%s'] * len(EVENT_COLUMNS))} FROM bump WHERE bump.count = 1"
)
EVENT_SQL = _EVENT_INSERT + f"VALUES ({', '.join(['{p}'] * len(EVENT_COLUMNS))})"
# a campaign whose detail was rolled up (dispatch.rollup): a hit only adds to its day's count
DAILY_HIT_SQL = (
    "INSERT INTO event_daily (campaign_id, kind, link_index, day, events, people, hits) "
    "VALUES ({p}, {p}, {p}, {p}, 0, 0, 1) ON CONFLICT (campaign_id, kind, link_index, day) "
    "DO UPDATE SET hits = event_daily.hits + 1"
)


@dataclass(frozen=True)
class DeliveryRef:
    delivery_id: int
    campaign_id: int
    subscriber_id: int | None
    list_id: int | None
    channel: str
    rolled_up: bool = False  # the campaign's detail is rolled into daily counts


def _processor(column: Any, engine: Engine) -> Callable[[Any], Any]:
    """The column type's own bind processor for this dialect (identity when it has none)."""
    proc = column.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
    return proc or (lambda value: value)


class HitRecorder:
    """SQL prepared once per engine; `record_open`/`record_click` run in one short transaction."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        placeholder = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self._ref_sql = REF_SQL.format(p=placeholder)
        self._bump_sql = BUMP_SQL.format(p=placeholder)
        self._event_sql = EVENT_SQL.format(p=placeholder)
        self._daily_hit_sql = DAILY_HIT_SQL.format(p=placeholder)
        self._day = _processor(EventDaily.__table__.c.day, engine)
        self._bump_and_event = BUMP_AND_EVENT_PG
        self._hit_time = _processor(TrackingHit.__table__.c.last_at, engine)
        self._event_time = _processor(Event.__table__.c.occurred_at, engine)
        self._event_data = _processor(Event.__table__.c.data, engine)
        self._refs: dict[int, DeliveryRef] = {}
        self._local = threading.local()
        self._opened: list[Any] = []
        self._opened_lock = threading.Lock()
        self.db_errors: tuple[type[BaseException], ...] = (
            SQLAlchemyError,
            engine.dialect.loaded_dbapi.Error,
        )

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A DBAPI cursor in one transaction (serialised per process on SQLite).

        Each thread keeps one connection of its own, detached from the pool: a pool checkout
        would add a pre-ping and a reset round trip to every hit. A connection that failed is
        dropped and the next hit opens a new one.
        """
        with _sqlite_write_lock if self.is_sqlite else nullcontext():
            raw = getattr(self._local, "connection", None)
            if raw is None:
                proxied = self.engine.raw_connection()
                proxied.detach()
                if not self.is_sqlite:
                    # an open or a click is worth less than a WAL flush per hit: a crash may lose
                    # the last fraction of a second of hits, never corrupt or half-write one
                    setup = proxied.cursor()
                    setup.execute("SET synchronous_commit = off")
                    setup.close()
                    proxied.commit()
                    dbapi = proxied.dbapi_connection
                    assert dbapi is not None  # a live connection: just checked out
                    dbapi.autocommit = True  # each hit is one statement
                raw = self._local.connection = proxied
                with self._opened_lock:
                    self._opened.append(proxied)
            cursor = raw.cursor()
            try:
                yield cursor
                raw.commit()
            except BaseException as exc:
                try:
                    raw.rollback()
                except self.db_errors:
                    pass
                if isinstance(exc, self.db_errors):
                    self._local.connection = None
                    try:
                        raw.close()
                    except self.db_errors:
                        pass
                raise
            finally:
                try:
                    cursor.close()
                except self.db_errors:
                    pass

    def close(self) -> None:
        """Close every connection the recorder opened (app shutdown)."""
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for raw in opened:
            try:
                raw.close()
            except self.db_errors:
                pass
        self._local = threading.local()

    def ref(self, cursor: Any, delivery_id: int) -> DeliveryRef | None:
        """The delivery's campaign, subscriber and channel; cached, as they never change."""
        cached = self._refs.get(delivery_id)
        if cached is not None:
            return cached
        cursor.execute(self._ref_sql, (delivery_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        ref = DeliveryRef(
            delivery_id, int(row[0]), row[1], None, row[2] or Channel.EMAIL, row[3] is not None
        )
        if len(self._refs) >= REF_CACHE_SIZE:
            self._refs.pop(next(iter(self._refs)))  # oldest first (dicts keep insertion order)
        self._refs[delivery_id] = ref
        return ref

    def _count(self, cursor: Any, ref: DeliveryRef, link_index: int) -> int:
        now = self._hit_time(utcnow())
        cursor.execute(self._bump_sql, (ref.delivery_id, link_index, ref.campaign_id, now, now))
        return int(cursor.fetchone()[0])

    def _event_params(self, kind: str, ref: DeliveryRef, data: dict[str, Any]) -> tuple:
        """The event row (events.event_row) as DBAPI parameters in EVENT_COLUMNS order."""
        row = event_row(
            kind,
            channel=ref.channel,
            campaign_id=ref.campaign_id,
            delivery_id=ref.delivery_id,
            subscriber_id=ref.subscriber_id,
            list_id=ref.list_id,
            data=data,
        )
        row["occurred_at"] = self._event_time(row["occurred_at"])
        row["data"] = self._event_data(row["data"])
        return tuple(row[column] for column in EVENT_COLUMNS)

    def _record(self, cursor: Any, kind: str, ref: DeliveryRef, data: dict[str, Any]) -> None:
        cursor.execute(self._event_sql, self._event_params(kind, ref, data))

    def _hit(
        self, cursor: Any, kind: str, ref: DeliveryRef, link_index: int, data: dict[str, Any]
    ) -> bool:
        """Bump the counter; write the event when this was the first hit. True if it was."""
        if ref.rolled_up:
            day = self._day(utcnow().date())
            cursor.execute(self._daily_hit_sql, (ref.campaign_id, str(kind), link_index, day))
            return False
        if self.is_sqlite:
            first = self._count(cursor, ref, link_index) == 1
            if first:
                self._record(cursor, kind, ref, data)
            return first
        now = self._hit_time(utcnow())
        bump = (ref.delivery_id, link_index, ref.campaign_id, now, now)
        cursor.execute(self._bump_and_event, bump + self._event_params(kind, ref, data))
        return cursor.rowcount == 1

    def record_open(
        self, cursor: Any, ref: DeliveryRef, source: dict[str, str] | None = None
    ) -> bool:
        """Count an open; True when it was the delivery's first (and the event was written,
        with `source`: the user agent and address of the hit, for the reports)."""
        first = self._hit(cursor, EventKind.OPENED, ref, OPEN_LINK_INDEX, dict(source or {}))
        if first:
            log.debug("tracking.opened", campaign_id=ref.campaign_id, delivery_id=ref.delivery_id)
        return first

    def record_click(
        self,
        cursor: Any,
        ref: DeliveryRef,
        link_index: int,
        url: str,
        source: dict[str, str] | None = None,
    ) -> bool:
        """Count a click on link `link_index`; True when it was the first for that link."""
        data = {"link_index": link_index, "url": url, **(source or {})}
        first = self._hit(cursor, EventKind.CLICKED, ref, link_index, data)
        if first:
            log.debug(
                "tracking.clicked",
                campaign_id=ref.campaign_id,
                delivery_id=ref.delivery_id,
                link_index=link_index,
            )
        return first
