"""Plain-dict views of lists and subscribers: the one shape the CLI's --json and the API share."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from dispatch.models.subscriber import MailingList, Subscriber
from dispatch.subscribers import service


def list_view(
    session: Session,
    mailing_list: MailingList,
    *,
    with_recipients: bool = False,
    stored_counts: bool = False,
) -> dict[str, Any]:
    """A list with its member counts by status (and, when asked, eligible recipients per
    channel). `stored_counts` (read-only views): the counts from dispatch.tallies, kept until
    the subscriptions change, instead of counting a million rows per view."""
    if stored_counts:
        from dispatch import tallies

        members = tallies.list_counts(
            session, mailing_list.id, lambda s: service.list_member_counts(s, mailing_list.id)
        )
    else:
        members = service.list_member_counts(session, mailing_list.id)
    data: dict[str, Any] = {
        "id": mailing_list.id,
        "slug": mailing_list.slug,
        "name": mailing_list.name,
        "description": mailing_list.description,
        "optin": mailing_list.optin,
        "ad_marker": bool(mailing_list.ad_marker),
        "public": bool(mailing_list.public),  # offered on the public subscribe form
        "import_stats": mailing_list.import_stats,
        "created_at": mailing_list.created_at,
        "members": members,
    }
    if with_recipients:
        data["recipients"] = {
            channel: service.count_recipients(session, [mailing_list.id], channel)
            for channel in service.CHANNELS
        }
    return data


def subscriber_view(subscriber: Subscriber) -> dict[str, Any]:
    return {
        "id": subscriber.id,
        "email": subscriber.email,
        "openid": subscriber.openid,
        "name": subscriber.name,
        "locale": subscriber.locale,
        "status": subscriber.status,
        "attributes": subscriber.attributes or {},
        "created_at": subscriber.created_at,
        "confirmed_at": subscriber.confirmed_at,
    }
