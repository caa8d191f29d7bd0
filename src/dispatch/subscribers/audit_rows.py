"""Audit rows for an administrator's changes to people and lists, one shape for every door.

Why here: the CLI, the admin pages and the API each add, edit, unsubscribe and delete people
and create or change lists; the auditor must read the same fields whichever door was used.
Each function adds its row to the caller's session (committed with the change). A deleted
person's row names their id only: they asked to be forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.audit import Actor
from dispatch.models.subscriber import MailingList, Subscriber, Subscription
from dispatch.vocabulary import AuditAction, AuditTarget

__all__ = [
    "added",
    "changed_list",
    "changed_person",
    "created_list",
    "deleted",
    "deleting_list",
    "list_fields",
    "person_fields",
    "unsubscribed",
]


def person_fields(person: Subscriber) -> dict[str, Any]:
    """What an administrator can change about a person (compared before and after)."""
    return {
        "email": person.email,
        "openid": person.openid,
        "name": person.name,
        "locale": person.locale,
        "channel": person.preferred_channel,
        "status": person.status,
    }


def list_fields(mailing_list: MailingList) -> dict[str, Any]:
    """A list's settings (compared before and after)."""
    return {
        "name": mailing_list.name,
        "description": mailing_list.description,
        "optin": mailing_list.optin,
        "ad_marker": bool(mailing_list.ad_marker),
        "public": bool(mailing_list.public),
    }


def added(session: Session, actor: Actor, person: Subscriber, lists: Iterable[str]) -> None:
    after = {**person_fields(person), "lists": list(lists)}
    audit.record(
        session, actor, AuditAction.ADD_SUBSCRIBER, AuditTarget.SUBSCRIBER, person.id, after=after
    )


def changed_person(
    session: Session, actor: Actor, person: Subscriber, before: dict[str, Any]
) -> None:
    """A `change_subscriber` row with only the fields that changed; none when nothing did."""
    old, new = audit.changes(before, person_fields(person))
    if old:
        action, kind = AuditAction.CHANGE_SUBSCRIBER, AuditTarget.SUBSCRIBER
        audit.record(session, actor, action, kind, person.id, before=old, after=new)


def changed_list(
    session: Session, actor: Actor, mailing_list: MailingList, before: dict[str, Any]
) -> None:
    """A `change_list` row with only the settings that changed; none when nothing did."""
    session.flush()
    old, new = audit.changes(before, list_fields(mailing_list))
    if old:
        action, kind = AuditAction.CHANGE_LIST, AuditTarget.LIST
        audit.record(session, actor, action, kind, mailing_list.slug, before=old, after=new)


def created_list(session: Session, actor: Actor, mailing_list: MailingList) -> None:
    session.flush()
    after = list_fields(mailing_list)
    audit.record(
        session, actor, AuditAction.CREATE_LIST, AuditTarget.LIST, mailing_list.slug, after=after
    )


def deleted(session: Session, actor: Actor, person_id: int) -> None:
    """The person's id only: no address, no name (they asked to be forgotten)."""
    audit.record(session, actor, AuditAction.DELETE_SUBSCRIBER, AuditTarget.SUBSCRIBER, person_id)


def unsubscribed(session: Session, actor: Actor, person_id: int, list_slug: str | None) -> None:
    """An administrator took the person off `list_slug` (None: every list)."""
    audit.record(
        session,
        actor,
        AuditAction.UNSUBSCRIBE,
        AuditTarget.SUBSCRIBER,
        person_id,
        after={"list": list_slug},
    )


def deleting_list(session: Session, actor: Actor, mailing_list: MailingList) -> None:
    """Before a list goes: its settings and how many subscriptions go with it."""
    count = session.scalar(select(func.count()).where(Subscription.list_id == mailing_list.id))
    before = list_fields(mailing_list)
    audit.record(
        session,
        actor,
        AuditAction.DELETE_LIST,
        AuditTarget.LIST,
        mailing_list.slug,
        before=before,
        after={"subscriptions": int(count or 0)},
    )
