"""The report tally of dispatch.reports.tally done inside PostgreSQL: a few set-based statements.

Why: tallying event by event in Python costs about a millisecond per event once the look-ups
are counted (3,000,000 events: most of an hour). Here one statement counts a whole id range of a
campaign's events with GROUP BY, and Python only classifies the few distinct user agents
(ua-parser and the scanner list stay in Python, the one source of those rules). The rules are
tally.py's, restated in SQL; tests/test_reports_sqltally.py checks both give the same cells on a
varied data set. SQLite (the embedded demo, small campaigns) keeps the Python tally.

How each rule maps:
- people (first per delivery and metric): the smallest event id of that delivery and metric
  among the campaign's events up to the range's end (`firsts`); an event without a delivery
  always counts, as in tally._Tally.first;
- the origin of an open or click: the agent's (Python, per distinct agent), then the network's
  (the inet test below, generated from classify's network lists), then "within SCANNER_SECONDS
  of acceptance"; a click is a scanner's also when ALL_AT_ONCE_LINKS clicks of its delivery fall
  within ALL_AT_ONCE_SECONDS of it (a window over each delivery's clicks);
- keys: hours in UTC (tally.hour_key), link index as text or "-1", provider or "other".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from dispatch.reports import classify
from dispatch.reports.agents import parse_agent
from dispatch.reports.tally import PEOPLE_KINDS, REPORT_KINDS, Cell
from dispatch.vocabulary import EventKind

KINDS = [str(k) for k in REPORT_KINDS]
TRACKED = [str(EventKind.OPENED), str(EventKind.CLICKED)]
# a range of more events than this reads the campaign's history whole, not delivery by delivery
CAMPAIGN_SCOPE_MIN = 50_000
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = f"^{_OCTET}(\\.{_OCTET}){{3}}$"  # what ipaddress.ip_address accepts as IPv4


def _metric_rows() -> str:
    pairs = [(str(kind), metric) for kind, metric in PEOPLE_KINDS.items()]
    pairs += [(str(EventKind.BOUNCE_HARD), "bounced_late")]
    pairs += [(str(EventKind.OPENED), "opened"), (str(EventKind.CLICKED), "clicked")]
    return ", ".join(f"('{kind}', '{metric}')" for kind, metric in pairs)


def _nets(networks: Sequence[Any]) -> str:
    return ", ".join(f"'{net}'" for net in networks if net.version == 4)


def network_origin_sql(ip: str) -> str:
    """classify._network_origin as a SQL expression over the text column `ip` (the first octet
    is compared first: the regular expression and the inet cast run only for candidates)."""
    nets = [*classify.MPP_NETWORKS, *classify.SCANNER_NETWORKS]
    octets = ", ".join(sorted({f"'{str(net.network_address).split('.')[0]}'" for net in nets}))
    return (
        f"CASE WHEN split_part({ip}, '.', 1) IN ({octets}) AND {ip} ~ '{IPV4}' THEN CASE "
        f"WHEN {ip}::inet <<= ANY (ARRAY[{_nets(classify.MPP_NETWORKS)}]::inet[]) "
        f"THEN '{classify.MPP}' "
        f"WHEN {ip}::inet <<= ANY (ARRAY[{_nets(classify.SCANNER_NETWORKS)}]::inet[]) "
        f"THEN '{classify.SCANNER}' ELSE '{classify.PERSON}' END ELSE '{classify.PERSON}' END"
    )


def _string(field: str) -> str:
    """A JSON field of the event's data as text when it is a JSON string (tally._text), else ''."""
    return f"CASE WHEN json_typeof(e.data -> '{field}') = 'string' THEN e.data ->> '{field}' END"


_LINK = (
    "CASE json_typeof(e.data -> 'link_index') "
    "WHEN 'number' THEN CASE WHEN e.data ->> 'link_index' ~ '^-?[0-9]+$' "
    "THEN ((e.data ->> 'link_index')::numeric)::text ELSE '-1' END "
    "WHEN 'boolean' THEN initcap(e.data ->> 'link_index') ELSE '-1' END"
)
_RANGE = "e.campaign_id = :c AND e.id > :a AND e.id <= :b AND e.kind = ANY(:kinds)"
_HIST = {
    "range": "SELECT id, kind, at, delivery_id FROM ev WHERE delivery_id IS NOT NULL",
    "campaign": (
        "SELECT e.id, e.kind, e.occurred_at AS at, e.delivery_id FROM events e "
        "WHERE e.campaign_id = :c AND e.id <= :b AND e.kind = ANY(:kinds) "
        "AND e.delivery_id IS NOT NULL"
    ),
    "deliveries": (
        "SELECT e.id, e.kind, e.occurred_at AS at, e.delivery_id FROM events e "
        "WHERE e.delivery_id = ANY(:dids) AND e.id <= :b AND e.kind = ANY(:kinds)"
    ),
}
_DELIVERIES = {
    "range": "campaign_id = :c",
    "campaign": "campaign_id = :c",
    "deliveries": "id = ANY(:dids)",
}


def _prelude(scope: str) -> str:
    """ev: the range's events; dl: their deliveries; hist: every report event of those
    deliveries up to :b; firsts: each delivery's first event per metric; near: how many clicks of
    its delivery fall around each click; agent: the distinct agents, classified in Python."""
    near = f"interval '{classify.ALL_AT_ONCE_SECONDS} seconds'"
    return f"""
WITH ev AS MATERIALIZED (
  SELECT e.id, e.kind, e.occurred_at AS at, e.delivery_id, {_string("ua")} AS ua,
         {_string("ip")} AS ip, {_LINK} AS link
  FROM events e WHERE {_RANGE}
),
metric_of(kind, metric) AS (VALUES {_metric_rows()}),
dl AS MATERIALIZED (
  SELECT id, provider, subscriber_id, sent_at FROM deliveries WHERE {_DELIVERIES[scope]}
),
hist AS MATERIALIZED ({_HIST[scope]}),
firsts AS (
  SELECT h.delivery_id, m.metric, min(h.id) AS id FROM hist h
  JOIN metric_of m ON m.kind = h.kind GROUP BY h.delivery_id, m.metric
),
near AS (
  SELECT id, count(*) OVER (PARTITION BY delivery_id ORDER BY at
    RANGE BETWEEN {near} PRECEDING AND {near} FOLLOWING) AS n
  FROM hist WHERE kind = '{EventKind.CLICKED}'
),
agent(ua, origin, client, device) AS (
  SELECT * FROM unnest(CAST(:uas AS text[]), CAST(:origins AS text[]),
                       CAST(:clients AS text[]), CAST(:devices AS text[]))
)"""


def _derived() -> str:
    """tr: the range's opens and clicks with their origin, agent and first-ness; aud: one row
    per person added to an audience metric; agents: the client and device cells' rows."""
    early = f"interval '{classify.SCANNER_SECONDS} seconds'"
    return f""",
tr AS MATERIALIZED (
  SELECT ev.kind, ev.link, date_trunc('hour', ev.at AT TIME ZONE 'UTC') AS hour,
    coalesce(nullif(d.provider, ''), 'other') AS provider, d.subscriber_id,
    ag.client, ag.device,
    (ev.delivery_id IS NULL OR f.id = ev.id) AS first,
    CASE WHEN ev.kind = '{EventKind.CLICKED}' AND coalesce(nr.n, 0) >= {classify.ALL_AT_ONCE_LINKS}
           THEN 'scanner'
         WHEN ag.origin <> 'person' THEN ag.origin
         WHEN {network_origin_sql("ev.ip")} <> 'person' THEN {network_origin_sql("ev.ip")}
         WHEN d.sent_at IS NOT NULL AND ev.at < d.sent_at + {early} THEN 'scanner'
         ELSE 'person' END AS raw_origin
  FROM ev
  JOIN metric_of m ON m.kind = ev.kind AND m.metric IN ('opened', 'clicked')
  JOIN agent ag ON ag.ua = coalesce(ev.ua, '')
  LEFT JOIN dl d ON d.id = ev.delivery_id
  LEFT JOIN firsts f ON f.delivery_id = ev.delivery_id AND f.metric = m.metric
  LEFT JOIN near nr ON nr.id = ev.id
),
tracked AS (
  SELECT tr.*, CASE WHEN kind = '{EventKind.CLICKED}' AND raw_origin <> 'person'
    THEN 'scanner' ELSE raw_origin END AS origin FROM tr
),
aud AS (
  SELECT m.metric, coalesce(nullif(d.provider, ''), 'other') AS provider, d.subscriber_id
  FROM ev JOIN metric_of m ON m.kind = ev.kind AND m.metric NOT IN ('opened', 'clicked')
  LEFT JOIN firsts f ON f.delivery_id = ev.delivery_id AND f.metric = m.metric
  LEFT JOIN dl d ON d.id = ev.delivery_id
  WHERE ev.delivery_id IS NULL OR f.id = ev.id
  UNION ALL
  SELECT CASE kind WHEN '{EventKind.OPENED}' THEN 'opens:' ELSE 'clickers:' END || origin,
         provider, subscriber_id
  FROM tracked WHERE first
),
agents AS (
  SELECT CASE kind WHEN '{EventKind.OPENED}' THEN 'opens:' ELSE 'clickers:' END || origin
         AS metric, client, device
  FROM tracked WHERE first
)"""


def _lists_sql(list_ids: Sequence[int]) -> str:
    if not list_ids:
        return ""
    if len(list_ids) == 1:
        return (
            f"UNION ALL SELECT 'list', '{int(list_ids[0])}', metric, count(*) FROM aud GROUP BY 3"
        )
    return (
        "UNION ALL SELECT 'list', s.list_id::text, metric, count(*) FROM aud "
        "JOIN subscriptions s ON s.subscriber_id = aud.subscriber_id "
        "AND s.list_id = ANY(:lists) GROUP BY 2, 3"
    )


def _cells_sql(scope: str, list_ids: Sequence[int]) -> str:
    return (
        _prelude(scope)
        + _derived()
        + """
SELECT 'total', '', metric, count(*) FROM aud GROUP BY 3
UNION ALL SELECT 'provider', provider, metric, count(*) FROM aud GROUP BY 2, 3
UNION ALL SELECT 'client', client, metric, count(*) FROM agents GROUP BY 2, 3
UNION ALL SELECT 'device', device, metric, count(*) FROM agents GROUP BY 2, 3
UNION ALL SELECT 'hour', to_char(hour, 'YYYY-MM-DD"T"HH24'), 'opens:' || origin, count(*)
  FROM tracked
  WHERE kind = 'opened' AND first GROUP BY hour, 3
UNION ALL SELECT 'hour', to_char(hour, 'YYYY-MM-DD"T"HH24'), 'clicks:' || origin, count(*)
  FROM tracked
  WHERE kind = 'clicked' GROUP BY hour, 3
UNION ALL SELECT 'total', '', 'clicks:' || origin, count(*) FROM tracked
  WHERE kind = 'clicked' GROUP BY 3
UNION ALL SELECT 'link', link, 'clicks:' || origin, count(*) FROM tracked
  WHERE kind = 'clicked' GROUP BY 2, 3
"""
        + _lists_sql(list_ids)
    )


def _inputs(session: Session, params: dict[str, Any], dids: bool) -> dict[str, list[Any]]:
    """In one pass over the range: its distinct agents of opens and clicks, classified in
    Python, and (when `dids`) its deliveries."""
    tracked = ", ".join(f"'{kind}'" for kind in TRACKED)
    wanted = "e.delivery_id IS NOT NULL" if dids else "false"
    row = session.execute(
        text(
            f"SELECT array_agg(DISTINCT coalesce({_string('ua')}, '')) "
            f"FILTER (WHERE e.kind IN ({tracked})), "
            f"array_agg(DISTINCT e.delivery_id) FILTER (WHERE {wanted}) "
            f"FROM events e WHERE {_RANGE}"
        ),
        params,
    ).one()
    out: dict[str, list[Any]] = {
        "uas": [],
        "origins": [],
        "clients": [],
        "devices": [],
        "dids": list(row[1] or []),
    }
    for ua in row[0] or []:
        agent = parse_agent(ua or None)
        out["uas"].append(ua)
        out["origins"].append(classify._agent_origin(ua))
        out["clients"].append(agent.client)
        out["devices"].append(agent.device)
    return out


def count_range(
    session: Session,
    campaign_id: int,
    list_ids: Sequence[int],
    after_id: int,
    through_id: int,
    events: int,
) -> Counter[Cell]:
    """The cells of the campaign's report events with after_id < id <= through_id (`events` of
    them: it picks how the history is read), given every event before them."""
    if events <= 0:
        return Counter()
    if after_id == 0:
        scope = "range"
    else:
        scope = "campaign" if events > CAMPAIGN_SCOPE_MIN else "deliveries"
    params: dict[str, Any] = {
        "c": campaign_id,
        "a": after_id,
        "b": through_id,
        "kinds": KINDS,
        "lists": [int(i) for i in list_ids],
    }
    params.update(_inputs(session, params, scope == "deliveries"))
    with _planner(session):
        rows = session.execute(text(_cells_sql(scope, list_ids)), params).all()
    return Counter({(str(r[0]), str(r[1]), str(r[2])): int(r[3]) for r in rows if r[3]})


# hash joins only: the newest events lie past the planner's statistics, and a row estimate of 1
# there turns the joins over the CTEs into nested loops (minutes, not milliseconds); and memory
# enough to keep a million-event range's hashes off the disk
PLANNER = {"enable_nestloop": "off", "work_mem": "64MB"}


@contextmanager
def _planner(session: Session) -> Iterator[None]:
    """PLANNER's settings for one statement (set in the transaction, then put back)."""
    before = {
        name: str(session.execute(text("SELECT current_setting(:n)"), {"n": name}).scalar())
        for name in PLANNER
    }
    for name, value in PLANNER.items():
        session.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})
    try:
        yield
    finally:
        for name, old in before.items():
            session.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": old})


def range_facts(
    session: Session,
    campaign_id: int,
    after_id: int,
    limit: int | None = None,
    before_id: int | None = None,
) -> tuple[int, int]:
    """(how many, last id) of the campaign's report events after `after_id` (and before
    `before_id`), the first `limit` of them when given."""
    cap = "" if limit is None else f" ORDER BY e.id LIMIT {int(limit)}"
    bound = "" if before_id is None else " AND e.id < :before"
    row = session.execute(
        text(
            "SELECT count(*), coalesce(max(id), 0) FROM (SELECT e.id FROM events e "
            f"WHERE e.campaign_id = :c AND e.id > :a AND e.kind = ANY(:kinds){bound}{cap}) AS r"
        ),
        {"c": campaign_id, "a": after_id, "kinds": KINDS, "before": before_id},
    ).one()
    return int(row[0]), int(row[1])


def unsettled_from(
    session: Session, campaign_id: int, after_id: int, cutoff: datetime, now: datetime
) -> int | None:
    """The id of the campaign's first report event after `after_id` not settled yet
    (dated within the last SETTLE_SECONDS: rollup.settled), or None."""
    found = session.execute(
        text(
            "SELECT min(e.id) FROM events e WHERE e.campaign_id = :c AND e.id > :a "
            "AND e.kind = ANY(:kinds) AND e.occurred_at > :cutoff AND e.occurred_at <= :now"
        ),
        {"c": campaign_id, "a": after_id, "kinds": KINDS, "cutoff": cutoff, "now": now},
    ).scalar()
    return None if found is None else int(found)
