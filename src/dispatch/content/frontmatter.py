"""The front matter of an issue: real YAML (safe: composed into nodes, never constructed into
objects), one scalar per key, each value with the line it sits on.

Why compose and read scalar text instead of `yaml.safe_load`: YAML 1.1 would turn
`title: yes` into True and `slug: 2023-02` into a date; the format's keys are text that this
module checks itself (dates, the issue number), and each key keeps its line for the message.
When the YAML does not parse, each line is read on its own so that every bad line is named at
once, not only the first.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import yaml

from dispatch.content.images import checked_image
from dispatch.content.model import Image, IssueMeta
from dispatch.content.problems import Problems

REQUIRED_KEYS = ("title", "number", "period_from", "period_to", "publisher")
OPTIONAL_KEYS = ("preheader", "slug", "locale", "cover")
SUPPORTED_LOCALES = ("zh-CN", "en")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# control characters are named by the parser's own check; YAML would only repeat it
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
_NULL_TAG = "tag:yaml.org,2002:null"
_KEY_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:")


class Values(dict[str, tuple[str, int]]):
    """`key -> (value, line)`; `unreadable` holds keys whose line is named already (bad YAML,
    a list for a value), so they are not reported missing or empty as well."""

    def __init__(self) -> None:
        super().__init__()
        self.unreadable: set[str] = set()


def read_front_matter(content: str, first_line: int, problems: Problems) -> Values:
    """`key -> (value, line)` of the YAML `content`, whose first line is `first_line`."""
    clean = _CONTROL_RE.sub("", content)
    try:
        node = yaml.compose(clean, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        return _line_by_line(clean, first_line, problems, exc)
    values = Values()
    _entries(node, first_line, problems, values)
    return values


def _entries(node: yaml.Node | None, first_line: int, problems: Problems, values: Values) -> None:
    if node is None:
        return
    if not isinstance(node, yaml.MappingNode):
        problems.add(first_line + node.start_mark.line, "bad_front_line")
        return
    for key_node, value_node in node.value:
        line = first_line + key_node.start_mark.line
        key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
        if not isinstance(key_node, yaml.ScalarNode) or not isinstance(key, str):
            problems.add(line, "bad_front_line")
        elif key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            problems.add(line, "unknown_key", name=key)
        elif key in values:
            problems.add(line, "duplicate_key", name=key)
        elif not isinstance(value_node, yaml.ScalarNode):
            problems.add(line, "not_scalar", name=key)
            values.unreadable.add(key)
        else:
            text = "" if value_node.tag == _NULL_TAG else str(value_node.value)
            values[key] = (text.strip(), line)


def _line_by_line(content: str, first_line: int, problems: Problems, exc: yaml.YAMLError) -> Values:
    """Each line read alone: a line that fails is named; the others still give values."""
    values = Values()
    failed = False
    for offset, raw in enumerate(content.split("\n")):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            node = yaml.compose(raw, Loader=yaml.SafeLoader)
        except yaml.YAMLError as line_exc:
            problems.add(first_line + offset, "bad_yaml", why=_reason(line_exc))
            failed = True
            key = _KEY_RE.match(raw)
            if key:
                values.unreadable.add(key.group(1))
            continue
        _entries(node, first_line + offset, problems, values)
    if not failed:  # a problem spanning lines (an unclosed quote, a bad indent)
        mark = getattr(exc, "problem_mark", None)
        problems.add(first_line + (mark.line if mark else 0), "bad_yaml", why=_reason(exc))
    return values


def _reason(exc: yaml.YAMLError) -> str:
    return str(getattr(exc, "problem", None) or exc).strip()


def parse_date(problems: Problems, key: str, value: str, line: int) -> date | None:
    if DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    problems.add(line, "bad_date", name=key, value=value)
    return None


def _required(values: Values, problems: Problems, header_line: int) -> None:
    for key in REQUIRED_KEYS:
        if key in values.unreadable:
            continue
        if key not in values:
            problems.add(header_line, "missing_key", name=key)
        elif not values[key][0]:
            problems.add(values[key][1], "empty_value", name=key)


def _number(values: Values, problems: Problems) -> int | None:
    if "number" not in values or not values["number"][0]:
        return None
    raw, line = values["number"]
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    problems.add(line, "bad_number", value=raw)
    return None


def _period(values: Values, problems: Problems) -> tuple[date | None, date | None]:
    found: list[date | None] = []
    for key in ("period_from", "period_to"):
        parsed = None
        if key in values and values[key][0]:
            parsed = parse_date(problems, key, *values[key])
        found.append(parsed)
    start, end = found
    if start and end and end < start:
        problems.add(values["period_to"][1], "period_order")
    return start, end


def _choice(values: Values, problems: Problems, key: str, default: str) -> str:
    """locale (one of the supported) or slug (lower-case URL name)."""
    if key not in values:
        return default
    raw, line = values[key]
    ok = raw in SUPPORTED_LOCALES if key == "locale" else bool(SLUG_RE.match(raw))
    if ok:
        return raw
    problems.add(line, "bad_locale" if key == "locale" else "bad_slug", value=raw)
    return default


def build_meta(
    values: Values, problems: Problems, header_line: int, source_dir: Path | None
) -> tuple[IssueMeta | None, bytes]:
    """The checked issue metadata (None when a required value is unusable) and the cover's
    bytes for the content hash."""
    _required(values, problems, header_line)
    number = _number(values, problems)
    period_from, period_to = _period(values, problems)
    locale = _choice(values, problems, "locale", "zh-CN")
    slug = _choice(values, problems, "slug", period_from.strftime("%Y-%m") if period_from else "")
    cover: Image | None = None
    cover_bytes = b""
    if "cover" in values and values["cover"][0]:
        raw, line = values["cover"]
        alt = values.get("title", ("", 0))[0] or raw
        cover, cover_bytes = checked_image(problems, source_dir, raw, alt, "", line)
    if number is None or period_from is None or period_to is None:
        return None, cover_bytes
    if not values.get("title", ("", 0))[0] or not values.get("publisher", ("", 0))[0]:
        return None, cover_bytes
    meta = IssueMeta(
        title=values["title"][0],
        number=number,
        period_from=period_from,
        period_to=period_to,
        publisher=values["publisher"][0],
        slug=slug,
        locale=locale,
        preheader=values.get("preheader", ("", 0))[0],
        cover=cover,
    )
    return meta, cover_bytes
