"""What the report pages show: the report's figures with their labels, charts and tables.

Shared by the screen page, the A4 print page and the trends page, so both languages and both
media show the same numbers. The charts come from web.chart (SVG, no JavaScript); every chart
has a table with the same numbers next to it (`table_id`), for screen readers and for print.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup

from dispatch.reports.classify import MPP, PERSON, SCANNER
from dispatch.web import chart
from dispatch.web.texts import TEXTS

FIGURES = (  # (label key, counts key or (counts key, origin), rate key)
    ("sent", "sent", None),
    ("delivered", "delivered", "delivered"),
    ("bounced", "bounced", "bounced"),
    ("opened", ("opened", PERSON), "opened"),
    ("opened_all", ("opened", "all"), "opened_all"),
    ("clicked", ("clicked", PERSON), "clicked"),
    ("clicked_all", ("clicked", "all"), "clicked_all"),
    ("click_to_open", None, "click_to_open"),
    ("complained", "complained", "complained"),
    ("unsubscribed", "unsubscribed", "unsubscribed"),
    ("failed", "failed", None),
)


def percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def figures(report: dict[str, Any], locale: str) -> list[dict[str, Any]]:
    """The headline figures: label, people, rate and the definition shown beside them."""
    rows = []
    for key, count_key, rate_key in FIGURES:
        if isinstance(count_key, tuple):
            people: int | None = report["counts"][count_key[0]][count_key[1]]
        else:
            people = report["counts"][count_key] if count_key else None
        rows.append(
            {
                "key": key,
                "label": TEXTS.get(f"m_{key}", locale),
                "people": people,
                "rate": percent(report["rates"][rate_key]) if rate_key else "",
                "definition": TEXTS.get(f"d_{key}", locale),
            }
        )
    return rows


def _tick(zone: ZoneInfo):
    def tick(bucket: dict[str, Any]) -> str:
        at = bucket["start"].replace(tzinfo=ZoneInfo("UTC")).astimezone(zone)
        return at.strftime("%m-%d %H:00") if bucket["hours"] == 1 else at.strftime("%m-%d")

    return tick


def timeline(report: dict[str, Any], locale: str, zone_name: str, prefix: str) -> dict[str, Any]:
    """Two charts (first opens by origin, first clicks by origin) and their table."""
    zone = ZoneInfo(zone_name)
    tick = _tick(zone)
    buckets = report["timeline"]["buckets"]
    t = TEXTS.get
    opens = [{"start": b["start"], "hours": b["hours"], "values": b["opened"]} for b in buckets]
    clicks = [{"start": b["start"], "hours": b["hours"], "values": b["clicked"]} for b in buckets]
    table_id = f"{prefix}-timeline-table"
    return {
        "opens_svg": Markup(
            chart.stacked_time_svg(
                opens,
                [
                    (PERSON, t("origin_person", locale), chart.PERSON_COLOUR),
                    (MPP, t("origin_mpp", locale), chart.MPP_COLOUR),
                    (SCANNER, t("origin_scanner", locale), chart.SCANNER_COLOUR),
                ],
                label=t("report_opens_chart", locale),
                table_id=table_id,
                tick=tick,
            )
        ),
        "clicks_svg": Markup(
            chart.stacked_time_svg(
                clicks,
                [
                    (PERSON, t("origin_person", locale), chart.CLICK_PERSON_COLOUR),
                    (SCANNER, t("origin_scanner", locale), chart.SCANNER_COLOUR),
                ],
                label=t("report_clicks_chart", locale),
                table_id=table_id,
                tick=tick,
            )
        ),
        "table_id": table_id,
        "rows": [
            {"label": tick(b), "opened": b["opened"], "clicked": b["clicked"]}
            for b in buckets
            if b["opened"]["all"] or b["clicked"]["all"]
        ],
        "future": report["timeline"]["future"],
        "zone": zone_name,
    }


def _bars(
    rows: list[tuple[str, list[tuple[int, str]]]],
    legend: list[tuple[str, str]],
    locale: str,
    label: str,
    table_id: str,
) -> Markup:
    """Horizontal stacked bars; legend entries are (text key, colour)."""
    return Markup(
        chart.hbars_svg(
            rows,
            label=TEXTS.get(label, locale),
            table_id=table_id,
            legend=[(TEXTS.get(key, locale), colour) for key, colour in legend],
        )
    )


def article_chart(report: dict[str, Any], locale: str, prefix: str) -> Markup:
    person, scanner = chart.CLICK_PERSON_COLOUR, chart.SCANNER_COLOUR
    rows = [
        (a["name"], [(a["person"], person), (a["all"] - a["person"], scanner)])
        for a in report["articles"][:15]
    ]
    legend = [("origin_person", person), ("origin_scanner", scanner)]
    return _bars(rows, legend, locale, "report_articles", f"{prefix}-articles-table")


def device_chart(report: dict[str, Any], locale: str, prefix: str) -> Markup:
    person, machine = chart.PERSON_COLOUR, chart.MPP_COLOUR
    rows = [
        (
            TEXTS.get(f"device_{d['key']}", locale),
            [(d["opened"][PERSON], person), (d["opened"]["machine"], machine)],
        )
        for d in report["by_device"]
    ]
    legend = [("origin_person", person), ("origin_machine", machine)]
    return _bars(rows, legend, locale, "report_by_device", f"{prefix}-devices-table")


def local_time(at: datetime | None, zone_name: str) -> str:
    if at is None:
        return "—"
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo("UTC"))
    return at.astimezone(ZoneInfo(zone_name)).strftime("%Y-%m-%d %H:%M")


def context(report: dict[str, Any], locale: str, zone_name: str, prefix: str = "r") -> dict:
    """Everything the report templates show, in `locale`."""
    return {
        "report": report,
        "figures": figures(report, locale),
        "timeline": timeline(report, locale, zone_name, prefix),
        "articles_svg": article_chart(report, locale, prefix),
        "devices_svg": device_chart(report, locale, prefix),
        "as_of": local_time(report["as_of"], zone_name),
        "hits_at": local_time(report.get("hits_at"), zone_name) if report.get("hits_at") else "",
        "zone": zone_name,
        "percent": percent,
        "prefix": prefix,
    }


def trends_chart(rows: list[dict[str, Any]], locale: str) -> Markup:
    """Open and click rates (people) of the last issues, oldest first."""
    groups = [
        (
            row["slug"],
            [
                (100 * (row["rates"]["opened"] or 0.0), chart.PERSON_COLOUR),
                (100 * (row["rates"]["clicked"] or 0.0), chart.CLICK_PERSON_COLOUR),
            ],
        )
        for row in rows
    ]
    legend = [
        (TEXTS.get("report_open_rate", locale), chart.PERSON_COLOUR),
        (TEXTS.get("report_click_rate", locale), chart.CLICK_PERSON_COLOUR),
    ]
    return Markup(
        chart.grouped_bars_svg(
            groups,
            label=TEXTS.get("trends_open_chart", locale),
            table_id="trends-table",
            legend=legend,
        )
    )
