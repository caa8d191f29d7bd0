"""The audit log's one writer: who did what to which thing, when, and from where.

Why one small API: publish, approve, send, a changed setting or a refused log-in are written
from the CLI, the web pages, the JSON API and the review workflow. Each calls `record` inside
the transaction that makes the change, so the row and the change commit (or roll back)
together, and every row has the same shape: an `Actor` (a user, "cli" or "system"), an
`AuditAction`, a target (kind + id) and, where it matters, the values before and after.

    audit.record(session, actor, AuditAction.PAUSE, AuditTarget.CAMPAIGN, campaign.id,
                 before={"status": "running"}, after={"status": "paused"})
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models.audit import AuditEntry
from dispatch.models.base import utcnow
from dispatch.vocabulary import AuditAction, AuditTarget

__all__ = ["Actor", "CLI", "SYSTEM", "changes", "record"]

MAX_TARGET_ID = 254


class _Person(Protocol):
    """Anything naming a signed-in user (web.auth.Principal, models.User)."""

    @property
    def email(self) -> str: ...


@dataclass(frozen=True)
class Actor:
    """Who acted: a user (email and id), the command line, or the service itself."""

    name: str  # the user's email, "cli" or "system"
    user_id: int | None = None
    ip: str | None = None  # the client's address for web and API requests

    @classmethod
    def user(cls, person: _Person, ip: str | None = None) -> Actor:
        user_id = getattr(person, "user_id", None) or getattr(person, "id", None)
        return cls(person.email, user_id if isinstance(user_id, int) else None, ip)

    @classmethod
    def anonymous(cls, account: str, ip: str | None = None) -> Actor:
        """Someone not (yet) signed in, e.g. a failed log-in for `account`."""
        return cls(account.strip().lower()[:MAX_TARGET_ID] or "?", None, ip)


CLI = Actor("cli")
SYSTEM = Actor("system")


def _plain(value: Any) -> Any:
    """A JSON-safe copy: enums as their strings, dates as ISO text, sets as sorted lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def changes(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the keys whose values differ, as (before, after): what a settings row shows."""
    keys = [k for k in {**before, **after} if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after.get(k) for k in keys}


def record(
    session: Session,
    actor: Actor,
    action: AuditAction,
    target_kind: AuditTarget,
    target_id: object = None,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Add one audit row to `session` (committed with the caller's change, never alone)."""
    action = AuditAction(action)  # an unknown word is a programming error: ValueError
    target_kind = AuditTarget(target_kind)
    entry = AuditEntry(
        occurred_at=utcnow(),
        actor=actor.name[:MAX_TARGET_ID],
        actor_user_id=actor.user_id,
        action=action.value,
        target_kind=target_kind.value,
        target_id=None if target_id is None else str(_plain(target_id))[:MAX_TARGET_ID],
        before=_plain(before) if before is not None else None,
        after=_plain(after) if after is not None else None,
        source_ip=actor.ip,
    )
    session.add(entry)
    return entry


PERSONAL_FIELDS = ("email", "openid", "name")  # what an audit row may hold about a subscriber
ERASED = "[erased]"


def erase_subject(session: Session, target_kind: AuditTarget, target_id: object) -> int:
    """A person who asked to be forgotten leaves no address or name in earlier audit rows about
    them (who acted, what and when stay: the log remains an account of the staff's actions).
    Returns the number of rows changed."""
    rows = session.scalars(
        select(AuditEntry).where(
            AuditEntry.target_kind == AuditTarget(target_kind).value,
            AuditEntry.target_id == str(target_id),
        )
    )
    changed = 0
    for row in rows:
        before, after = _erased(row.before), _erased(row.after)
        if (before, after) != (row.before, row.after):
            row.before, row.after = before, after
            changed += 1
    return changed


def _erased(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if not values:
        return values
    return {k: ERASED if k in PERSONAL_FIELDS and v else v for k, v in values.items()}
