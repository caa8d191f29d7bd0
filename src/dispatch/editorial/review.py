"""Review of an issue's versions: draft → submitted → approved, or back to draft with
comments. Only the latest version is reviewed; nobody reviews a version they wrote or
submitted; a setting may ask for two (or more) different approvers.

Why every decision starts with an UPDATE of the version row (`_lock`): two reviewers pressing
"approve" at the same moment must take turns, each seeing what the other did. The UPDATE takes
the row lock on PostgreSQL and the database write lock on SQLite before anything is read, so
the second reviewer waits and is then told the version is approved already (by whom, when);
the unique approval key stops the same reviewer approving twice even if that failed.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.config import Settings
from dispatch.editorial import trail
from dispatch.editorial.messages import MESSAGES, say
from dispatch.editorial.versions import author_name, latest_version
from dispatch.errors import DispatchError, ErrorKind
from dispatch.models.base import utcnow
from dispatch.models.editorial import IssueReview, IssueVersion
from dispatch.models.issue import Issue
from dispatch.models.web import User
from dispatch.vocabulary import AuditAction, ReviewVerdict, UserRole, VersionStatus

MAX_COMMENT = 5000
REVIEWER_ROLES = (UserRole.REVIEWER, UserRole.ADMIN)


class ReviewError(DispatchError):
    """A review step refused; the message says which version and why."""

    kind = ErrorKind.CONFLICT


def _lock(session: Session, version_id: int) -> IssueVersion:
    """Take the version row for this decision (see the module docstring) and read it fresh."""
    session.execute(
        update(IssueVersion)
        .where(IssueVersion.id == version_id)
        .values(review_seq=IssueVersion.review_seq + 1)
    )
    version = session.scalars(
        select(IssueVersion)
        .where(IssueVersion.id == version_id)
        .execution_options(populate_existing=True)
    ).one()
    return version


def round_key(version: IssueVersion) -> str:
    """This submission of the version: an approval counts only in the round it was given."""
    at = version.submitted_at
    return f"{version.id}:{int(at.timestamp() * 1_000_000) if at else 0}"


def approvals(session: Session, version: IssueVersion) -> list[IssueReview]:
    """The approvals of this version's exact content in its current round, oldest first."""
    return list(
        session.scalars(
            select(IssueReview)
            .where(
                IssueReview.version_id == version.id,
                IssueReview.verdict == ReviewVerdict.APPROVED,
                IssueReview.content_hash == version.content_hash,
                IssueReview.approval_key.like(round_key(version) + ":%"),
            )
            .order_by(IssueReview.id)
        )
    )


def reviews_of(session: Session, version_ids: list[int]) -> list[IssueReview]:
    if not version_ids:
        return []
    return list(
        session.scalars(
            select(IssueReview)
            .where(IssueReview.version_id.in_(version_ids))
            .order_by(IssueReview.id)
        )
    )


def _latest_of(session: Session, version: IssueVersion) -> None:
    latest = latest_version(session, version.issue_id)
    if latest is not None and latest.id != version.id:
        raise ReviewError(MESSAGES.both("not_latest", number=version.number, latest=latest.number))


def submit(
    session: Session, version: IssueVersion, user_id: int, *, actor: audit.Actor | None = None
) -> IssueVersion:
    """Hand the latest version to the reviewers (by its editor, or anyone who may edit)."""
    version = _lock(session, version.id)
    before = trail.version_state(version)
    _latest_of(session, version)
    if version.status == VersionStatus.SUBMITTED:
        raise ReviewError(MESSAGES.both("already_submitted", number=version.number))
    if version.status == VersionStatus.APPROVED:
        raise ReviewError(_approved_already(session, version))
    version.status = VersionStatus.SUBMITTED.value
    version.submitted_by_id = user_id
    version.submitted_at = utcnow()
    session.flush()
    trail.record(session, actor, user_id, AuditAction.SUBMIT, version, before=before)
    return version


def _approved_already(session: Session, version: IssueVersion) -> str:
    done = approvals(session, version)
    by = ", ".join(r.reviewer_email for r in done) or "?"
    at = version.approved_at.strftime("%Y-%m-%d %H:%M UTC") if version.approved_at else "?"
    return MESSAGES.both("already_approved", number=version.number, by=by, at=at)


def _check_reviewer(session: Session, version: IssueVersion, reviewer: User) -> None:
    if reviewer.role not in REVIEWER_ROLES:
        raise ReviewError(
            MESSAGES.both("not_reviewer", role=reviewer.role), kind=ErrorKind.FORBIDDEN
        )
    _latest_of(session, version)
    if version.status == VersionStatus.APPROVED:
        raise ReviewError(_approved_already(session, version))
    if version.status != VersionStatus.SUBMITTED:
        raise ReviewError(say("not_submitted", status=version.status, number=version.number))
    if reviewer.id in (version.author_id, version.submitted_by_id):
        raise ReviewError(
            MESSAGES.both("own_version", number=version.number), kind=ErrorKind.FORBIDDEN
        )


def approve(
    session: Session,
    settings: Settings,
    version: IssueVersion,
    reviewer: User,
    *,
    seen_hash: str,
    actor: audit.Actor | None = None,
) -> IssueVersion:
    """Approve the content the reviewer saw (`seen_hash`); the version becomes approved when
    it has `settings.review_approvals` approvals from different reviewers. Flushes only."""
    version = _lock(session, version.id)
    _check_reviewer(session, version, reviewer)
    before = trail.version_state(version)
    issue = session.get(Issue, version.issue_id)
    now_hash = issue.content_hash if issue is not None else ""
    if seen_hash != version.content_hash or now_hash != version.content_hash:
        raise ReviewError(
            MESSAGES.both(
                "hash_moved", number=version.number, seen=seen_hash[:12], now=now_hash[:12]
            )
        )
    review = IssueReview(
        version_id=version.id,
        reviewer_id=reviewer.id,
        reviewer_email=reviewer.email,
        verdict=ReviewVerdict.APPROVED.value,
        content_hash=version.content_hash,
        approval_key=f"{round_key(version)}:{reviewer.id}",
    )
    try:
        with session.begin_nested():
            session.add(review)
    except IntegrityError:
        raise ReviewError(MESSAGES.both("twice", number=version.number)) from None
    if len(approvals(session, version)) >= max(1, settings.review_approvals):
        version.status = VersionStatus.APPROVED.value
        version.approved_at = utcnow()
    session.flush()
    trail.record(session, actor, reviewer.id, AuditAction.APPROVE, version, before=before)
    return version


def request_changes(
    session: Session,
    version: IssueVersion,
    reviewer: User,
    comment: str,
    *,
    actor: audit.Actor | None = None,
) -> IssueVersion:
    """Send the version back to draft with the reviewer's comments (approvals of this round
    lapse: the next submission is a new round, reviewed afresh)."""
    comment = (comment or "").strip()
    if not comment or len(comment) > MAX_COMMENT:
        raise ReviewError(MESSAGES.both("need_comment"), kind=ErrorKind.INVALID)
    version = _lock(session, version.id)
    _check_reviewer(session, version, reviewer)
    before = trail.version_state(version)
    session.add(
        IssueReview(
            version_id=version.id,
            reviewer_id=reviewer.id,
            reviewer_email=reviewer.email,
            verdict=ReviewVerdict.CHANGES_REQUESTED.value,
            content_hash=version.content_hash,
            comment=comment,
        )
    )
    version.status = VersionStatus.DRAFT.value
    version.submitted_at = None
    session.flush()
    after = {**(trail.version_state(version) or {}), "comment": comment}
    trail.record(
        session, actor, reviewer.id, AuditAction.REJECT, version, before=before, after=after
    )
    return version


def editor_of(session: Session, version: IssueVersion) -> str:
    """The last editor of a version, by address (the submitter when it came from a folder)."""
    return author_name(session, version.author_id or version.submitted_by_id)
