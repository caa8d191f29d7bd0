"""CSV import: exact counts by reason, idempotent re-import, encodings, consent rules, resume."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from dispatch.models import Event
from dispatch.models.subscriber import Subscriber, Subscription, Suppression
from dispatch.subscribers import service
from dispatch.subscribers.csv_export import export_csv
from dispatch.subscribers.csv_import import CsvImportError, ImportAborted, import_csv

HEADER = ["email", "name", "locale", "openid", "company"]
ROWS = 20_000
# position within every 100 rows -> the kind of bad row there (1 % each)
BAD_AT = {
    10: "invalid_email",
    11: "duplicate_in_file",
    12: "unknown_locale",
    13: "missing_address",
    14: "too_many_fields",
    15: "field_too_long",
}
INVALID = [
    "no-at-sign.example.org",
    "a@@b.org",
    "two..dots@example.org",
    "space in@example.org",
    "x@-bad.org",
]


def _good(i: int) -> list[str]:
    return [
        f"user{i}@Example{i % 7}.ORG",
        f"用户{i}",
        "en" if i % 4 == 0 else "zh-CN",
        f"o{i:08d}" if i % 9 == 0 else "",
        f"公司{i % 13}",
    ]


def write_mixed_file(path: Path, rows: int = ROWS) -> dict[str, list[int]]:
    """Write the test file; returns the expected bad line numbers by reason."""
    bad: dict[str, list[int]] = {reason: [] for reason in BAD_AT.values()}
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            line = i + 2
            kind = BAD_AT.get(i % 100)
            row = _good(i)
            if kind == "invalid_email":
                row[0] = INVALID[(i // 100) % len(INVALID)]
            elif kind == "duplicate_in_file":
                row = _good(i - 11)  # a good row earlier in the file, domain case changed
                row[0] = row[0].replace("Example", "EXAMPLE")
                row[3] = ""
            elif kind == "unknown_locale":
                row[2] = "fr"
            elif kind == "missing_address":
                row[0], row[3] = "", ""
            elif kind == "too_many_fields":
                row.append("surplus")
            elif kind == "field_too_long":
                row[1] = "长" * 201
            if kind:
                bad[kind].append(line)
            writer.writerow(row)
    return bad


def _count(session: Session, model) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def news(session: Session):
    mailing_list = service.create_list(session, "news", "News")
    session.commit()
    return mailing_list


def test_twenty_thousand_rows_exact_counts_and_idempotent(
    engine: Engine, session: Session, news, tmp_path
):
    path = tmp_path / "mixed.csv"
    bad = write_mixed_file(path)
    good = ROWS - sum(len(lines) for lines in bad.values())
    assert good == 18_800

    result = import_csv(engine, path, "news")
    assert result.encoding == "utf-8-sig"
    assert (result.imported, result.updated, result.unchanged, result.resubscribed) == (
        good,
        0,
        0,
        0,
    )
    assert dict(result.skipped) == {reason: 200 for reason in BAD_AT.values()}
    for reason, lines in bad.items():
        assert [p.line for p in result.problems if p.reason == reason] == lines
    assert "two..dots@example.org" in next(
        p.detail for p in result.problems if p.line == bad["invalid_email"][2]
    )
    assert "imported 18800" in result.summary() and "duplicate_in_file 200" in result.summary()
    assert "导入 18800" in result.summary()

    assert _count(session, Subscriber) == good
    assert (
        session.scalar(
            select(func.count())
            .select_from(Subscription)
            .where(Subscription.list_id == news.id, Subscription.status == "confirmed")
        )
        == good
    )
    stored = session.scalar(select(Subscriber).where(Subscriber.email == "user9@example2.org"))
    assert (stored.name, stored.locale, stored.openid, stored.attributes) == (
        "用户9",
        "zh-CN",
        "o00000009",
        {"company": "公司9"},
    )
    assert service.count_recipients(session, [news.id], "email") == good

    again = import_csv(engine, path, "news")
    assert (again.imported, again.updated, again.unchanged) == (0, 0, good)
    assert dict(again.skipped) == dict(result.skipped)
    assert _count(session, Subscriber) == good


def test_dry_run_writes_nothing_and_counts_the_same(engine, session, news, tmp_path):
    path = tmp_path / "mixed.csv"
    write_mixed_file(path, rows=1000)
    dry = import_csv(engine, path, "news", dry_run=True)
    assert _count(session, Subscriber) == 0
    real = import_csv(engine, path, "news")
    assert (dry.imported, dict(dry.skipped)) == (real.imported, dict(real.skipped))
    assert dry.dry_run and "dry run" in dry.summary()


@pytest.mark.parametrize("encoding", ["gb18030", "utf-8-sig", "utf-8"])
def test_encodings_keep_chinese_names(engine, session, news, tmp_path, encoding):
    path = tmp_path / f"{encoding}.csv"
    text_ = (
        "邮箱,姓名,语言,部门\r\n"
        "wang@example.org,王小明,中文,标准化研究所\r\n"
        "zhao@example.org,赵䶮,en,质量部\r\n"
    )
    path.write_bytes(text_.encode(encoding))
    result = import_csv(engine, path, "news")
    assert result.imported == 2, result.problems
    assert result.encoding == ("gb18030" if encoding == "gb18030" else "utf-8-sig")
    names = dict(session.execute(select(Subscriber.email, Subscriber.name)).all())
    assert names == {"wang@example.org": "王小明", "zhao@example.org": "赵䶮"}
    assert session.scalar(
        select(Subscriber.attributes).where(Subscriber.email == "wang@example.org")
    ) == {"部门": "标准化研究所"}


def test_header_is_required(engine, news, tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text("a@example.org,Alice,en\r\n", encoding="utf-8")
    with pytest.raises(CsvImportError, match=r"noheader.csv:1: header row missing"):
        import_csv(engine, path, "news")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CsvImportError, match="empty file"):
        import_csv(engine, empty, "news")
    with pytest.raises(CsvImportError, match="no list 'nope'"):
        import_csv(engine, path, "nope")
    garbage = tmp_path / "binary.csv"
    garbage.write_bytes(b"email\r\na@example.org\r\n\xff\xff\xff\r\n")
    with pytest.raises(CsvImportError, match=r"binary.csv:3: neither UTF-8 nor GB18030"):
        import_csv(engine, garbage, "news")


def test_unsubscribed_and_suppressed_stay_out(engine, session, news, tmp_path):
    other = service.create_list(session, "other", "Other")
    left = service.add_subscriber(session, email="left@example.org", name="Left")
    gone = service.add_subscriber(session, email="gone@example.org")
    both = service.add_subscriber(session, email="both@example.org")
    for person in (left, gone, both):
        service.subscribe(session, person, news)
    service.subscribe(session, both, other)
    service.unsubscribe(session, left.id, news.id)
    service.unsubscribe(session, gone.id, None)
    service.suppress(session, email="bounced@example.org", reason="bounced", source="smtp")
    session.commit()

    path = tmp_path / "back.csv"
    path.write_text(
        "email,name\nleft@example.org,Left Again\ngone@example.org,\nbounced@example.org,B\n"
        "both@example.org,Both\nnew@example.org,New\n",
        encoding="utf-8",
    )
    result = import_csv(engine, path, "news")
    assert dict(result.skipped) == {"unsubscribed": 2, "suppressed": 1}
    assert (result.imported, result.updated, result.unchanged) == (1, 1, 0)  # both: name set
    assert result.resubscribed == 0
    session.expire_all()
    assert session.get(Subscription, (left.id, news.id)).status == "unsubscribed"
    assert session.get(Subscriber, left.id).name == "Left"  # a skipped row touches nothing
    assert session.get(Subscriber, gone.id).status == "unsubscribed"
    assert (
        session.scalar(select(Subscriber).where(Subscriber.email == "bounced@example.org")) is None
    )
    emails = [
        r.email for r in session.execute(service.recipients_select([news.id, other.id], "email"))
    ]
    assert emails == ["both@example.org", "new@example.org"]  # "both" once despite two lists
    assert service.count_recipients(session, [news.id, other.id], "email") == 2

    again = import_csv(engine, path, "news", resubscribe=True)
    assert again.resubscribed == 3
    assert "re-subscribed 3 because of --resubscribe" in again.summary()
    session.expire_all()
    assert session.get(Subscription, (left.id, news.id)).status == "confirmed"
    assert session.get(Subscriber, gone.id).status == "active"
    assert _count(session, Suppression) == 0
    assert service.count_recipients(session, [news.id], "email") == 5
    assert (
        session.scalar(
            select(func.count())
            .select_from(Event)
            .where(Event.kind == "subscribed", Event.list_id == news.id)
        )
        >= 2
    )


def test_upsert_updates_given_fields_only(engine, session, news, tmp_path):
    person = service.add_subscriber(
        session, email="a@example.org", name="Alice", locale="en", attributes={"org": "CNIS"}
    )
    session.commit()
    path = tmp_path / "update.csv"
    path.write_text(
        "email,name,locale,openid,city\na@EXAMPLE.org,,,oALICE,Beijing\n", encoding="utf-8"
    )
    result = import_csv(engine, path, "news")
    assert (result.imported, result.updated, result.unchanged) == (0, 1, 0)
    session.expire_all()
    stored = session.get(Subscriber, person.id)
    assert (stored.name, stored.locale, stored.openid) == ("Alice", "en", "oALICE")
    assert stored.attributes == {"org": "CNIS", "city": "Beijing"}
    assert import_csv(engine, path, "news").unchanged == 1

    conflict = tmp_path / "conflict.csv"
    service.add_subscriber(session, email="b@example.org", openid="oBOB")
    session.commit()
    conflict.write_text(
        "email,openid\na@example.org,oBOB\nnew@example.org,oBOB\n", encoding="utf-8"
    )
    result = import_csv(engine, conflict, "news")
    assert dict(result.skipped) == {"openid_conflict": 1, "duplicate_in_file": 1}


def _install_failing_trigger(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON subscribers WHEN NEW.email = "
                    "'boom@example.org' "
                    "BEGIN SELECT RAISE(ABORT, 'boom: refused by test trigger'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION boom() RETURNS trigger AS $$ BEGIN "
                    "IF NEW.email = 'boom@example.org' THEN RAISE EXCEPTION 'boom: refused by "
                    "test trigger'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER boom BEFORE INSERT ON subscribers FOR EACH ROW EXECUTE "
                    "FUNCTION boom()"
                )
            )


def _drop_failing_trigger(engine: Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER IF EXISTS boom"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS boom ON subscribers"))
            conn.execute(text("DROP FUNCTION IF EXISTS boom()"))


def test_failure_mid_file_keeps_earlier_chunks_and_names_resume_line(
    engine, session, news, tmp_path
):
    path = tmp_path / "boom.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,name\n")
        for i in range(500):
            f.write(("boom@example.org" if i == 250 else f"p{i:03d}@example.org") + f",P{i}\n")
    _install_failing_trigger(engine)
    try:
        with pytest.raises(ImportAborted) as info:
            import_csv(engine, path, "news", chunk_rows=100)
    finally:
        _drop_failing_trigger(engine)
    aborted = info.value
    assert aborted.resume_line == 202  # rows 0..199 are lines 2..201, stored in two chunks
    assert "boom.csv:202" in str(aborted) and "--start-line 202" in str(aborted)
    assert "boom" in str(aborted)
    assert aborted.result.imported == 200
    # on PostgreSQL the chunk after the failed one was being written at the same time: it must
    # have been rolled back too (commits stay in file order), so exactly 200 rows are stored
    assert _count(session, Subscriber) == 200
    assert (
        session.scalar(select(func.max(Subscriber.email))) == "p199@example.org"
    )  # nothing of the failed chunk

    resumed = import_csv(engine, path, "news", start_line=aborted.resume_line, chunk_rows=100)
    assert resumed.imported == 300 and resumed.rows == 300
    assert _count(session, Subscriber) == 500
    assert service.count_recipients(session, [news.id], "email") == 500


def test_export_round_trip(engine, session, news, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(
        "email,name,locale,openid,部门,city\na@example.org,王芳,zh-CN,oA,标准化研究所,\n"
        'b@example.org,"Smith, Bob",en,,,"Beijing"\n,微信粉丝,zh-CN,oFAN,,\n',
        encoding="utf-8",
    )
    assert import_csv(engine, path, "news").imported == 3
    buffer = io.StringIO()
    assert export_csv(session, "news", buffer) == 3
    exported = buffer.getvalue()
    assert exported.splitlines()[0] == "email,name,locale,openid,status,city,部门"
    assert exported.splitlines()[1].startswith("a@example.org,王芳,zh-CN,oA,confirmed,")
    out = tmp_path / "out.csv"
    out.write_text(exported, encoding="utf-8-sig", newline="")
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")

    copy = service.create_list(session, "copy", "Copy")
    session.commit()
    result = import_csv(engine, out, "copy")
    # the same three people joined a second list: added, their details untouched (issue 9)
    assert (result.imported, result.added, result.updated, result.unchanged) == (0, 3, 0, 0)
    assert result.skipped_total == 0
    assert "imported 0, added to the list 3, details updated 0" in result.summary()
    assert "加入列表 3，资料更新 0" in result.summary()
    assert import_csv(engine, out, "news").unchanged == 3
    recipients = session.execute(service.recipients_select([copy.id], "email")).all()
    assert [(r.email, r.name) for r in recipients] == [
        ("a@example.org", "王芳"),
        ("b@example.org", "Smith, Bob"),
    ]

    service.unsubscribe(session, recipients[0].id, news.id)
    session.commit()
    only = io.StringIO()  # who left is never exported unless asked for
    assert export_csv(session, "news", only, statuses=["unsubscribed"]) == 0
    assert export_csv(session, "news", only, statuses=["unsubscribed"], include_all=True) == 1
    assert "a@example.org,王芳,zh-CN,oA,unsubscribed" in only.getvalue()
    assert "b@example.org" not in only.getvalue()


def test_oversized_field_mid_file_is_one_bad_row(engine, session, news, tmp_path):
    path = tmp_path / "huge-field.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,name\n")
        for i in range(250):
            f.write(f"p{i:03d}@example.org,P{i}\n")
        f.write('huge@example.org,"' + "x" * 200_000 + '"\n')  # over csv's own field limit
        f.write("after@example.org,After\n")
    result = import_csv(engine, path, "news", chunk_rows=100)
    assert result.imported == 251 and result.skipped == {"field_too_long": 1}
    assert [p.line for p in result.problems] == [252]
    assert _count(session, Subscriber) == 251


def test_address_added_concurrently_is_found_on_retry(engine, session, news, tmp_path, monkeypatch):
    """Between the chunk's lookup and its insert another writer stores one of its addresses:
    the insert hits the unique index, the chunk is retried once and sees the row."""
    from dispatch.subscribers import bulk

    path = tmp_path / "race.csv"
    path.write_text(
        "email,name\nrace@example.org,Race\nfresh@example.org,Fresh\n", encoding="utf-8"
    )
    real_select_in = bulk.select_in
    calls = {"n": 0}

    def racing_select_in(conn, query, column, values):
        calls["n"] += 1
        if calls["n"] == 1:  # the first lookup of subscribers by email: nothing there yet...
            with engine.begin() as other:  # ...then another writer commits the address
                other.execute(
                    Subscriber.__table__.insert().values(
                        email="race@example.org",
                        name="Other",
                        locale="en",
                        attributes={},
                        status="active",
                        created_at=func.now(),
                    )
                )
            return []
        return real_select_in(conn, query, column, values)

    monkeypatch.setattr(bulk, "select_in", racing_select_in)
    result = import_csv(engine, path, "news")
    assert (result.imported, result.updated) == (1, 1)  # race: joined the list and got its name
    assert _count(session, Subscriber) == 2
    assert service.count_recipients(session, [news.id], "email") == 2
