"""Store parsed issues and load them back.

Why the source text is stored (not a rendering): renderers change, the source does not; a
stored issue re-parses into the same `IssueDoc` (images are read from `source_path`), and its
`content_hash` keys every render cache.

Why revisions: once an issue has reached people, its row is what they received (the archive
shows it, and retries or late additions of its campaigns send it). Publishing a changed source
for it then makes a new revision, its own issue row `<slug>-r<N>` (revision N, revision_of the
original), with a warning; a revision nobody received yet is simply updated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.config import Settings, get_settings
from dispatch.content.model import IssueDoc
from dispatch.content.parse import SOURCE_FILE_NAME, parse_issue, parse_issue_text
from dispatch.i18n import Catalog
from dispatch.models.base import utcnow
from dispatch.models.issue import Issue
from dispatch.vocabulary import AuditAction, AuditTarget, IssueStatus

MESSAGES = Catalog(
    {
        "new_revision": (
            "期刊 {slug} 已发送给订阅者，内容保持发送时的样子；改动后的源文件存为第 {revision} 版："
            "期刊 {new_slug}（用 dispatch send {new_slug} … 发送）",
            "issue {slug} has been sent: it stays as people received it; the changed source is "
            "stored as revision {revision}, issue {new_slug} (send it with "
            "dispatch send {new_slug} …)",
        ),
    }
)


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


def publish_issue(
    session: Session,
    doc: IssueDoc,
    *,
    settings: Settings | None = None,
    author_id: int | None = None,
    version_note: str = "",
    actor: audit.Actor | None = None,
) -> Issue:
    """Insert or update the issue with this slug as published; flushes, the caller commits.
    A changed source becomes the issue's next version (dispatch.editorial.versions), written
    by `author_id` (None: published from a folder), to be reviewed before it is sent.
    With an `actor` (a publish from the CLI, an upload or the API) the audit log gets its
    `publish` row in the same transaction; the editor's saves are audited as edits instead.

    An issue that cannot render (a crash, or an email over the size limit even with every
    article as title and link) raises IssueSourceError first, and nothing is written."""
    from dispatch.editorial.versions import record_version
    from dispatch.render.check import check_renderable

    check_renderable(doc, settings or get_settings())
    meta = doc.meta
    issue = session.scalars(select(Issue).where(Issue.slug == meta.slug)).one_or_none()
    note: str | None = None
    if issue is None:
        issue = Issue(slug=meta.slug)
        session.add(issue)
    else:
        issue, note = _revision_for(session, issue, doc)
    before = _published_state(issue) if issue.published_at is not None else None
    if before is None or issue.content_hash != doc.content_hash:
        _store(session, issue, doc)  # else the same content again: nothing to change
    record_version(session, issue, author_id=author_id, note=version_note)
    issue.publish_note = note  # type: ignore[assignment]  # a plain attribute, not a column
    if actor is not None:
        after = {**_published_state(issue), "note": note} if note else _published_state(issue)
        target = issue.slug
        audit.record(
            session,
            actor,
            AuditAction.PUBLISH,
            AuditTarget.ISSUE,
            target,
            before=before,
            after=after,
        )
    return issue


def _published_state(issue: Issue) -> dict[str, Any]:
    """What the audit log keeps of a published issue: enough to tell two publishes apart."""
    return {
        "revision": issue.revision,
        "content_hash": issue.content_hash,
        "articles": (issue.summary or {}).get("article_count", 0),
    }


def _store(session: Session, issue: Issue, doc: IssueDoc) -> None:
    """Write `doc` into the issue's row as published."""
    meta = doc.meta
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


def has_been_sent(session: Session, issue_id: int) -> bool:
    """Has this issue reached anyone (a message sent by a campaign that is not a test)?"""
    from dispatch.models import Campaign, Delivery

    return bool(
        session.scalar(
            select(Delivery.id)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(
                Campaign.issue_id == issue_id,
                Campaign.is_test.is_(False),
                Delivery.sent_at.is_not(None),
            )
            .limit(1)
        )
    )


def _revision_for(session: Session, original: Issue, doc: IssueDoc) -> tuple[Issue, str | None]:
    """The row a publish of `doc` (same slug as `original`) writes to, and a warning when the
    sent content is kept and a new revision is made."""
    family = [original] + list(
        session.scalars(
            select(Issue).where(Issue.revision_of_id == original.id).order_by(Issue.revision)
        )
    )
    for member in family:  # this exact content is stored already (sent or not)
        if member.content_hash == doc.content_hash:
            return member, None
    latest = family[-1]
    if not has_been_sent(session, latest.id):
        return latest, None  # nobody received it yet: update it in place
    revision = max(m.revision for m in family) + 1
    new_slug = f"{original.slug}-r{revision}"
    taken = session.scalar(select(func.count()).where(Issue.slug == new_slug))
    if taken:  # a slug of that name exists outside this family: keep counting
        revision += taken
        new_slug = f"{original.slug}-r{revision}"
    fresh = Issue(slug=new_slug, revision=revision, revision_of_id=original.id)
    session.add(fresh)
    note = MESSAGES.both("new_revision", slug=latest.slug, revision=revision, new_slug=new_slug)
    return fresh, note


def publish_source(
    session: Session,
    path: str | Path,
    *,
    settings: Settings | None = None,
    actor: audit.Actor | None = None,
) -> Issue:
    """Parse then publish; an invalid source raises IssueSourceError before anything is written."""
    return publish_issue(session, parse_issue(path), settings=settings, actor=actor)


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
