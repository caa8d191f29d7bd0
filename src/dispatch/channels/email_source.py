"""What an email campaign's messages are made of: the rendered issue and the message template,
built once per process, and the cheap per-recipient step that fills them.

Why its own module: rendering and encoding belong to the campaign, not to the SMTP
conversation; the email channel (and any relay) asks `message_for(recipient)` and sends bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.orm import Session

from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.dkim import DkimSigner, signer_from_settings
from dispatch.channels.email_message import (
    EncodedPart,
    MessageBuildError,
    MessageTemplate,
    build_template,
)
from dispatch.config import Settings
from dispatch.i18n import Catalog

__all__ = [
    "CampaignSourceError",
    "EmailCampaignSource",
    "build_campaign_source",
    "load_campaign_source",
    "load_source_from_database",
]

MESSAGES = Catalog(
    {
        "test_prefix": ("[测试] ", "[Test] "),
        "no_issue": (
            "活动 {campaign_id} 的期刊 {issue_id} 不存在",
            "campaign {campaign_id}: issue {issue_id} not found",
        ),
    }
)


class RenderedLike(Protocol):
    """What the channel needs from dispatch.render.email.RenderedEmail."""

    @property
    def subject(self) -> str: ...

    @property
    def link_count(self) -> int: ...

    def personalize(self, slots: Any) -> tuple[str, str]: ...


class CampaignSourceError(RuntimeError):
    """The campaign's issue cannot be loaded or rendered (the batch is paused, not failed)."""


@dataclass
class EmailCampaignSource:
    """Everything one campaign's messages are made of; `message_for` is the cheap per-recipient
    step."""

    settings: Settings
    context: CampaignContext
    rendered: RenderedLike
    template: MessageTemplate
    signer: DkimSigner | None = None
    slots_for: Callable[[Recipient], Any] | None = None  # default: dispatch.tokens.tracking_slots
    # the (html, text) parts encoded once, when `rendered` offers its layouts (encoded_parts)
    parts: tuple[EncodedPart, EncodedPart] | None = None

    @property
    def unsubscribe_list_id(self) -> int | None:
        """The list an unsubscribe link leaves: the campaign's list, or all lists (None) when
        several."""
        return self.context.list_ids[0] if len(self.context.list_ids) == 1 else None

    def slots(self, recipient: Recipient) -> Any:
        if self.slots_for is not None:
            return self.slots_for(recipient)
        from dispatch.tokens import tracking_slots

        return tracking_slots(
            self.settings,
            delivery_id=recipient.delivery_id,
            subscriber_id=recipient.subscriber_id,
            list_id=self.unsubscribe_list_id,
            name=recipient.name,
            n_links=self.rendered.link_count,
            tracking=self.context.tracking,
            locale=recipient.locale,
        )

    def message_for(self, recipient: Recipient) -> tuple[str, bytes]:
        """(Message-ID, message bytes) for one recipient; MessageBuildError if it cannot be
        built."""
        if not recipient.email:
            raise MessageBuildError("recipient has no email address")
        if not recipient.email.isascii():
            raise MessageBuildError("internationalised address (SMTPUTF8) is not supported")
        slots = self.slots(recipient)
        body: dict[str, Any]
        if self.parts is not None:
            html_values, text_values = self.rendered.slot_values(slots)  # type: ignore[attr-defined]
            body = {"encoded": (self.parts[0].fill(html_values), self.parts[1].fill(text_values))}
        else:
            html, text = self.rendered.personalize(slots)
            body = {"html": html, "text": text}
        data = self.template.fill(
            delivery_id=recipient.delivery_id,
            to_address=recipient.email,
            to_name=recipient.name,
            unsubscribe_url=slots.unsubscribe_url,
            **body,
        )
        if self.signer is not None:
            data = self.signer.sign(data)
        return self.template.message_id(recipient.delivery_id), data


def encoded_parts(rendered: Any) -> tuple[EncodedPart, EncodedPart] | None:
    """The rendered issue's html and text layouts encoded once (EncodedPart), or None when it
    does not expose them (a stand-in in tests: its personalize() is used per recipient)."""
    html_layout = getattr(rendered, "html_layout", None)
    text_layout = getattr(rendered, "text_layout", None)
    if html_layout is None or text_layout is None or not hasattr(rendered, "slot_values"):
        return None
    return (
        EncodedPart.build(html_layout.statics, html_layout.slot_ids),
        EncodedPart.build(text_layout.statics, text_layout.slot_ids),
    )


AD_MARKER = "(AD) "  # NetEase's marker for advertising mail, at the start of the subject


def build_campaign_source(
    settings: Settings,
    context: CampaignContext,
    rendered: RenderedLike,
    *,
    ad_marker: bool = False,
    **kwargs: Any,
) -> EmailCampaignSource:
    """Encode the campaign's shared headers once (subject marked when it is a test send, and
    with "(AD)" when one of its lists asks for it)."""
    subject = rendered.subject
    if ad_marker:
        subject = AD_MARKER + subject
    if context.is_test:
        subject = MESSAGES.get("test_prefix", settings.locale) + subject
    template = build_template(
        campaign_id=context.campaign_id,
        subject=subject,
        from_address=settings.from_address,
        from_name=settings.from_name,
        list_id=settings.list_id,
        reply_to=settings.reply_to,
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )
    return EmailCampaignSource(
        settings=settings,
        context=context,
        rendered=rendered,
        template=template,
        signer=signer_from_settings(settings),
        **{"parts": encoded_parts(rendered), **kwargs},
    )


_SOURCE_CACHE: dict[tuple[Any, ...], EmailCampaignSource] = {}
_SOURCE_CACHE_SIZE = 8


def load_campaign_source(
    session: Session, context: CampaignContext, settings: Settings
) -> EmailCampaignSource:
    """Issue row → IssueDoc → rendered email (cached by content) → message template.

    Cached per process by campaign and the issue's content hash, so a worker serving many
    batches of one campaign renders and encodes once.
    """
    from dispatch import branding
    from dispatch.content.store import load_issue_doc
    from dispatch.models import Issue
    from dispatch.render.email import render_email

    issue = session.get(Issue, context.issue_id)
    if issue is None:
        raise CampaignSourceError(
            MESSAGES.both("no_issue", campaign_id=context.campaign_id, issue_id=context.issue_id)
        )
    ad_marker = _lists_want_ad_marker(session, context.list_ids)
    brand = branding.load(session)  # the settings page's: Reply-To, footer, design ...
    settings = settings.replace(
        reply_to=brand.reply_to_for(settings), postal_address=brand.postal_address_for(settings)
    )
    key = (
        brand,
        context.campaign_id,
        context.issue_id,
        issue.content_hash,
        ad_marker,
        context.tracking,
        context.is_test,
        context.list_ids,
        repr(settings),  # in-memory key only (never logged); list-valued settings have no hash
    )
    source = _SOURCE_CACHE.get(key)
    if source is None:
        doc = load_issue_doc(issue)
        rendered = render_email(doc, settings, tracking=context.tracking, branding=brand)
        source = build_campaign_source(settings, context, rendered, ad_marker=ad_marker)
        _remember(_SOURCE_CACHE, key, source)
    elif source.context != context:  # same campaign, another batch: keep the template
        source = _with_context(source, context)
    return source


def _lists_want_ad_marker(session: Session, list_ids: Sequence[int]) -> bool:
    """Whether any of the campaign's lists carries the "(AD)" subject marker setting."""
    if not list_ids:
        return False
    from sqlalchemy import select

    from dispatch.models.subscriber import MailingList

    return bool(
        session.scalar(
            select(MailingList.id)
            .where(MailingList.id.in_(list(list_ids)), MailingList.ad_marker.is_(True))
            .limit(1)
        )
    )


RECENT_SOURCE_SECONDS = 2.0
_RECENT: dict[tuple[Any, ...], tuple[float, EmailCampaignSource]] = {}


def load_source_from_database(settings: Settings, context: CampaignContext) -> EmailCampaignSource:
    """The campaign's source; one looked up for the same campaign in this process less than
    RECENT_SOURCE_SECONDS ago is used as it is.

    Why: each batch asked twice (its prepare step, then its channel) for the issue, the
    branding and the lists' "(AD)" setting, six queries per 200 messages, to notice edits
    that now reach the messages at most two seconds later.
    """
    from dispatch.db import get_engine

    key: tuple[Any, ...] = (context.campaign_id, context.issue_id, context.tracking)
    key += (context.is_test, context.list_ids, repr(settings))
    seen = _RECENT.get(key)
    if seen is not None and time.monotonic() - seen[0] < RECENT_SOURCE_SECONDS:
        source = seen[1]
        return source if source.context == context else _with_context(source, context)
    with Session(bind=get_engine(settings)) as session:
        source = load_campaign_source(session, context, settings)
    _remember(_RECENT, key, (time.monotonic(), source))
    return source


def _remember(cache: dict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
    """Keep `value` in a per-process cache of at most _SOURCE_CACHE_SIZE (oldest out first)."""
    if key not in cache and len(cache) >= _SOURCE_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value


def _with_context(source: EmailCampaignSource, context: CampaignContext) -> EmailCampaignSource:
    """The same rendered campaign for another batch (or relay): the template is kept."""
    return EmailCampaignSource(**{**source.__dict__, "context": context})
