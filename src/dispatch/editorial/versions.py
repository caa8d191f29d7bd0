"""Versions of an issue's source: recorded on every publish that changes it, saved from the
browser editor, compared (a line diff) and restored (as a new version, never by rewriting).

Why a restore is a new version: history is kept for good and an approval names one version's
content; bringing old text back is a change like any other and needs review again.

Why saving checks the version the editor started from: two editors on the same issue must not
overwrite each other silently; the second is told who saved in between.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.config import Settings
from dispatch.content.parse import SOURCE_FILE_NAME, IssueSourceError, Problem, parse_issue_text
from dispatch.editorial import trail
from dispatch.editorial.messages import MESSAGES, say
from dispatch.errors import DispatchError, ErrorKind
from dispatch.models.editorial import IssueVersion
from dispatch.models.issue import Issue
from dispatch.models.web import User
from dispatch.vocabulary import AuditAction, VersionStatus


class VersionError(DispatchError):
    """A save or restore that cannot be done (stale base, unknown version)."""

    kind = ErrorKind.CONFLICT


@dataclass(frozen=True)
class Saved:
    """What a save did: the issue row written (a new `-rN` row once the old one was sent),
    its latest version, and whether that version is new."""

    issue: Issue
    version: IssueVersion
    created: bool


def latest_version(session: Session, issue_id: int) -> IssueVersion | None:
    return session.scalars(
        select(IssueVersion)
        .where(IssueVersion.issue_id == issue_id)
        .order_by(IssueVersion.number.desc())
        .limit(1)
    ).first()


def versions_of(session: Session, issue_id: int) -> list[IssueVersion]:
    """Every version of the issue, newest first."""
    return list(
        session.scalars(
            select(IssueVersion)
            .where(IssueVersion.issue_id == issue_id)
            .order_by(IssueVersion.number.desc())
        )
    )


def get_version(session: Session, issue: Issue, number: int) -> IssueVersion:
    found = session.scalars(
        select(IssueVersion).where(IssueVersion.issue_id == issue.id, IssueVersion.number == number)
    ).first()
    if found is None:
        raise VersionError(
            say("no_such_version", slug=issue.slug, number=number), kind=ErrorKind.NOT_FOUND
        )
    return found


def record_version(
    session: Session, issue: Issue, *, author_id: int | None = None, note: str = ""
) -> tuple[IssueVersion, bool]:
    """The issue's current source as its latest version: a new draft version when it differs
    from the latest one (returns it, True), else the latest (False). Flushes only."""
    latest = latest_version(session, issue.id)
    if latest is not None and latest.content_hash == issue.content_hash:
        return latest, False
    version = IssueVersion(
        issue_id=issue.id,
        number=(latest.number if latest else 0) + 1,
        source_text=issue.source_text,
        content_hash=issue.content_hash,
        status=VersionStatus.DRAFT.value,
        author_id=author_id,
        note=note[:500],
    )
    try:
        with session.begin_nested():
            session.add(version)
    except IntegrityError:  # another save took this number between our look and our insert
        newer = latest_version(session, issue.id)
        raise VersionError(
            MESSAGES.both(
                "stale_base",
                base=latest.number if latest else 0,
                latest=newer.number if newer else "?",
                by=author_name(session, newer.author_id if newer else None),
            )
        ) from None
    return version, True


def author_name(session: Session, user_id: int | None) -> str:
    """Who a user id is, for messages and pages (the publisher outside the admin for None)."""
    user = session.get(User, user_id) if user_id is not None else None
    return user.email if user is not None else MESSAGES.both("someone")


def family_slug(session: Session, issue: Issue) -> str:
    """The slug a source of this issue names: a revision row `x-r2` is written from `x`."""
    if issue.revision_of_id is None:
        return issue.slug
    original = session.get(Issue, issue.revision_of_id)
    return original.slug if original is not None else issue.slug


def working_dir(settings: Settings, issue: Issue) -> Path:
    """Where the editor's text finds its images: the issue's editable copy once an image was
    uploaded in the editor (dispatch.editorial.media), else the folder it was published from."""
    from dispatch.editorial.media import editable_dir

    editable = editable_dir(settings, issue)
    return editable if editable.is_dir() else Path(issue.source_path)


def parse_draft(session: Session, settings: Settings, issue: Issue, text: str):
    """The editor's text as an IssueDoc; IssueSourceError lists every problem with its line
    (the slug must stay the issue's own)."""
    doc = parse_issue_text(text, working_dir(settings, issue), SOURCE_FILE_NAME)
    expected = family_slug(session, issue)
    if doc.meta.slug != expected:
        line = next(
            (n for n, raw in enumerate(text.split("\n"), 1) if raw.strip().startswith("slug:")), 1
        )
        message = MESSAGES.both("slug_changed", slug=expected, given=doc.meta.slug)
        raise IssueSourceError([Problem(SOURCE_FILE_NAME, line, message)])
    return doc


def save_source(
    session: Session,
    settings: Settings,
    issue: Issue,
    text: str,
    *,
    author_id: int | None,
    base_number: int | None,
    note: str = "",
    actor: audit.Actor | None = None,
) -> Saved:
    """Save the editor's text as the issue's next version (parsed and published first, so a
    bad source stores nothing). `base_number` is the version the editor started from."""
    from dispatch.content.store import publish_issue

    latest = latest_version(session, issue.id)
    if latest is not None and base_number is not None and base_number != latest.number:
        raise VersionError(
            MESSAGES.both(
                "stale_base",
                base=base_number,
                latest=latest.number,
                by=author_name(session, latest.author_id),
            )
        )
    doc = parse_draft(session, settings, issue, text)
    saved = publish_issue(session, doc, settings=settings, author_id=author_id, version_note=note)
    version = latest_version(session, saved.id)
    assert version is not None  # publish_issue records one
    created = latest is None or version.id != latest.id
    if created:
        action = AuditAction.RESTORE if note else AuditAction.EDIT
        before = trail.version_state(latest) if latest is not None else None
        trail.record(session, actor, author_id, action, version, before=before)
    return Saved(saved, version, created)


def restore(
    session: Session,
    settings: Settings,
    issue: Issue,
    number: int,
    *,
    author_id: int | None,
    actor: audit.Actor | None = None,
) -> Saved:
    """Version `number`'s text as a new version (a draft, to be reviewed again)."""
    old = get_version(session, issue, number)
    latest = latest_version(session, issue.id)
    return save_source(
        session,
        settings,
        issue,
        old.source_text,
        author_id=author_id,
        base_number=latest.number if latest else None,
        note=MESSAGES.both("restored_note", number=number),
        actor=actor,
    )


def diff_lines(old: IssueVersion, new: IssueVersion) -> list[tuple[str, str]]:
    """A unified line diff from `old` to `new`: (kind, line) with kind one of
    "head", "hunk", "add", "del", "same" (the page colours them)."""
    out: list[tuple[str, str]] = []
    for line in difflib.unified_diff(
        old.source_text.splitlines(),
        new.source_text.splitlines(),
        fromfile=f"v{old.number}",
        tofile=f"v{new.number}",
        lineterm="",
        n=3,
    ):
        if line.startswith(("---", "+++")):
            kind = "head"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        out.append((kind, line))
    return out
