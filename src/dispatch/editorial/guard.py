"""The one rule every door obeys before an issue reaches real lists: with review on, only the
latest version of the issue, approved, with enough approvals, whose content hash is exactly
the content about to be sent (source text and image bytes, re-hashed now) may go out.

`dispatch send` asks it before it stores anything; dispatch.delivery.campaigns asks it when a
campaign is scheduled and again when it starts (the web page, the API and the scheduler's
sweep all start campaigns there), so no door can skip it. Test sends never ask: a test is a
preview, always allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.delivery.campaigns import CampaignError
from dispatch.editorial.messages import MESSAGES, say
from dispatch.editorial.review import approvals
from dispatch.editorial.versions import latest_version
from dispatch.errors import ErrorKind
from dispatch.models.issue import Issue
from dispatch.vocabulary import VersionStatus


class NotApproved(CampaignError):
    """The issue may not be sent to lists (yet): the message says what is missing."""

    kind = ErrorKind.CONFLICT


@dataclass(frozen=True)
class Clearance:
    """Why a send may go ahead: the version and who approved it (empty with review off)."""

    review_required: bool
    version_number: int | None = None
    content_hash: str = ""
    approvers: list[str] = field(default_factory=list)


def check_sendable(session: Session, settings: Settings, issue_id: int) -> Clearance:
    """Clearance to send issue `issue_id` to lists, or NotApproved saying why not."""
    if not settings.review_required:
        return Clearance(review_required=False)
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise NotApproved(MESSAGES.both("no_issue", id=issue_id), kind=ErrorKind.NOT_FOUND)
    version = latest_version(session, issue.id)
    if version is None:
        raise NotApproved(MESSAGES.both("no_version", slug=issue.slug))
    if version.status != VersionStatus.APPROVED:
        raise NotApproved(
            say("not_approved", status=version.status, slug=issue.slug, number=version.number)
        )
    approved = approvals(session, version)
    needed = max(1, settings.review_approvals)
    if len(approved) < needed:  # the setting was raised after the approval
        raise NotApproved(
            MESSAGES.both(
                "too_few", slug=issue.slug, number=version.number, needed=needed, have=len(approved)
            )
        )
    current = _content_hash_now(issue)
    if current != version.content_hash or issue.content_hash != version.content_hash:
        raise NotApproved(
            MESSAGES.both(
                "changed_since",
                slug=issue.slug,
                number=version.number,
                now=current[:12],
                approved=version.content_hash[:12],
            )
        )
    return Clearance(
        review_required=True,
        version_number=version.number,
        content_hash=version.content_hash,
        approvers=[r.reviewer_email for r in approved],
    )


def _content_hash_now(issue: Issue) -> str:
    """The hash of what would be sent now: the stored text re-parsed with the images on disk
    (an image replaced behind the approval's back changes it)."""
    from dispatch.content.parse import IssueSourceError
    from dispatch.content.store import load_issue_doc

    try:
        return load_issue_doc(issue).content_hash
    except (IssueSourceError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NotApproved(MESSAGES.both("unreadable", slug=issue.slug, reason=reason)) from None
