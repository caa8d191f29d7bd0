"""A small inline SVG bar chart of first opens and clicks per time bucket (no JavaScript)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 220, 36, 28, 22
MIN_BUCKETS = 12  # a short campaign still gets a time axis, not two wall-wide bars
MAX_BAR = 18.0
OPEN_COLOUR, CLICK_COLOUR = "#9b1c1c", "#2f6fb0"


def _pad(buckets: list[dict[str, Any]], size: int) -> None:
    """Pad a short campaign's axis to MIN_BUCKETS, never past the present."""
    now = datetime.now(UTC)
    while len(buckets) < MIN_BUCKETS:
        last = buckets[-1]["start"]
        if not hasattr(last, "timestamp"):
            break
        start = last + timedelta(seconds=size)
        if start > (now if start.tzinfo else now.replace(tzinfo=None)):
            break
        buckets.append({"start": start, "opened": 0, "clicked": 0})


def opens_clicks_svg(
    timeline: dict[str, Any], labels: tuple[str, str] = ("opened", "clicked")
) -> str:
    buckets = list(timeline.get("buckets") or [])
    if not buckets:
        return ""
    _pad(buckets, timeline.get("bucket_seconds", 3600))
    peak = max(max(b["opened"], b["clicked"]) for b in buckets) or 1
    plot_w, plot_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / len(buckets)
    bar = min(MAX_BAR, max(1.0, slot * 0.38))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" '
        f'role="img" '
        f'aria-label="{escape(labels[0])} / {escape(labels[1])}" style="max-width:{WIDTH}px;'
        f'background:#fff">'
    ]
    for value in sorted({0, peak // 2, peak}):
        y = PAD_TOP + plot_h * (1 - value / peak)
        parts.append(
            f'<line x1="{PAD_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e8ec"/>'
        )
        parts.append(
            f'<text x="{PAD_LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#61707d">{value}</text>'
        )
    step = max(1, -(-len(buckets) // 6))
    for i, b in enumerate(buckets):
        x = PAD_LEFT + i * slot + (slot - 2 * bar) / 2
        for j, (key, colour) in enumerate((("opened", OPEN_COLOUR), ("clicked", CLICK_COLOUR))):
            h = plot_h * b[key] / peak
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{PAD_TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(str(b["start"]))}: {escape(labels[j])} '
                f"{b[key]}</title></rect>"
            )
        if i % step == 0:
            start = b["start"]
            label = (
                start.strftime("%m-%d %H:%M") if hasattr(start, "strftime") else str(start)[5:16]
            )
            x = PAD_LEFT + i * slot
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - 8}" font-size="10" '
                f'fill="#61707d">{escape(label)}</text>'
            )
    parts.append(
        f'<rect x="{WIDTH - 170}" y="2" width="10" height="10" fill="{OPEN_COLOUR}"/>'
        f'<text x="{WIDTH - 156}" y="11" font-size="11">{escape(labels[0])}</text>'
        f'<rect x="{WIDTH - 90}" y="2" width="10" height="10" fill="{CLICK_COLOUR}"/>'
        f'<text x="{WIDTH - 76}" y="11" font-size="11">{escape(labels[1])}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


# --- report charts (issue 14): colour-blind-safe, readable at 375 px, each beside its table ----

# Okabe & Ito's palette, told apart by people with any common colour-vision deficiency
PERSON_COLOUR, MPP_COLOUR, SCANNER_COLOUR = "#0072B2", "#E69F00", "#CC79A7"
CLICK_PERSON_COLOUR = "#009E73"
REPORT_W, REPORT_H, REPORT_LEFT, REPORT_BOTTOM, REPORT_TOP = 360, 190, 34, 34, 26


def _svg_open(width: int, height: int, label: str, table_id: str) -> str:
    """A chart that scales to its column (375 px phones included) and names its data table."""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" '
        f'role="img" aria-label="{escape(label)}" aria-describedby="{escape(table_id)}" '
        f'style="max-width:640px;display:block;background:#fff" font-family="sans-serif">'
        f"<title>{escape(label)}</title>"
    )


def _legend(series: list[tuple[str, str]], y: int = 12) -> str:
    parts, x = [], REPORT_LEFT
    for label, colour in series:
        parts.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 13}" y="{y}" font-size="10">{escape(label)}</text>'
        )
        x += 18 + 6 * len(label) + (6 * sum(1 for ch in label if ord(ch) > 0x2E80))
    return "".join(parts)


def stacked_time_svg(
    buckets: list[dict[str, Any]],
    series: list[tuple[str, str, str]],
    *,
    label: str,
    table_id: str,
    tick: Any,
) -> str:
    """Stacked bars over time: `series` = (key in each bucket's values, legend, colour);
    `tick(bucket)` gives an axis label. The last bar is the bucket holding the present."""
    if not buckets:
        return ""
    w, h = REPORT_W, REPORT_H
    plot_w, plot_h = w - REPORT_LEFT - 6, h - REPORT_BOTTOM - REPORT_TOP
    peak = max(sum(b["values"].get(k, 0) for k, _l, _c in series) for b in buckets) or 1
    slot = plot_w / len(buckets)
    bar = max(1.0, min(14.0, slot * 0.7))
    parts = [_svg_open(w, h, label, table_id), _legend([(lab, c) for _k, lab, c in series])]
    for value in sorted({0, (peak + 1) // 2, peak}):
        y = REPORT_TOP + plot_h * (1 - value / peak)
        parts.append(
            f'<line x1="{REPORT_LEFT}" x2="{w - 6}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d5dbe1"/>'
            f'<text x="{REPORT_LEFT - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="#3d4852">{value}</text>'
        )
    step = max(1, -(-len(buckets) // 5))
    for i, b in enumerate(buckets):
        x, base = REPORT_LEFT + i * slot + (slot - bar) / 2, REPORT_TOP + plot_h
        for key, legend, colour in series:
            n = b["values"].get(key, 0)
            if n:
                height = plot_h * n / peak
                base -= height
                parts.append(
                    f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                    f'fill="{colour}"><title>{escape(tick(b))} {escape(legend)}: {n}</title></rect>'
                )
        if i % step == 0 or i == len(buckets) - 1:
            anchor = "end" if i == len(buckets) - 1 else "start"
            tx = REPORT_LEFT + (i + 1) * slot if anchor == "end" else REPORT_LEFT + i * slot
            if anchor == "end" or tx < w - 70:
                parts.append(
                    f'<text x="{tx:.1f}" y="{h - 18}" font-size="9" text-anchor="{anchor}" '
                    f'fill="#3d4852">{escape(tick(b))}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def hbars_svg(
    rows: list[tuple[str, list[tuple[int, str]]]], *, label: str, table_id: str, legend: list
) -> str:
    """Horizontal stacked bars, one row per item, the name above its bar (long Chinese titles
    fit a phone); `rows` = (name, [(value, colour), …])."""
    if not rows:
        return ""
    row_h, w = 30, REPORT_W
    h = REPORT_TOP + row_h * len(rows) + 4
    peak = max(sum(v for v, _c in parts) for _n, parts in rows) or 1
    out = [_svg_open(w, h, label, table_id), _legend(legend)]
    plot_w = w - 12 - 40
    for i, (name, parts) in enumerate(rows):
        y = REPORT_TOP + i * row_h
        short = name if len(name) <= 40 else name[:39] + "…"
        out.append(f'<text x="6" y="{y + 9}" font-size="10" fill="#1f2a33">{escape(short)}</text>')
        x = 6.0
        for value, colour in parts:
            width = plot_w * value / peak
            if width > 0:
                out.append(
                    f'<rect x="{x:.1f}" y="{y + 12}" width="{width:.1f}" height="12" '
                    f'fill="{colour}"><title>{escape(name)}: {value}</title></rect>'
                )
            x += width
        total = sum(v for v, _c in parts)
        out.append(f'<text x="{x + 4:.1f}" y="{y + 22}" font-size="10">{total}</text>')
    out.append("</svg>")
    return "".join(out)


def grouped_bars_svg(
    groups: list[tuple[str, list[tuple[float, str]]]],
    *,
    label: str,
    table_id: str,
    legend: list[tuple[str, str]],
) -> str:
    """Side-by-side bars per group (e.g. open and click rate per issue), values in percent."""
    if not groups:
        return ""
    w, h = REPORT_W, REPORT_H
    plot_w, plot_h = w - REPORT_LEFT - 6, h - REPORT_BOTTOM - REPORT_TOP
    peak = max([v for _g, values in groups for v, _c in values] + [1.0])
    slot = plot_w / len(groups)
    per = max(1, max(len(values) for _g, values in groups))
    bar = max(1.0, min(12.0, slot * 0.8 / per))
    parts = [_svg_open(w, h, label, table_id), _legend(legend)]
    for value in (0.0, peak / 2, peak):
        y = REPORT_TOP + plot_h * (1 - value / peak)
        parts.append(
            f'<line x1="{REPORT_LEFT}" x2="{w - 6}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d5dbe1"/>'
            f'<text x="{REPORT_LEFT - 4}" y="{y + 3:.1f}" font-size="10" text-anchor="end" '
            f'fill="#3d4852">{value:.0f}%</text>'
        )
    for i, (name, values) in enumerate(groups):
        x = REPORT_LEFT + i * slot + (slot - bar * len(values)) / 2
        for j, (value, colour) in enumerate(values):
            height = plot_h * value / peak
            parts.append(
                f'<rect x="{x + j * bar:.1f}" y="{REPORT_TOP + plot_h - height:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}" fill="{colour}">'
                f"<title>{escape(name)}: {value:.1f}%</title></rect>"
            )
        parts.append(
            f'<text x="{REPORT_LEFT + (i + 0.5) * slot:.1f}" y="{h - 18}" font-size="9" '
            f'text-anchor="middle" fill="#3d4852">{escape(name[:8])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
