"""Which Markdown constructs the installed source parser understands (probed, not assumed).

Why a probe: the source format grows (tables, italics, block quotes, footnotes, nested lists
arrive with the markdown-it-py parser), and the importer must write only what `dispatch issues
publish` accepts. Each construct is parsed once in a tiny issue; when it comes back as the raw
Markdown text (or an error), the importer writes the plain fallback and reports it.
"""

from __future__ import annotations

import tempfile
from functools import cache
from typing import Any

PROBES = {
    "table": ("| 甲 | 乙 |\n| --- | --- |\n| 1 | 2 |", "|"),
    "italic": ("前 *斜体* 后", "*"),
    "quote": ("> 引用的话", ">"),
    "footnote": ("正文[^1]\n\n[^1]: 注释", "[^"),
    "nested_list": ("- 一\n  - 二", "- 二"),
}
HEAD = (
    "---\ntitle: t\nnumber: 1\nperiod_from: 2023-02-01\nperiod_to: 2023-02-28\n"
    "publisher: p\n---\n\n# s\n\n## a\nsource: s\nsource_url: https://example.org/\n"
    "date: 2023-02-01\n\nfirst\n\n"
)


def _texts(value: Any, depth: int = 0) -> list[str]:
    """Every string found in a parsed block (dataclasses, tuples), to look for raw markup."""
    if depth > 8:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _texts(v, depth + 1)]
    fields = getattr(value, "__dataclass_fields__", None)
    if fields:
        return [t for name in fields for t in _texts(getattr(value, name), depth + 1)]
    return []


@cache
def supported(feature: str) -> bool:
    from dispatch.content.parse import parse_issue_text

    body, raw = PROBES[feature]
    with tempfile.TemporaryDirectory(prefix="dispatch-probe-") as tmp:
        try:
            doc = parse_issue_text(HEAD + body + "\n", tmp)
        except Exception:  # the parser refuses the construct: not supported
            return False
    blocks = doc.articles[0].blocks[1:]
    return bool(blocks) and not any(raw in t for t in _texts(blocks))
