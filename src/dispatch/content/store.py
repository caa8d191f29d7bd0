"""Store parsed issues and load them back.

Why the source text is stored (not a rendering): renderers change, the source does not; a
stored issue re-parses into the same `IssueDoc` (images are read from `source_path`), and its
`content_hash` keys every render cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.config import Settings, get_settings
from dispatch.content.model import IssueDoc
from dispatch.content.parse import SOURCE_FILE_NAME, parse_issue, parse_issue_text
from dispatch.models.base import utcnow
from dispatch.models.issue import Issue
from dispatch.vocabulary import IssueStatus


def issue_summary(doc: IssueDoc) -> dict[str, Any]:
    """The outline kept with the row, so lists and the admin need no re-parse."""
    return {
        "sections": [
            {
                "title": section.title,
                "articles": [
                    {
                        "anchor": a.anchor,
                        "number": a.number,
                        "title": a.title,
                        "source": a.source,
                        "source_url": a.source_url,
                        "date": a.date.isoformat(),
                    }
                    for a in section.articles
                ],
            }
            for section in doc.sections
        ],
        "article_count": len(doc.articles),
        "links": list(doc.links),
        "images": [img.src for img in doc.images()],
    }


def publish_issue(session: Session, doc: IssueDoc, *, settings: Settings | None = None) -> Issue:
    """Insert or update the issue with this slug as published; flushes, the caller commits.

    An issue that cannot render (a crash, or an email over the size limit even with every
    article as title and link) raises IssueSourceError first, and nothing is written."""
    from dispatch.render.check import check_renderable

    check_renderable(doc, settings or get_settings())
    meta = doc.meta
    issue = session.scalars(select(Issue).where(Issue.slug == meta.slug)).one_or_none()
    if issue is None:
        issue = Issue(slug=meta.slug)
        session.add(issue)
    issue.title = meta.title
    issue.number = meta.number
    issue.period_from = meta.period_from
    issue.period_to = meta.period_to
    issue.publisher = meta.publisher
    issue.locale = meta.locale
    issue.status = IssueStatus.PUBLISHED.value
    issue.source_path = str(doc.source_dir)
    issue.source_text = doc.source_text
    if issue.content_hash != doc.content_hash or issue.published_at is None:
        issue.published_at = utcnow()
    issue.content_hash = doc.content_hash
    issue.summary = issue_summary(doc)
    session.flush()
    return issue


def publish_source(
    session: Session, path: str | Path, *, settings: Settings | None = None
) -> Issue:
    """Parse then publish; an invalid source raises IssueSourceError before anything is written."""
    return publish_issue(session, parse_issue(path), settings=settings)


def load_issue_doc(issue: Issue) -> IssueDoc:
    """Re-parse a stored issue from its stored text; images come from its source folder."""
    label = str(Path(issue.source_path) / SOURCE_FILE_NAME)
    return parse_issue_text(issue.source_text, issue.source_path, label)


def get_issue(session: Session, slug_or_id: str | int) -> Issue | None:
    """An issue by slug, or by numeric id (an int, or a string of digits that is no slug)."""
    key = str(slug_or_id)
    found = session.scalars(select(Issue).where(Issue.slug == key)).one_or_none()
    if found is None and key.isdigit():
        found = session.get(Issue, int(key))
    return found


def list_issues(session: Session) -> list[Issue]:
    return list(session.scalars(select(Issue).order_by(Issue.period_from.desc(), Issue.id.desc())))
