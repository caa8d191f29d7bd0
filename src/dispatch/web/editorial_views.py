"""What the editor's pages and API show of an issue's versions and review: plain dicts built
from dispatch.editorial, shared by the JSON API and the Jinja pages (one place, one shape)."""

from __future__ import annotations

from html import escape
from typing import Any

from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.content.model import IssueDoc
from dispatch.editorial.guard import NotApproved, check_sendable
from dispatch.editorial.review import approvals, reviews_of
from dispatch.editorial.versions import author_name, versions_of
from dispatch.models.editorial import IssueVersion
from dispatch.models.issue import Issue


def version_out(session: Session, version: IssueVersion) -> dict[str, Any]:
    return {
        "number": version.number,
        "status": version.status,
        "content_hash": version.content_hash,
        "author": author_name(session, version.author_id),
        "author_id": version.author_id,
        "note": version.note,
        "created_at": version.created_at,
        "submitted_by_id": version.submitted_by_id,
        "submitted_at": version.submitted_at,
        "approved_at": version.approved_at,
        "approvers": [r.reviewer_email for r in approvals(session, version)],
    }


def history(session: Session, issue: Issue) -> dict[str, Any]:
    """Every version (newest first) with its reviews, for the versions page and the API."""
    versions = versions_of(session, issue.id)
    by_version: dict[int, list[dict[str, Any]]] = {v.id: [] for v in versions}
    for review in reviews_of(session, list(by_version)):
        by_version[review.version_id].append(
            {
                "reviewer": review.reviewer_email,
                "verdict": review.verdict,
                "comment": review.comment,
                "content_hash": review.content_hash,
                "at": review.created_at,
            }
        )
    return {
        "issue_id": issue.id,
        "slug": issue.slug,
        "content_hash": issue.content_hash,
        "versions": [{**version_out(session, v), "reviews": by_version[v.id]} for v in versions],
    }


def review_states(session: Session, issue_ids: list[int], locale: str) -> dict[int, dict]:
    """Each issue's latest version and its review status, for the issues list."""
    from sqlalchemy import func, select

    from dispatch.editorial.messages import status_word

    if not issue_ids:
        return {}
    newest = (
        select(IssueVersion.issue_id, func.max(IssueVersion.number).label("n"))
        .where(IssueVersion.issue_id.in_(issue_ids))
        .group_by(IssueVersion.issue_id)
        .subquery()
    )
    rows = session.execute(
        select(IssueVersion.issue_id, IssueVersion.number, IssueVersion.status).join(
            newest,
            (newest.c.issue_id == IssueVersion.issue_id) & (newest.c.n == IssueVersion.number),
        )
    )
    return {
        issue_id: {"number": number, "status": status, "word": status_word(status, locale)}
        for issue_id, number, status in rows
    }


def clearance(session: Session, settings: Settings, issue: Issue) -> dict[str, Any]:
    """May this issue go to real lists now, and if not, why (the send guard's own words)."""
    try:
        ok = check_sendable(session, settings, issue.id)
    except NotApproved as exc:
        return {"sendable": False, "reason": str(exc), "approvers": [], "version": None}
    return {
        "sendable": True,
        "reason": "",
        "review_required": ok.review_required,
        "approvers": ok.approvers,
        "version": ok.version_number,
    }


def draft_preview(settings: Settings, issue: Issue, doc: IssueDoc) -> dict[str, Any]:
    """The editor's live preview of an unsaved text: the email's HTML and the WeChat articles,
    images served from the editor's folder (/admin/issues/<id>/media/…), never the disk."""
    from dispatch.render.email import render_email
    from dispatch.render.slots import RecipientSlots
    from dispatch.render.wechat import render_wechat

    media = f"/admin/issues/{issue.id}/media/"
    archive = f"{settings.public_base_url.rstrip('/')}/issues/{doc.meta.slug}/"
    rendered = render_email(doc, settings, tracking=False)
    unsubscribe = settings.public_base_url.rstrip("/") + "/u/preview"
    html, _ = rendered.personalize(RecipientSlots(name="", unsubscribe_url=unsubscribe))
    served = {str(img.path): media + img.src for img in doc.images()}
    served.update({str(img.path.resolve()): media + img.src for img in doc.images()})
    articles = []
    for article in render_wechat(doc, settings):
        data = article.to_json()
        content = data["content"]
        for disk, url in served.items():
            content = content.replace(f'src="{escape(disk)}"', f'src="{url}"')
        articles.append(
            {
                "title": data["title"],
                "digest": data.get("digest", ""),
                "content": content,
                "thumb_url": served.get(str(article.thumb_image)),
            }
        )
    return {
        "subject": rendered.subject,
        "email_html": html.replace(archive, media),
        "email_bytes": len(html.encode()),
        "wechat": articles,
    }
