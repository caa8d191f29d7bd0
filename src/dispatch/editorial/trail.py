"""The editor's desk in the audit log (dispatch.audit): every save, restore, submission,
approval and request for changes leaves one row naming the version, with its status and
content hash before and after, in the same transaction as the change."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.models.editorial import IssueVersion
from dispatch.models.web import User
from dispatch.vocabulary import AuditAction, AuditTarget


def version_state(version: IssueVersion | None) -> dict[str, Any] | None:
    """What the log keeps of a version: its number, status and content hash."""
    if version is None:
        return None
    return {
        "issue_id": version.issue_id,
        "number": version.number,
        "status": version.status,
        "content_hash": version.content_hash,
    }


def record(
    session: Session,
    actor: audit.Actor | None,
    user_id: int | None,
    action: AuditAction,
    version: IssueVersion,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """One audit row about `version`; the actor is the request's (with its address) or, when
    the caller has none, the user by id (the CLI when there is no user either)."""
    if actor is None:
        user = session.get(User, user_id) if user_id is not None else None
        actor = audit.Actor.user(user) if user is not None else audit.CLI
    audit.record(
        session,
        actor,
        action,
        AuditTarget.VERSION,
        version.id,
        before=before,
        after=after if after is not None else version_state(version),
    )
