"""Publish-time proof that an issue renders: refuse it now rather than fail every delivery.

Why at publish: a render that crashes, or an email that cannot fit under Gmail's clip even
with every article cut to title and link, would otherwise be accepted and then fail each
recipient at send time. Publishing renders the email the way a send does (tracking on, the
worst-case slot values) and, when WeChat is configured, the WeChat articles too; any failure
becomes an `IssueSourceError` naming the file and what to do, and nothing is stored.
"""

from __future__ import annotations

from dispatch.config import Settings
from dispatch.content.model import IssueDoc
from dispatch.content.parse import SOURCE_FILE_NAME, IssueSourceError, Problem
from dispatch.render.slots import RecipientSlots

HOSTILE_NAME = "<\"&'>" * 40  # 200 characters, each escaped to its longest form


def check_renderable(doc: IssueDoc, settings: Settings) -> None:
    """Raise IssueSourceError if the issue cannot be sent as email (or WeChat, if configured)."""
    from dispatch.render.email import RenderError, render_email

    label = str(doc.source_dir / SOURCE_FILE_NAME)
    problems: list[Problem] = []
    try:
        rendered = render_email(doc, settings, tracking=True)
        url = settings.public_base_url.rstrip("/") + "/t/c/" + "x" * 120
        rendered.personalize(
            RecipientSlots(HOSTILE_NAME, url, open_url=url, click_urls=[url] * rendered.link_count)
        )
    except RenderError as exc:
        problems.append(Problem(label, 1, f"email: {exc}"))
    except Exception as exc:  # any crash here would crash every delivery: refuse, say what
        problems.append(Problem(label, 1, f"email cannot be rendered: {type(exc).__name__}: {exc}"))
    if settings.wechat_app_id:
        from dispatch.render.wechat import render_wechat

        try:
            render_wechat(doc, settings)
        except Exception as exc:
            problems.append(Problem(label, 1, f"WeChat: {exc}"))
    if problems:
        raise IssueSourceError(problems)
