"""PostgreSQL array literals (dispatch.pg_arrays) read back by PostgreSQL exactly as the
Python values they were built from: awkward strings, NULL against "NULL", offsets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DataError

from dispatch import pg_arrays
from dispatch.db import make_engine

# what an SMTP reply, a Message-ID or a JSON text may hold that the array syntax cares about
AWKWARD = [
    "",
    "NULL",
    "null",
    None,
    'say "hi"',
    "back\\slash",
    "\\",
    '\\"',
    '"',
    "a,b",
    "{x,y}",
    "}",
    "{",
    "  spaces around  ",
    "line\nbreak\r\n\ttab",
    "退信：用户不存在 (550 5.1.1)",
    "emoji 📮 mail",
    "'single' $1 ARRAY[1] ::text",
    "\x01\x1f control \x7f",
    "\u2028 separator \u2029",
    "x" * 3000,
]

OFFSETS = [
    datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC),
    datetime(2026, 3, 1, 9, 30, 15, tzinfo=timezone(timedelta(hours=8))),
    datetime(2026, 3, 1, 23, 59, 59, 1, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(2026, 3, 1, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=45))),
    # a local mean time offset with seconds (zoneinfo gives such offsets before ~1900)
    datetime(1900, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=8, minutes=5, seconds=43))),
    None,
]


@pytest.fixture(scope="module")
def pg(pg_database_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_database_url)
    yield engine
    engine.dispose()


def _read_back(engine: Engine, literal: str, array_type: str) -> list:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT CAST(:a AS {array_type})"), {"a": literal}).scalar_one()


def test_the_literals_are_written_as_postgresql_documents_them():
    assert pg_arrays.ints([1, None, -3, 2**40]) == "{1,NULL,-3,1099511627776}"
    assert pg_arrays.texts(["NULL", None, "", 'a"b\\c', "x,y"]) == (
        '{"NULL",NULL,"","a\\"b\\\\c","x,y"}'
    )
    now = datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    assert pg_arrays.timestamps([now, None, now]) == (
        "{2026-03-01T09:30:00+08:00,NULL,2026-03-01T09:30:00+08:00}"
    )
    # a naive value is UTC (as the UTCDateTime column type takes it)
    assert pg_arrays.timestamp(datetime(2026, 3, 1, 9, 30)) == "2026-03-01T09:30:00+00:00"
    assert pg_arrays.ints([]) == pg_arrays.texts([]) == pg_arrays.timestamps([]) == "{}"


@pytest.mark.parametrize("array_type", ["text[]", "varchar[]"])
def test_awkward_strings_and_nulls_round_trip(pg: Engine, array_type: str):
    assert _read_back(pg, pg_arrays.texts(AWKWARD), array_type) == AWKWARD
    for value in AWKWARD:  # each one alone too (a lone NULL, a lone empty string)
        assert _read_back(pg, pg_arrays.texts([value]), array_type) == [value]


def test_json_texts_round_trip(pg: Engine):
    import json

    values = [{"text": s, "nested": [s, {"k": s}]} for s in AWKWARD if s is not None]
    values.append({"nul": "a\x00b"})  # escaped as \u0000 by json.dumps: json keeps it
    got = _read_back(pg, pg_arrays.texts([json.dumps(v) for v in values]), "json[]")
    assert got == values


def test_integers_round_trip(pg: Engine):
    values = [0, -1, 2**31, -(2**63), 2**63 - 1, None, 250]
    assert _read_back(pg, pg_arrays.ints(values), "bigint[]") == values


def test_timestamps_with_offsets_round_trip_to_the_same_instants(pg: Engine):
    got = _read_back(pg, pg_arrays.timestamps(OFFSETS), "timestamptz[]")
    assert got == OFFSETS  # aware datetimes compare as instants
    assert all(g is None or g.tzinfo is not None for g in got)


def test_a_nul_character_is_refused_as_the_list_dumper_refused_it(pg: Engine):
    """PostgreSQL text cannot hold NUL: the literal is refused with the very error psycopg's
    list dumper (the old path) raised, never stored cut short or silently changed."""
    for param in (["ok", "a\x00b"], pg_arrays.texts(["ok", "a\x00b"])):
        with pytest.raises(DataError, match="cannot contain NUL"):
            _read_back(pg, param, "text[]")  # type: ignore[arg-type]
