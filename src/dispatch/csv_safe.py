"""CSV cells that cannot run as spreadsheet formulas (OWASP "CSV injection"), losslessly.

Why: subscriber names and attributes come from strangers (subscribe forms, imported files).
A cell beginning with `=`, `+`, `-`, `@`, a tab or a line break runs as a formula when an
administrator opens the export in Excel or WPS (`=HYPERLINK(...)`, DDE). Every CSV the project
writes goes through `writer()` (a test fails on any other `csv.writer` in the package), which
prefixes such a cell with an apostrophe; spreadsheets show the text as written.

Lossless: a cell that already begins with an apostrophe gets one more, so `restore` (which the
import applies to every cell) removes exactly the one `neutralise` added and nothing else.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["FORMULA_STARTS", "neutralise", "restore", "writer"]

# ASCII triggers, the full-width forms some spreadsheet apps also evaluate, and the quote
# itself (so that the escaping can be undone exactly)
FORMULA_STARTS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20'")


def neutralise(value: str) -> str:
    """The cell as written to a CSV: an apostrophe in front of a formula trigger."""
    if value and value[0] in FORMULA_STARTS:
        return "'" + value
    return value


def restore(cell: str) -> str:
    """Undo `neutralise` (import side): drop an apostrophe that guards a trigger."""
    if len(cell) > 1 and cell[0] == "'" and cell[1] in FORMULA_STARTS:
        return cell[1:]
    return cell


class _SafeWriter:
    """csv.writer whose every cell is neutralised (headers included)."""

    def __init__(self, out: TextIO, **kwargs: Any):
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([neutralise(c) if isinstance(c, str) else c for c in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out: TextIO, **kwargs: Any) -> _SafeWriter:
    """The one way the project writes CSV (same arguments as csv.writer)."""
    return _SafeWriter(out, **kwargs)
