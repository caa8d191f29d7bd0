"""The click map: the email as sent, each tracked link marked with its clickers and clicks.

The issue's email is rendered as for a tracked send (web link slots in place of click URLs),
each slot is filled with a marker, and each marked link gets its original URL back and a badge
after it. A link of the table that the email does not show (shortened articles) gets no badge.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping

from dispatch.config import Settings
from dispatch.content.model import IssueDoc
from dispatch.render.email import render_email

MARK = "https://dispatch-link.invalid/"
_ANCHOR = re.compile(r"(<a\b[^>]*?href=\")" + re.escape(MARK) + r"(\d+)(\"[^>]*>)(.*?)(</a>)", re.S)
BADGE_STYLE = (
    "display:inline-block;margin:0 0 0 4px;padding:1px 6px;border-radius:9px;"
    "background:#0072B2;color:#fff;font:bold 12px/1.5 sans-serif;white-space:nowrap;"
    "text-decoration:none;vertical-align:middle"
)


def click_map_html(
    doc: IssueDoc,
    settings: Settings,
    counts: Mapping[int, tuple[int, int]],
    badge: Callable[[int, int], str],
) -> str:
    """The email HTML with a badge after each link: `counts[i]` = (people, clicks) of link i,
    `badge(people, clicks)` its text (in the reader's language)."""
    rendered = render_email(doc, settings, tracking=True)
    values = ["", "#", ""] + [f"{MARK}{i}" for i in range(len(rendered.links))]
    page = rendered.html_layout.fill(values)

    def mark(match: re.Match[str]) -> str:
        index = int(match.group(2))
        url = html.escape(rendered.links[index]) if index < len(rendered.links) else "#"
        people, clicks = counts.get(index, (0, 0))
        return (
            f"{match.group(1)}{url}{match.group(3)}{match.group(4)}{match.group(5)}"
            f'<span data-link="{index}" data-people="{people}" data-clicks="{clicks}" '
            f'style="{BADGE_STYLE}">{html.escape(badge(people, clicks))}</span>'
        )

    return _ANCHOR.sub(mark, page)
