"""A small inline SVG bar chart of first opens and clicks per time bucket (no JavaScript)."""

from __future__ import annotations

from datetime import timedelta
from html import escape
from typing import Any

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 720, 220, 36, 28, 22
MIN_BUCKETS = 12  # a short campaign still gets a time axis, not two wall-wide bars
MAX_BAR = 18.0
OPEN_COLOUR, CLICK_COLOUR = "#9b1c1c", "#2f6fb0"


def opens_clicks_svg(
    timeline: dict[str, Any], labels: tuple[str, str] = ("opened", "clicked")
) -> str:
    buckets = list(timeline.get("buckets") or [])
    if not buckets:
        return ""
    size = timeline.get("bucket_seconds", 3600)
    while len(buckets) < MIN_BUCKETS:
        last = buckets[-1]["start"]
        start = last + timedelta(seconds=size) if hasattr(last, "timestamp") else last
        buckets.append({"start": start, "opened": 0, "clicked": 0})
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
