"""The send path's queries cost the same whatever the size of the list, whatever the planner's
statistics say (issue 17 item 1).

On a PostgreSQL database of its own holding a 20,000-person list that was never analysed (as
after a big import with autovacuum off), every statement one `deliver_batch` runs is replayed
with EXPLAIN ANALYZE (in a transaction rolled back) and no plan node may touch more rows than a
few batches' worth. A plan that walks the list (the eligibility re-check driven from
ix_subscriptions_list_status: 0.7 s per 25 people at 200,000) or sorts the campaign's finished
rows (the reputation guard's window) touches thousands. Then again after ANALYZE, whose
statistics (taken at fan-out) say that nothing has been sent.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, text, update
from sqlalchemy.orm import Session

from dispatch.config import load_settings
from dispatch.db import make_engine, upgrade
from dispatch.delivery import campaigns
from dispatch.delivery.engine import deliver_batch
from dispatch.dev.bench.dbstats import statement_kind
from dispatch.dev.bench.population import seed_list
from dispatch.models import Delivery, utcnow
from dispatch.subscribers import service as subscribers
from dispatch.vocabulary import DeliveryStatus
from test_delivery_support import channel_factory

LIST_SIZE = 20_000
ALREADY_SENT = 15_000  # a campaign well under way: most rows finished (dead versions kept)
MOST_ROWS_TOUCHED = 2_000  # per plan node (a batch is 200 rows; the list is 20,000)


@pytest.fixture(scope="module")
def big_engine(pg_database_url: str) -> Iterator[Engine]:
    """A database of this module's own: the shared one's tables are emptied and analysed by
    other tests, this one's statistics must be those of a fresh bulk load."""
    admin = make_engine(pg_database_url, isolation_level="AUTOCOMMIT")
    name = f"dispatch_plans_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = pg_database_url.rpartition("/")[0] + "/" + name
    engine = make_engine(url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Recorder:
    """Every statement the engine runs, grouped by transaction, with its parameters."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.transactions: list[list[tuple[str, dict]]] = [[]]

    def __enter__(self) -> Recorder:
        event.listen(self.engine, "before_cursor_execute", self._statement)
        event.listen(self.engine, "commit", self._end)
        event.listen(self.engine, "rollback", self._end)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._statement)
        event.remove(self.engine, "commit", self._end)
        event.remove(self.engine, "rollback", self._end)

    def _statement(self, conn, cursor, statement, parameters, context, executemany) -> None:
        params = parameters[0] if executemany and parameters else parameters
        self.transactions[-1].append((statement, params or {}))

    def _end(self, conn) -> None:
        if self.transactions[-1]:
            self.transactions.append([])


def _rows_touched(node: dict) -> int:
    here = node.get("Actual Rows", 0) + sum(
        node.get(key, 0)
        for key in (
            "Rows Removed by Filter",
            "Rows Removed by Join Filter",
            "Rows Removed by Index Recheck",
        )
    )
    return max(
        [here * max(node.get("Actual Loops", 1), 1)]
        + [_rows_touched(child) for child in node.get("Plans", [])]
    )


def _worst_plans(engine: Engine, recorder: Recorder) -> list[tuple[int, str]]:
    """(rows touched by the busiest node, statement) of every replayed statement."""
    out = []
    with engine.connect() as conn:
        for transaction in recorder.transactions:
            with conn.begin() as tx:
                for statement, params in transaction:
                    head = statement.lstrip().split(None, 1)[0].upper()
                    if head == "SET":
                        conn.exec_driver_sql(statement, params)
                        continue
                    if head not in ("SELECT", "UPDATE", "INSERT", "DELETE", "WITH"):
                        continue
                    plan = conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params
                    ).scalar()
                    plan = json.loads(plan) if isinstance(plan, str) else plan
                    out.append((_rows_touched(plan[0]["Plan"]), statement))
                tx.rollback()
    return out


def _campaign_under_way(engine: Engine, settings) -> int:
    issue_id, list_id = seed_list(engine, LIST_SIZE)
    with Session(engine) as session, session.begin():
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue_id, channel="email", list_ids=[list_id]
        )
        campaigns.begin_running(session, settings, campaign.id)  # no ANALYZE: as after import
        d = Delivery.__table__.c
        session.execute(
            update(Delivery.__table__)
            .where(d.campaign_id == campaign.id, d.batch_no < ALREADY_SENT // settings.batch_size)
            .values(status=DeliveryStatus.SENT.value, attempts=1, updated_at=utcnow())
        )
        subscribers.suppress(session, email="reader19999@example.net", reason="manual")
        return campaign.id


def _as_the_server_shows_it(statement: str) -> str:
    """pg_stat_activity's text of a statement: psycopg numbers `%(name)s` as $1, $2 … in
    order of first appearance."""
    numbers: dict[str, int] = {}
    return re.sub(
        r"%\((\w+)\)s",
        lambda m: f"${numbers.setdefault(m.group(1), len(numbers) + 1)}",
        statement,
    )


@pytest.mark.slow
def test_hot_path_plans_do_not_grow_with_the_list(big_engine: Engine, tmp_path) -> None:
    settings = load_settings(env={}).replace(
        review_required=False,  # the sample is sent without an approval step
        data_dir=tmp_path / "var",
        database_url=big_engine.url.render_as_string(hide_password=False),
        secret_key="test-secret-key-not-for-production",
        provider_mx_lookup=False,
    )
    campaign_id = _campaign_under_way(big_engine, settings)
    last_batch = (LIST_SIZE - 1) // settings.batch_size
    for batch_no, analysed in ((ALREADY_SENT // settings.batch_size, False), (last_batch, True)):
        if analysed:  # statistics now say: every delivery pending, nothing sent
            with big_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
        sent: list = []
        with Recorder(big_engine) as recorder:
            report = deliver_batch(
                big_engine, settings, campaign_id, batch_no, channel_factory=channel_factory(sent)
            )
        assert report.claimed == settings.batch_size
        if batch_no == last_batch:
            assert report.skipped == 1  # the suppressed reader: the re-check still works
        worst = _worst_plans(big_engine, recorder)
        assert len(worst) >= 6
        too_many = [(n, s[:200]) for n, s in worst if n > MOST_ROWS_TOUCHED]
        assert not too_many, f"analysed={analysed}: plans touching the whole list: {too_many}"
        # `dispatch bench send` names where the database's time goes by these statements
        unnamed = {
            s[:120]
            for transaction in recorder.transactions
            for s, _ in transaction
            if statement_kind(_as_the_server_shows_it(s)).startswith("other")
        }
        assert not unnamed, f"statements the bench cannot name (dbstats.STATEMENT_KINDS): {unnamed}"
