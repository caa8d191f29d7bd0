"""A report as CSV: one table, a `section` column saying which part each row belongs to.

One file an office can open in a spreadsheet: headline figures (people and rates), links,
articles, sections, the time series and the breakdowns; cells are written through
dispatch.csv_safe so a link title cannot become a spreadsheet formula. Column names are
English and stable (documented in docs/reports.md); the `label` column is in the asked language.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

from dispatch import csv_safe

COLUMNS = (
    "section",
    "key",
    "label",
    "people",
    "rate",
    "person",
    "mpp",
    "scanner",
    "all",
    "hits",
)


def _origin(values: dict[str, int]) -> dict[str, Any]:
    return {k: values.get(k, 0) for k in ("person", "mpp", "scanner", "all")}


def _totals(report: dict[str, Any], label: Callable[[str], str]) -> Iterator[dict[str, Any]]:
    counts, rates = report["counts"], report["rates"]
    for key in ("sent", "delivered", "bounced", "failed", "complained", "unsubscribed"):
        yield {
            "section": "total",
            "key": key,
            "label": label(f"m_{key}"),
            "people": counts[key],
            "rate": rates.get(key),
        }
    for key in ("opened", "clicked"):
        yield {
            "section": "total",
            "key": key,
            "label": label(f"m_{key}"),
            "people": counts[key]["person"],
            "rate": rates[key],
            **_origin(counts[key]),
        }
    yield {
        "section": "total",
        "key": "click_to_open",
        "label": label("m_click_to_open"),
        "rate": rates["click_to_open"],
    }
    yield {"section": "hits", "key": "opens", "hits": report["hits"]["opens"]}
    yield {"section": "hits", "key": "clicks", "hits": report["hits"]["clicks"]}


def _content(report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Links, articles and sections."""
    for link in report["links"]:
        yield {
            "section": "link",
            "key": link["index"],
            "label": link["url"],
            "people": link["clickers"]["person"],
            "hits": link["hits"],
            **_origin(link["clickers"]),
        }
    for part in ("articles", "sections"):
        for group in report[part]:
            yield {
                "section": part[:-1],
                "key": group["name"],
                "label": group["name"],
                "people": group["person"],
                "person": group["person"],
                "all": group["all"],
                "hits": group["hits"],
            }


def _series(report: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The time series and the breakdowns."""
    for bucket in report["timeline"]["buckets"]:
        for kind in ("opened", "clicked"):
            yield {
                "section": f"time_{kind}",
                "key": bucket["start"].isoformat() + "Z",
                "label": f"{bucket['hours']}h",
                "people": bucket[kind]["person"],
                **_origin(bucket[kind]),
            }
    for dim in ("by_list", "by_provider"):
        for row in report[dim]:
            yield {
                "section": dim[3:],
                "key": row["key"],
                "label": row["name"],
                "people": row["counts"]["sent"],
                "rate": row["rates"]["opened"],
                **_origin(row["counts"]["opened"]),
            }
    for dim in ("by_client", "by_device"):
        for row in report[dim]:
            yield {
                "section": dim[3:],
                "key": row["key"],
                "label": row["key"],
                "people": row["opened"]["person"],
                **_origin(row["opened"]),
            }


def rows(report: dict[str, Any], label: Callable[[str], str]) -> Iterator[dict[str, Any]]:
    yield from _totals(report, label)
    yield from _content(report)
    yield from _series(report)


def to_csv(report: dict[str, Any], label: Callable[[str], str]) -> str:
    out = io.StringIO()
    writer = csv_safe.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows(report, label):
        writer.writerow(["" if row.get(c) is None else row[c] for c in COLUMNS])
    return "\ufeff" + out.getvalue()  # a BOM: spreadsheet programs then read the Chinese right
