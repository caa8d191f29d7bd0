"""Subscribers, mailing lists, subscriptions and the suppression list.

Why subscriptions carry their own status: a person can leave one list and stay on another;
the subscriber's own status (bounced, blocklisted, unsubscribed from everything) overrides
all of their subscriptions. Suppressions are keyed by address, not by subscriber row, so a
bounced address stays blocked even after its subscriber row is deleted and re-imported.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, validates

from dispatch.canonical import canonical_email
from dispatch.models.base import Base, utcnow
from dispatch.vocabulary import SubscriberStatus, SubscriptionStatus, SuppressionReason

__all__ = [
    "Subscriber",
    "MailingList",
    "Subscription",
    "Suppression",
    "SUBSCRIBER_STATUSES",
    "SUBSCRIPTION_STATUSES",
    "OPTIN_MODES",
    "SUPPRESSION_REASONS",
    "PREFERRED_CHANNELS",
    "BindCode",
]

# plain-string views of the vocabulary (dispatch.vocabulary), e.g. for Literal[...] API types
SUBSCRIBER_STATUSES = tuple(s.value for s in SubscriberStatus)
SUBSCRIPTION_STATUSES = tuple(s.value for s in SubscriptionStatus)
OPTIN_MODES = ("single", "double")
SUPPRESSION_REASONS = tuple(r.value for r in SuppressionReason)
# where a person who has both an email address and a WeChat openid wants the bulletin
PREFERRED_CHANNELS = ("email", "wechat", "both")


def _key_of_inserted_email(context) -> str | None:
    """Column default: a Core INSERT that names only `email` still gets its key."""
    return canonical_email(context.get_current_parameters().get("email"))


class Subscriber(Base):
    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    # as given (trimmed, domain lower-cased): what we send to; NULL for WeChat-only followers
    email: Mapped[str | None] = mapped_column(String(320), unique=True, default=None)
    # canonical_email(email): identity, dedupe and suppression compare on this, never on email
    email_key: Mapped[str | None] = mapped_column(String(320), default=_key_of_inserted_email)
    openid: Mapped[str | None] = mapped_column(String(128), unique=True, default=None)
    name: Mapped[str] = mapped_column(String(200), default="")
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    attributes: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=SubscriberStatus.ACTIVE.value)
    # email | wechat | both: a send on both channels reaches the person once, here
    preferred_channel: Mapped[str] = mapped_column(String(8), default="email")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)

    __table_args__ = (Index("uq_subscribers_email_key", "email_key", unique=True),)

    @validates("email")
    def _keep_key(self, _name: str, value: str | None) -> str | None:
        self.email_key = canonical_email(value)
        return value


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    optin: Mapped[str] = mapped_column(String(8), default="single")
    # offered on the public /subscribe form and in the preference centre
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # "(AD)" before the subject: NetEase treats marketing mail without it as advertising;
    # off for member bulletins, which are not advertising
    ad_marker: Mapped[bool] = mapped_column(Boolean, default=False)
    # the last CSV import's hygiene (rows, invalid, role addresses), checked before a send
    import_stats: Mapped[dict | None] = mapped_column(JSON, default=None)


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_list_status", "list_id", "status"),)

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    list_id: Mapped[int] = mapped_column(
        ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), default=SubscriptionStatus.UNCONFIRMED.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(default=None)
    # consent evidence: how this person came onto the list (web-form, import, admin, ...)
    source: Mapped[str] = mapped_column(String(64), default="")


class Suppression(Base):
    __tablename__ = "suppressions"
    __table_args__ = (
        CheckConstraint("email IS NOT NULL OR openid IS NOT NULL", name="address"),
        Index("uq_suppressions_email_key", "email_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320), unique=True, default=None)
    email_key: Mapped[str | None] = mapped_column(String(320), default=_key_of_inserted_email)
    openid: Mapped[str | None] = mapped_column(String(128), unique=True, default=None)
    reason: Mapped[str] = mapped_column(String(32), default=SuppressionReason.MANUAL.value)
    source: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str] = mapped_column(Text, default="")  # an administrator's words
    bounce_id: Mapped[int | None] = mapped_column(Integer, default=None)  # the message behind it

    @validates("email")
    def _keep_key(self, _name: str, value: str | None) -> str | None:
        self.email_key = canonical_email(value)
        return value


class BindCode(Base):
    """A short-lived secret that ties a WeChat openid to a person: a one-time code the person
    sends to the Official Account, or the `state` of a snsapi_base web authorisation."""

    __tablename__ = "bind_codes"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # message | oauth
    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column()
