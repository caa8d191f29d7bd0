"""CSV import of subscribers into one list: validated, chunked, bulk upserted, resumable.

Why it looks like this: files have tens of thousands of rows, so rows never become ORM
objects. Each chunk (2,000 rows) is one transaction: the chunk's existing subscribers,
suppressions and subscriptions are loaded in three queries, rows are classified in Python,
then written with a few bulk INSERT … ON CONFLICT DO NOTHING / executemany UPDATE
statements. A failure rolls back only its own chunk and names the line to resume from.

Rules: a header row is required (email and/or openid column); a `lists` column names more
lists for the row (slugs separated by ; or |); other columns become string attributes. Empty cells
mean "not given" and never erase stored values. An address that
unsubscribed or is suppressed is not brought back unless `resubscribe`. Imported
subscriptions are confirmed; into a double opt-in list only with `confirmed` (the
administrator declares that consent was collected elsewhere), which is recorded on each
subscription's source, as every import's file name is. Re-subscriptions are recorded as
`subscribed` events;
plain new rows are not (for 100,000 rows that would double the writes).
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, Integer, String, Text, cast, literal, select, update
from sqlalchemy.exc import IntegrityError

from dispatch import events
from dispatch.csv_safe import restore
from dispatch.db import analyze
from dispatch.errors import DispatchError, ErrorKind
from dispatch.i18n import Catalog, normalise_locale
from dispatch.log import get_logger
from dispatch.models import utcnow
from dispatch.models.base import UTCDateTime
from dispatch.models.subscriber import MailingList, Subscriber, Subscription, Suppression
from dispatch.subscribers import bulk
from dispatch.subscribers.addresses import InvalidEmail, canonical_email, check_email
from dispatch.vocabulary import (
    SUPPRESSED_SUBSCRIBER,
    Channel,
    EventKind,
    SubscriberStatus,
    SubscriptionStatus,
)

log = get_logger(__name__)
CHUNK_ROWS = 2000
ANALYZE_AFTER_ROWS = 1000  # an import this big refreshes the planner's statistics (PostgreSQL)
WRITERS_POSTGRESQL = 2  # chunks written at once on PostgreSQL (committed in file order)
KNOWN_COLUMNS = ("email", "name", "locale", "openid", "lists", "status")
HEADER_ALIASES = {
    "email": "email",
    "e-mail": "email",
    "mail": "email",
    "email address": "email",
    "邮箱": "email",
    "电子邮件": "email",
    "电子邮箱": "email",
    "邮件地址": "email",
    "name": "name",
    "姓名": "name",
    "名字": "name",
    "称呼": "name",
    "locale": "locale",
    "language": "locale",
    "lang": "locale",
    "语言": "locale",
    "openid": "openid",
    "wechat openid": "openid",
    "微信openid": "openid",
    # more lists for the row, slugs separated by ; or | (the file's own list always applies)
    "lists": "lists",
    "list": "lists",
    "列表": "lists",
    "订阅列表": "lists",
    # the export's status column: read back as nothing (status is the service's to decide)
    "status": "status",
    "状态": "status",
}
LIST_SEPARATORS = re.compile(r"[;|；，、\s]+")
MAX_LEN = {"email": 320, "name": 200, "openid": 128, "attribute": 2000}
# csv's own per-field limit (131,072 characters) would make one long field an unreadable
# record; raised so a long field is read whole (quotes stay in step) and reported as a bad
# row (field_too_long). Anything beyond this is a malformed record, also just a bad row.
CSV_FIELD_LIMIT = 16 * 1024 * 1024
DETAIL_CHARS = 80  # a problem's detail quotes at most this much of the offending value
# no control characters in a stored value (PostgreSQL refuses NUL outright: one such cell
# would fail its whole chunk, and the suggested resume line would fail again); attributes
# may hold tabs and line breaks
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
ATTRIBUTE_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SUPPRESSED_STATUSES = SUPPRESSED_SUBSCRIBER

# reason key -> (zh-CN, en); the order is the order of the checks and of the summary
REASONS = Catalog(
    {
        "malformed_record": ("CSV 记录格式错误", "malformed CSV record"),
        "too_many_fields": ("字段多于表头", "more fields than the header"),
        "missing_address": ("既无邮箱也无 openid", "neither email nor openid"),
        "invalid_email": ("邮箱无效", "invalid email"),
        "unknown_locale": ("未知语言", "unknown locale"),
        "field_too_long": ("字段过长", "field too long"),
        "control_character": ("含控制字符", "control character in a field"),
        "duplicate_in_file": ("文件内重复", "duplicate in file"),
        "unknown_list": ("lists 列中有不存在的列表", "unknown list in the lists column"),
        "openid_conflict": ("openid 属于另一位订阅者", "openid belongs to another subscriber"),
        "unsubscribed": ("已退订", "unsubscribed"),
        "suppressed": ("已屏蔽", "suppressed"),
    }
)
MESSAGES = Catalog(
    {
        "empty": (
            "{file}: 文件为空，需要表头行（email, name, locale, openid）",
            "{file}: empty file; a header row is required (email, name, locale, openid)",
        ),
        "no_header": (
            "{file}:1: 缺少表头行：第一行需含 email 或 openid 列，当前为 {first!r}",
            "{file}:1: header row missing: the first line must name an email or openid column, "
            "got {first!r}",
        ),
        "dup_header": (
            "{file}:1: 表头列 {name!r} 重复",
            "{file}:1: column {name!r} appears twice in the header",
        ),
        "encoding": (
            "{file}:{line}: 既不是 UTF-8 也不是 GB18030 文本",
            "{file}:{line}: neither UTF-8 nor GB18030 text",
        ),
        "no_list": ("列表 {slug!r} 不存在", "no list {slug!r}"),
        "csv_error": (
            "{file}:{line}: CSV 格式错误：{error}",
            "{file}:{line}: malformed CSV: {error}",
        ),
        "aborted": (
            "{file}:{line}: 导入在此中止（{cause}）；之前的行已保存，请用 --start-line {line} 继续",
            "{file}:{line}: import stopped here ({cause}); rows before it are stored, resume with "
            "--start-line {line}",
        ),
        "summary": (
            "导入 {imported}，加入列表 {added}，资料更新 {updated}，未变 {unchanged}，跳过 "
            "{skipped}",
            "imported {imported}, added to the list {added}, details updated {updated}, "
            "unchanged {unchanged}, skipped {skipped}",
        ),
        "resubscribed": (
            "按 --resubscribe 重新订阅 {n}",
            "re-subscribed {n} because of --resubscribe",
        ),
        "dry_run": ("试运行，未写入任何数据", "dry run, nothing written"),
    }
)


CONSENT_MESSAGES = Catalog(
    {
        "needs_consent": (
            "列表 {slugs} 为双重确认：导入的地址未确认过订阅。若已在别处取得同意，请加 --confirmed"
            "（每行记录为“导入：已在别处同意”），或加 --send-confirmations 先逐一发确认邮件",
            "list {slugs} is double opt-in and imported addresses never confirmed: pass "
            "--confirmed if consent was collected elsewhere (recorded on each row as such), or "
            "--send-confirmations to ask each person by email first",
        ),
    }
)


class CsvImportError(DispatchError):
    """The file as a whole cannot be imported (no header, unreadable encoding, no list)."""


class _EarlierChunkFailed(RuntimeError):
    """The chunk before this one failed, so this one is rolled back (commits stay in file order)."""


class ImportAborted(RuntimeError):
    """A chunk failed: earlier chunks are stored; `resume_line` is where to start again."""

    kind = ErrorKind.CONFLICT  # not a ValueError: the file may be fine, the database refused

    def __init__(self, file: str, resume_line: int, cause: str, result: ImportResult):
        self.resume_line = resume_line
        self.result = result
        super().__init__(MESSAGES.both("aborted", file=file, line=resume_line, cause=cause))


@dataclass(frozen=True)
class RowProblem:
    line: int
    reason: str
    detail: str = ""


@dataclass
class ImportResult:
    file: str
    list_slug: str
    encoding: str = ""
    dry_run: bool = False
    resubscribe: bool = False
    imported: int = 0  # new people
    added: int = 0  # people already stored, newly (or again) on this list
    updated: int = 0  # people already stored whose details changed
    unchanged: int = 0
    resubscribed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    problems: list[RowProblem] = field(default_factory=list)
    rows: int = 0
    last_line: int = 0
    # with send_confirmations: the people left unconfirmed, each owed a confirmation email
    awaiting_confirmation: list[int] = field(default_factory=list)

    def skip(self, line: int, reason: str, detail: str = "") -> None:
        self.skipped[reason] += 1
        self.problems.append(RowProblem(line, reason, detail))

    def merge(self, part: ImportResult) -> None:
        """Add a committed chunk's counts and problems."""
        self.imported += part.imported
        self.added += part.added
        self.updated += part.updated
        self.unchanged += part.unchanged
        self.resubscribed += part.resubscribed
        self.rows += part.rows
        self.skipped.update(part.skipped)
        self.problems.extend(part.problems)
        self.last_line = max(self.last_line, part.last_line)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        """One line, both languages: the counts and skipped rows by reason."""
        counts = {
            "imported": self.imported,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped_total,
        }
        zh = MESSAGES.get("summary", "zh-CN", **counts)
        en = MESSAGES.get("summary", "en", **counts)
        if self.skipped:
            ordered = [r for r in REASONS.messages if self.skipped.get(r)]
            zh += (
                "（"
                + "，".join(f"{REASONS.get(r, 'zh-CN')} {self.skipped[r]}" for r in ordered)
                + "）"
            )
            en += " (" + ", ".join(f"{r} {self.skipped[r]}" for r in ordered) + ")"
        if self.resubscribed:
            zh += "；" + MESSAGES.get("resubscribed", "zh-CN", n=self.resubscribed)
            en += "; " + MESSAGES.get("resubscribed", "en", n=self.resubscribed)
        if self.dry_run:
            zh += "；" + MESSAGES.get("dry_run", "zh-CN")
            en += "; " + MESSAGES.get("dry_run", "en")
        return f"{zh} / {en}"

    def audit_row(self, aborted: ImportAborted | None = None) -> dict[str, Any]:
        """What the audit log keeps of an import: the file's name and the counts (the line
        problems stay in the report); an aborted one names the line to resume from, since
        the chunks before it are stored."""
        row = {k: v for k, v in self.as_dict().items() if k not in ("problems", "file")}
        row["file"] = Path(self.file).name
        if aborted is not None:
            row["aborted"], row["resume_line"] = str(aborted), aborted.resume_line
        return row

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "list": self.list_slug,
            "encoding": self.encoding,
            "dry_run": self.dry_run,
            "resubscribe": self.resubscribe,
            "rows": self.rows,
            "imported": self.imported,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "resubscribed": self.resubscribed,
            "skipped": self.skipped_total,
            "skipped_by_reason": dict(self.skipped),
            "problems": [
                {"line": p.line, "reason": p.reason, "detail": p.detail} for p in self.problems
            ],
            "last_line": self.last_line,
            "awaiting_confirmation": len(self.awaiting_confirmation),
        }


class _Existing(NamedTuple):
    """A stored subscriber as the import sees it (attributes still JSON text: decoded only
    when the row brings attributes to compare or the subscriber changes)."""

    id: int
    email: str | None
    email_key: str | None
    openid: str | None
    name: str
    locale: str
    attributes: str | None
    status: str


@dataclass(slots=True)
class _Piece:
    """A chunk on its way to the database: its first line, valid rows, and its own counts."""

    first_line: int
    rows: list[_Row]
    part: ImportResult


@dataclass(slots=True)
class _Row:
    line: int
    email: str | None
    email_key: str | None  # canonical_email(email): what identity and dedupe compare
    openid: str | None
    name: str | None
    locale: str | None
    attributes: dict[str, str]
    lists: tuple[int, ...] = ()  # ids of the lists column's lists (beyond the file's own list)


# -- reading -------------------------------------------------------------------------------


def detect_encoding(path: Path) -> str:
    """utf-8-sig (UTF-8 with or without BOM) if the whole file decodes, else gb18030."""
    for encoding in ("utf-8-sig", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        offset = 0
        try:
            with path.open("rb") as f:
                while block := f.read(1 << 20):
                    decoder.decode(block)
                    offset += len(block)
                decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError as exc:
            bad_at = offset + exc.start
    with path.open("rb") as f:
        line = f.read(bad_at).count(b"\n") + 1
    raise CsvImportError(MESSAGES.both("encoding", file=path, line=line))


@dataclass(frozen=True)
class _Layout:
    """Where the known columns sit in a record, and which other columns are attributes."""

    width: int
    email: int | None
    name: int | None
    locale: int | None
    openid: int | None
    attributes: tuple[tuple[int, str], ...]
    lists: int | None = None


def _header(path: Path, cells: list[str]) -> _Layout:
    """Read the header: known columns by name or alias (any case), others become attributes."""
    positions: dict[str, int] = {}
    for index, cell in enumerate(cells):
        raw = cell.strip()
        if not raw:
            continue
        key = HEADER_ALIASES.get(raw.lower(), raw)
        if key in positions:
            raise CsvImportError(MESSAGES.both("dup_header", file=path, name=raw))
        positions[key] = index
    if "email" not in positions and "openid" not in positions:
        raise CsvImportError(MESSAGES.both("no_header", file=path, first=",".join(cells)[:80]))
    return _Layout(
        width=len(cells),
        email=positions.get("email"),
        name=positions.get("name"),
        locale=positions.get("locale"),
        openid=positions.get("openid"),
        attributes=tuple((i, key) for key, i in positions.items() if key not in KNOWN_COLUMNS),
        lists=positions.get("lists"),
    )


def _records(path: Path, encoding: str) -> Iterator[tuple[int, list[str] | None, str]]:
    """(first physical line of the record, cells, ""), blank lines (also ",,,") left out; a
    record csv cannot read comes as (line, None, why) and reading goes on after it."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    with path.open(encoding=encoding, newline="") as f:
        reader = csv.reader(f)
        previous_end = 0
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over the size limit: a bad row, not the end
                start, previous_end = previous_end + 1, reader.line_num
                yield start, None, str(exc)
                continue
            start = previous_end + 1
            previous_end = reader.line_num
            if not cells or (not cells[0].strip() and not any(c.strip() for c in cells)):
                continue
            if any(c[:1] == "'" for c in cells):  # undo the export's formula guard, exactly
                cells = [restore(c) for c in cells]
            yield start, cells, ""


class _Skip(Exception):
    """A record that cannot be imported: the reason (a RowProblem reason) and its detail."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _parse(
    row_line: int,
    layout: _Layout,
    cells: list[str],
    result: ImportResult,
    seen_emails: set[str],
    seen_openids: set[str],
    list_ids: dict[str, int] | None = None,
) -> _Row | None:
    """Validate one record; report it and return None when it cannot be imported."""
    try:
        cells = _checked_cells(layout, cells)
        email, openid = _address(layout, cells)
        locale = _locale(layout, cells)
        name = (cells[layout.name].strip() or None) if layout.name is not None else None
        for key, value in (("email", email), ("name", name), ("openid", openid)):
            if value is not None and len(value) > MAX_LEN[key]:
                raise _Skip("field_too_long", f"{key} > {MAX_LEN[key]}")
        email_key = canonical_email(email)
        if (email_key is not None and email_key in seen_emails) or (
            openid is not None and openid in seen_openids
        ):
            raise _Skip("duplicate_in_file", email or openid or "")
        extra = _extra_lists(layout, cells, list_ids)
    except _Skip as skip:
        result.skip(row_line, skip.reason, skip.detail)
        return None
    if email_key is not None:
        seen_emails.add(email_key)
    if openid is not None:
        seen_openids.add(openid)
    attributes = {}
    for index, key in layout.attributes:
        value = cells[index].strip()
        if value:
            attributes[key] = value
    return _Row(row_line, email, email_key, openid, name, locale, attributes, tuple(extra))


def _checked_cells(layout: _Layout, cells: list[str]) -> list[str]:
    """The record padded to the header's width; no extra fields, none too long, no control
    characters (lengths first: nothing below reads a huge value)."""
    if len(cells) > layout.width and any(c.strip() for c in cells[layout.width :]):
        raise _Skip("too_many_fields", f"{len(cells)} > {layout.width}")
    if len(cells) < layout.width:  # short record: pad once, index freely below
        cells = cells + [""] * (layout.width - len(cells))
    known = (layout.email, layout.name, layout.locale, layout.openid)
    for index, cell in enumerate(cells):
        limit = MAX_LEN["email"] if index in known else MAX_LEN["attribute"]
        if len(cell) > limit:
            raise _Skip("field_too_long", f"column {index + 1}: {len(cell):,} > {limit}")
        pattern = CONTROL_RE if index in known else ATTRIBUTE_CONTROL_RE
        found = pattern.search(cell)
        if found:
            raise _Skip("control_character", f"column {index + 1}: U+{ord(found.group()):04X}")
    return cells


def _address(layout: _Layout, cells: list[str]) -> tuple[str | None, str | None]:
    """(email, openid): at least one of them, the email valid."""
    raw_email = cells[layout.email].strip() if layout.email is not None else ""
    openid = (cells[layout.openid].strip() or None) if layout.openid is not None else None
    if not raw_email and openid is None:
        raise _Skip("missing_address")
    if not raw_email:
        return None, openid
    try:
        return check_email(raw_email), openid
    except InvalidEmail as exc:
        raise _Skip("invalid_email", f"{raw_email[:DETAIL_CHARS]}: {exc}") from None


def _locale(layout: _Layout, cells: list[str]) -> str | None:
    """The record's locale, None when the column is absent or empty."""
    raw_locale = cells[layout.locale].strip() if layout.locale is not None else ""
    if not raw_locale:
        return None
    locale = normalise_locale(raw_locale)
    if locale is None:
        raise _Skip("unknown_locale", raw_locale[:DETAIL_CHARS])
    return locale


def _extra_lists(layout: _Layout, cells: list[str], list_ids: dict[str, int] | None) -> list[int]:
    """The ids of the lists the record's list column names (each must exist)."""
    extra: list[int] = []
    if layout.lists is not None and cells[layout.lists].strip():
        for slug in LIST_SEPARATORS.split(cells[layout.lists].strip()):
            if not slug:
                continue
            if list_ids is None or slug not in list_ids:
                raise _Skip("unknown_list", slug[:DETAIL_CHARS])
            extra.append(list_ids[slug])
    return extra


# -- writing -------------------------------------------------------------------------------


@dataclass
class _Known:
    """What the database already holds about a chunk's addresses (read in a few queries)."""

    by_email: dict[str, _Existing] = field(default_factory=dict)
    by_openid: dict[str, _Existing] = field(default_factory=dict)
    suppressed_emails: set[str] = field(default_factory=set)
    suppressed_openids: set[str] = field(default_factory=set)
    subscription_status: dict[int, str] = field(default_factory=dict)  # on the import's list


@dataclass
class _Plan:
    """The chunk's writes, gathered row by row and then done in bulk."""

    new_subscribers: list[dict[str, Any]] = field(default_factory=list)
    subscriber_updates: list[dict[str, Any]] = field(default_factory=list)
    subscriptions_to_add: list[int] = field(default_factory=list)
    subscriptions_to_confirm: list[int] = field(default_factory=list)
    unsuppress_emails: list[str] = field(default_factory=list)
    unsuppress_openids: list[str] = field(default_factory=list)
    resubscribed_ids: list[int] = field(default_factory=list)


def _apply_chunk(
    conn: Connection,
    list_id: int,
    rows: list[_Row],
    result: ImportResult,
    *,
    dry_run: bool,
    resubscribe: bool,
) -> None:
    """Look the chunk's people up, decide row by row, then write everything in bulk."""
    known = _look_up(conn, list_id, rows)
    plan = _Plan()
    for row in rows:
        _plan_row(row, known, plan, result, resubscribe=resubscribe)
        # later rows of this chunk cannot match the same subscriber (duplicates were removed)
    if not dry_run:
        _write(conn, list_id, rows, plan, utcnow())


def _look_up(conn: Connection, list_id: int, rows: list[_Row]) -> _Known:
    s, sub, sup = Subscriber.__table__, Subscription.__table__, Suppression.__table__
    emails = [r.email_key for r in rows if r.email_key]
    openids = [r.openid for r in rows if r.openid]
    known = _Known()
    cols = select(
        s.c.id,
        s.c.email,
        s.c.email_key,
        s.c.openid,
        s.c.name,
        s.c.locale,
        cast(s.c.attributes, Text).label("attributes"),
        s.c.status,
    )
    for rec in bulk.select_in(conn, cols, s.c.email_key, emails):
        found = _Existing._make(rec)
        assert found.email_key is not None  # selected by email_key
        known.by_email[found.email_key] = found
        if found.openid:
            known.by_openid[found.openid] = found
    # openids still unknown: the row's openid may belong to another subscriber (a conflict)
    unknown = [o for o in openids if o not in known.by_openid]
    for rec in bulk.select_in(conn, cols, s.c.openid, unknown):
        found = _Existing._make(rec)
        assert found.openid is not None  # selected by openid
        known.by_openid[found.openid] = found
        if found.email_key:
            known.by_email.setdefault(found.email_key, found)
    for column, values in ((sup.c.email_key, emails), (sup.c.openid, openids)):
        for rec in bulk.select_in(conn, select(sup.c.email_key, sup.c.openid), column, values):
            if rec.email_key:
                known.suppressed_emails.add(rec.email_key)
            if rec.openid:
                known.suppressed_openids.add(rec.openid)
    existing_ids = list(
        {rec.id for rec in known.by_email.values()} | {rec.id for rec in known.by_openid.values()}
    )
    query = select(sub.c.subscriber_id, sub.c.status).where(sub.c.list_id == list_id)
    for rec in bulk.select_in(conn, query, sub.c.subscriber_id, existing_ids):
        known.subscription_status[rec.subscriber_id] = rec.status
    return known


def _match(row: _Row, known: _Known, result: ImportResult) -> tuple[bool, _Existing | None]:
    """The stored subscriber the row is about; (False, None) when its email and openid
    belong to two different people (the row is skipped with the reason)."""
    match_email = known.by_email.get(row.email_key) if row.email_key else None
    match_openid = known.by_openid.get(row.openid) if row.openid else None
    if match_email is not None and match_openid is not None and match_email.id != match_openid.id:
        result.skip(row.line, "openid_conflict", f"{row.openid} → #{match_openid.id}")
        return False, None
    if match_email is None and match_openid is not None and row.email and match_openid.email:
        result.skip(row.line, "openid_conflict", f"{row.openid} → {match_openid.email}")
        return False, None
    return True, match_email or match_openid


def _plan_row(
    row: _Row, known: _Known, plan: _Plan, result: ImportResult, *, resubscribe: bool
) -> None:
    ok, existing = _match(row, known, result)
    if not ok:
        return
    is_suppressed = (
        (row.email_key is not None and row.email_key in known.suppressed_emails)
        or (row.openid is not None and row.openid in known.suppressed_openids)
        or (existing is not None and existing.status in SUPPRESSED_STATUSES)
    )
    was_unsubscribed = existing is not None and (
        existing.status == SubscriberStatus.UNSUBSCRIBED
        or known.subscription_status.get(existing.id) == SubscriptionStatus.UNSUBSCRIBED
    )
    if is_suppressed and not resubscribe:
        result.skip(row.line, "suppressed", row.email or row.openid or "")
        return
    if was_unsubscribed and not resubscribe:
        result.skip(row.line, "unsubscribed", row.email or row.openid or "")
        return
    comes_back = is_suppressed or was_unsubscribed
    if is_suppressed:
        _plan_unsuppress(row, existing, plan)
    if existing is None:
        plan.new_subscribers.append(
            {
                "email": row.email,
                "email_key": row.email_key,
                "openid": row.openid,
                "name": row.name or "",
                "locale": row.locale or "zh-CN",
                "attributes": row.attributes,
            }
        )
        if comes_back:  # suppressed address without a subscriber row
            result.resubscribed += 1
        else:
            result.imported += 1
        return
    changed = _plan_update(row, existing, comes_back, plan)
    _plan_membership(existing, known, plan, result, comes_back=comes_back, changed=changed)


def _plan_unsuppress(row: _Row, existing: _Existing | None, plan: _Plan) -> None:
    """A suppressed person coming back: lift the suppressions of all their addresses."""
    if row.email_key:
        plan.unsuppress_emails.append(row.email_key)
    if row.openid:
        plan.unsuppress_openids.append(row.openid)
    if existing is not None:
        if existing.email_key and existing.email_key != row.email_key:
            plan.unsuppress_emails.append(existing.email_key)
        if existing.openid and existing.openid != row.openid:
            plan.unsuppress_openids.append(existing.openid)


def _plan_update(row: _Row, existing: _Existing, comes_back: bool, plan: _Plan) -> bool:
    """The stored subscriber with the row's details (empty cells keep stored values);
    True when anything changed."""
    email = existing.email or row.email
    openid = row.openid or existing.openid
    name = row.name if row.name is not None else existing.name
    locale = row.locale or existing.locale
    status = SubscriberStatus.ACTIVE.value if comes_back else existing.status
    changed = (
        email != existing.email
        or openid != existing.openid
        or name != existing.name
        or locale != existing.locale
        or status != existing.status
    )
    old_attributes: dict[str, Any] | None = None
    if row.attributes:
        old_attributes = json.loads(existing.attributes or "{}") or {}
        changed = changed or any(old_attributes.get(k) != v for k, v in row.attributes.items())
    if changed:
        if old_attributes is None:
            old_attributes = json.loads(existing.attributes or "{}") or {}
        plan.subscriber_updates.append(
            {
                "id": existing.id,
                "email": email,
                "email_key": canonical_email(email),
                "openid": openid,
                "name": name,
                "locale": locale,
                "attributes": {**old_attributes, **row.attributes},
                "status": status,
            }
        )
    return changed


def _plan_membership(
    existing: _Existing,
    known: _Known,
    plan: _Plan,
    result: ImportResult,
    *,
    comes_back: bool,
    changed: bool,
) -> None:
    """Their subscription to the import's list, and how the row counts in the report."""
    subscribed = known.subscription_status.get(existing.id)
    if subscribed is None:
        plan.subscriptions_to_add.append(existing.id)
    elif subscribed != SubscriptionStatus.CONFIRMED:
        plan.subscriptions_to_confirm.append(existing.id)
    if comes_back:
        result.resubscribed += 1
        plan.resubscribed_ids.append(existing.id)
        return
    # joining the list and changed details are told apart: "updated 28" for 28 people
    # merely added to a second list read as if their details had been rewritten
    if subscribed != SubscriptionStatus.CONFIRMED:
        result.added += 1
    if changed:
        result.updated += 1
    if subscribed == SubscriptionStatus.CONFIRMED and not changed:
        result.unchanged += 1


def _write(conn: Connection, list_id: int, rows: list[_Row], plan: _Plan, now: Any) -> None:
    sup = Suppression.__table__
    bulk.delete_where_in(conn, sup, sup.c.email_key, plan.unsuppress_emails)
    bulk.delete_where_in(conn, sup, sup.c.openid, plan.unsuppress_openids)
    bulk.update_subscribers(conn, plan.subscriber_updates)
    bulk.insert_subscribers(conn, plan.new_subscribers, list_id, now)
    bulk.add_confirmed_subscriptions(conn, list_id, now, ids=plan.subscriptions_to_add)
    bulk.confirm_subscriptions(conn, list_id, plan.subscriptions_to_confirm, now)
    _add_to_more_lists(conn, rows, now)
    if plan.resubscribed_ids:
        events.insert_rows(
            conn,
            [
                events.event_row(
                    EventKind.SUBSCRIBED,
                    channel=Channel.EMAIL,
                    subscriber_id=i,
                    list_id=list_id,
                    data={"source": "import", "resubscribe": True},
                    at=now,
                )
                for i in plan.resubscribed_ids
            ],
        )


def _add_to_more_lists(conn: Connection, rows: list[_Row], now: Any) -> None:
    """The lists column: a confirmed subscription to each named list for the row's person
    (still active after this chunk; an existing subscription is left as it is)."""
    s = Subscriber.__table__
    wanted: dict[int, tuple[list[str], list[str]]] = {}
    for row in rows:
        for list_id in row.lists:
            keys, openids = wanted.setdefault(list_id, ([], []))
            if row.email_key:
                keys.append(row.email_key)
            elif row.openid:
                openids.append(row.openid)
    columns = ["subscriber_id", "list_id", "status", "created_at", "confirmed_at"]
    for list_id, (keys, openids) in wanted.items():
        for column, values in ((s.c.email_key, keys), (s.c.openid, openids)):
            for part in bulk._parts(conn, values):
                source = select(
                    s.c.id,
                    literal(list_id, Integer()),
                    literal(SubscriptionStatus.CONFIRMED.value, String()),
                    literal(now, UTCDateTime()),
                    literal(now, UTCDateTime()),
                ).where(bulk._in(conn, column, part), s.c.status == SubscriberStatus.ACTIVE.value)
                conn.execute(
                    bulk._on_conflict_nothing(conn, Subscription.__table__).from_select(
                        columns, source
                    )
                )


def _await_confirmation(engine: Engine, list_id: int, started: Any, file: str) -> list[int]:
    """Double opt-in without declared consent: what this import confirmed on the list goes
    back to unconfirmed, each person owed a confirmation email; returns their ids."""
    table = Subscription.__table__
    label = f"import:confirmation-asked:{Path(file).name}"[:64]
    with engine.begin() as conn:
        ids = list(
            conn.scalars(
                select(table.c.subscriber_id).where(
                    table.c.list_id == list_id,
                    table.c.source == "",
                    table.c.confirmed_at >= started,
                )
            )
        )
        for part in bulk._parts(conn, ids):
            conn.execute(
                update(table)
                .where(table.c.list_id == list_id, bulk._in(conn, table.c.subscriber_id, part))
                .values(
                    status=SubscriptionStatus.UNCONFIRMED.value, confirmed_at=None, source=label
                )
            )
    return ids


def _record_consent(
    engine: Engine, list_ids: set[int], started: Any, *, confirmed: bool, file: str
) -> None:
    """Write on each subscription this import confirmed how consent was obtained."""
    label = ("import:consent-elsewhere:" if confirmed else "import:") + Path(file).name
    with engine.begin() as conn:
        for list_id in list_ids:
            conn.execute(
                update(Subscription.__table__)
                .where(
                    Subscription.__table__.c.list_id == list_id,
                    Subscription.__table__.c.source == "",
                    Subscription.__table__.c.confirmed_at >= started,
                )
                .values(source=label[:64])
            )


def import_csv(
    engine: Engine,
    path: str | Path,
    list_slug: str,
    *,
    dry_run: bool = False,
    resubscribe: bool = False,
    start_line: int = 1,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
    confirmed: bool = False,
    send_confirmations: bool = False,
) -> ImportResult:
    """Import `path` into list `list_slug`; returns the counts. Raises CsvImportError for a file
    that cannot be read at all and ImportAborted (with the resume line) if a chunk fails."""
    path = Path(path)
    result = ImportResult(
        file=str(path), list_slug=list_slug, dry_run=dry_run, resubscribe=resubscribe
    )
    list_id, ask_first, joinable = _target_lists(
        engine, list_slug, confirmed=confirmed, send_confirmations=send_confirmations
    )
    started = utcnow()
    result.encoding = detect_encoding(path)
    records = _records(path, result.encoding)
    layout = _first_layout(path, records)
    seen_emails: set[str] = set()
    seen_openids: set[str] = set()
    writers = _writers(engine)
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="csv-import") as writer:
        chunks = _ChunkWriter(
            engine, path, list_slug, list_id, dry_run, resubscribe, result, progress, writer
        )
        try:
            _feed(
                chunks,
                records,
                layout,
                joinable,
                seen_emails,
                seen_openids,
                start_line=start_line,
                chunk_rows=chunk_rows,
                writers=writers,
            )
        finally:
            for future in chunks.in_flight:
                future.cancel()
    result.problems.sort(key=lambda p: p.line)
    if not dry_run:
        _remember_hygiene(engine, list_id, path, result, seen_emails)
        if ask_first:
            result.awaiting_confirmation = _await_confirmation(engine, list_id, started, str(path))
        _record_consent(
            engine, {list_id, *joinable.values()}, started, confirmed=confirmed, file=str(path)
        )
        if result.imported + result.added >= ANALYZE_AFTER_ROWS:  # fresh statistics for sends
            analyze(engine, "subscribers", "subscriptions")
    _log_done(list_slug, path, dry_run, result)
    return result


def _target_lists(
    engine: Engine, list_slug: str, *, confirmed: bool, send_confirmations: bool
) -> tuple[int, bool, dict[str, int]]:
    """The list's id, whether its new members are asked to confirm first, and the lists a
    row's lists column may join (single opt-in ones, double opt-in ones with --confirmed)."""
    with engine.connect() as conn:
        all_lists = {
            slug: (lid, optin)
            for slug, lid, optin in conn.execute(
                select(MailingList.slug, MailingList.id, MailingList.optin)
            )
        }
    if list_slug not in all_lists:
        raise CsvImportError(MESSAGES.both("no_list", slug=list_slug))
    list_id = all_lists[list_slug][0]
    ask_first = all_lists[list_slug][1] == "double" and not confirmed
    if ask_first and not send_confirmations:
        raise CsvImportError(CONSENT_MESSAGES.both("needs_consent", slugs=list_slug))
    # the lists column may name single opt-in lists, and double opt-in ones with --confirmed
    joinable = {
        slug: lid
        for slug, (lid, optin) in all_lists.items()
        if slug == list_slug or optin != "double" or confirmed
    }
    return list_id, ask_first, joinable


def _writers(engine: Engine) -> int:
    """The database work of chunks (worker threads, waiting on the server most of the time)
    overlaps the parsing of the next chunk. On PostgreSQL two chunks are written at once (the
    server works on both; their rows are disjoint, duplicates having been removed while
    parsing) and still commit in file order. SQLite has one writer at a time."""
    return WRITERS_POSTGRESQL if engine.dialect.name == "postgresql" else 1


def _first_layout(path: Path, records: Iterator[tuple[int, list[str] | None, str]]) -> _Layout:
    """The header (the first record): an empty file or an unreadable header stops the import."""
    first = next(records, None)
    if first is None:
        raise CsvImportError(MESSAGES.both("empty", file=path))
    if first[1] is None:
        raise CsvImportError(MESSAGES.both("csv_error", file=path, line=first[0], error=first[2]))
    return _header(path, first[1])


def _feed(
    chunks: _ChunkWriter,
    records: Iterator[tuple[int, list[str] | None, str]],
    layout: _Layout,
    joinable: dict[str, int],
    seen_emails: set[str],
    seen_openids: set[str],
    *,
    start_line: int,
    chunk_rows: int,
    writers: int,
) -> None:
    """Parse the records into chunks of `chunk_rows` rows and hand each to the writers (at
    most `writers` in flight); then wait for all of them."""
    piece: _Piece | None = None
    for line, cells, unreadable in records:
        if line < start_line:
            continue
        if piece is None:
            piece = chunks.new_piece(line)
        piece.part.last_line = line
        piece.part.rows += 1
        if cells is None:
            piece.part.skip(line, "malformed_record", unreadable[:DETAIL_CHARS])
            continue
        row = _parse(line, layout, cells, piece.part, seen_emails, seen_openids, joinable)
        if row is None:
            continue
        piece.rows.append(row)
        if len(piece.rows) >= chunk_rows:
            if len(chunks.in_flight) >= writers:
                chunks.settle(chunks.in_flight.popleft())
            chunks.submit(piece)
            piece = None
    if piece is not None:
        chunks.submit(piece)
    while chunks.in_flight:
        chunks.settle(chunks.in_flight.popleft())


@dataclass
class _ChunkWriter:
    """Chunks written by worker threads, one transaction each, committed in file order;
    settling a chunk merges its counts, or stops the import with the line to resume from."""

    engine: Engine
    path: Path
    list_slug: str
    list_id: int
    dry_run: bool
    resubscribe: bool
    result: ImportResult
    progress: Callable[[int], None] | None
    writer: ThreadPoolExecutor
    pieces_started: list[int] = field(default_factory=list)
    in_flight: deque[Future[_Piece]] = field(default_factory=deque)

    def new_piece(self, first_line: int) -> _Piece:
        return _Piece(first_line, [], ImportResult(file=str(self.path), list_slug=self.list_slug))

    def submit(self, piece: _Piece) -> None:
        self.pieces_started.append(piece.first_line)
        earlier = self.in_flight[-1] if self.in_flight else None
        self.in_flight.append(self.writer.submit(self.write, piece, earlier))

    def write(self, piece: _Piece, earlier: Future[_Piece] | None) -> _Piece:
        path, list_slug = self.path, self.list_slug
        for attempt in (1, 2):
            outcome = ImportResult(file=str(path), list_slug=list_slug)
            try:
                with self.engine.begin() as conn:  # one transaction per chunk
                    _apply_chunk(
                        conn,
                        self.list_id,
                        piece.rows,
                        outcome,
                        dry_run=self.dry_run,
                        resubscribe=self.resubscribe,
                    )
                    # chunks commit in file order: wait for the one before; if it failed, this
                    # one rolls back too, so everything before the resume line is stored and
                    # nothing after it
                    if earlier is not None and earlier.exception() is not None:
                        raise _EarlierChunkFailed()
            except IntegrityError:
                if attempt == 2:
                    raise
                log.info(
                    "subscribers.import_retry",
                    list=list_slug,
                    file=path.name,
                    line=piece.first_line,
                )
                continue  # a concurrent writer added some of these addresses: look them up again
            piece.part.merge(outcome)
            break
        return piece

    def settle(self, future: Future[_Piece]) -> None:
        """Wait for the chunk in flight; merge it, or stop with the line to resume from."""
        result = self.result
        try:
            piece = future.result()
        except Exception as exc:  # that chunk is rolled back; the ones before it stay
            text = str(exc).strip()
            cause = text.splitlines()[0][:300] if text else type(exc).__name__
            log.error(
                "subscribers.import_aborted",
                list=self.list_slug,
                file=self.path.name,
                resume_line=self.pieces_started[0],
                imported=result.imported,
                updated=result.updated,
                error=type(exc).__name__,
            )
            raise ImportAborted(str(self.path), self.pieces_started[0], cause, result) from exc
        self.pieces_started.pop(0)
        result.merge(piece.part)
        if self.progress is not None:
            self.progress(result.last_line)


def _log_done(list_slug: str, path: Path, dry_run: bool, result: ImportResult) -> None:
    log.info(
        "subscribers.import_done",
        list=list_slug,
        file=path.name,
        dry_run=dry_run,
        rows=result.rows,
        imported=result.imported,
        added=result.added,
        updated=result.updated,
        unchanged=result.unchanged,
        resubscribed=result.resubscribed,
        skipped=result.skipped_total,
    )


def _remember_hygiene(
    engine: Engine, list_id: int, path: Path, result: ImportResult, emails: set[str]
) -> None:
    """Keep the import's share of invalid and role addresses on the list: a send to it is
    flagged beforehand when the share is high (dispatch.deliverability.preflight)."""
    from dispatch.deliverability.preflight import is_role_address

    role = sorted(e for e in emails if is_role_address(e))
    stats = {
        "at": utcnow().isoformat(),
        "file": path.name,
        "rows": result.rows,
        "invalid": result.skipped.get("invalid_email", 0),
        "role": len(role),
        "role_examples": role[:3],
    }
    with engine.begin() as conn:
        conn.execute(
            MailingList.__table__.update()
            .where(MailingList.__table__.c.id == list_id)
            .values(import_stats=stats)
        )
