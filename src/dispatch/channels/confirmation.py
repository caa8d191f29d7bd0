"""The confirmation channel: one double opt-in email per delivery of a confirmation campaign.

Why a channel (and not a loop in the importing process): an import's confirmations are a
transactional campaign, so they get what every campaign gets for free: one Delivery row per
person, the workers' claiming, retries and rate limits (the campaign's `rate_per_second`
plus the global one), progress in `dispatch campaigns show` and on the campaign page. The
message is the same one the public form sends (dispatch.subscribers.optin), sent as
transactional mail (the SMTP URL, or the local outbox when none is set).
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.channels.base import CampaignContext, ChannelTraits, Recipient, SendResult
from dispatch.config import Settings
from dispatch.vocabulary import Channel as ChannelName
from dispatch.vocabulary import Outcome


@dataclass(frozen=True)
class _Person:
    """The fields the confirmation message is built from (a delivery row's snapshot)."""

    id: int
    email: str | None
    name: str
    locale: str


class ConfirmationChannel:
    name = ChannelName.CONFIRMATION.value
    traits = ChannelTraits(address="email", chunk_size=20, opens=False, clicks=False)

    def __init__(self, settings: Settings, context: CampaignContext):
        self.settings = settings
        self.context = context
        self.lists: list = []

    def open(self) -> None:
        from dispatch.db import get_engine
        from dispatch.models.subscriber import MailingList

        ids = list(self.context.list_ids)
        with Session(get_engine(self.settings), expire_on_commit=False) as session:
            self.lists = list(
                session.scalars(
                    select(MailingList).where(MailingList.id.in_(ids)).order_by(MailingList.id)
                )
            )

    def send(self, batch: Sequence[Recipient]) -> list[SendResult]:
        return [self._send_one(recipient) for recipient in batch]

    def close(self) -> None:
        self.lists = []

    def _send_one(self, recipient: Recipient) -> SendResult:
        from dispatch.subscribers.optin import build_optin_email
        from dispatch.transactional import send_transactional

        if not recipient.email or not self.lists:
            return SendResult(recipient.delivery_id, Outcome.FAILED, text="no address or list")
        person = _Person(recipient.subscriber_id, recipient.email, recipient.name, recipient.locale)
        message = build_optin_email(self.settings, person, self.lists)  # type: ignore[arg-type]
        try:
            message_id = send_transactional(
                self.settings, message, subscriber_id=recipient.subscriber_id
            )
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b""))
            outcome = Outcome.BOUNCED if 500 <= int(code) < 600 else Outcome.DEFERRED
            return SendResult(recipient.delivery_id, outcome, code=int(code), text=_text(text))
        except smtplib.SMTPResponseException as exc:
            outcome = Outcome.FAILED if 500 <= exc.smtp_code < 600 else Outcome.DEFERRED
            return SendResult(
                recipient.delivery_id, outcome, code=exc.smtp_code, text=_text(exc.smtp_error)
            )
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(recipient.delivery_id, Outcome.DEFERRED, text=f"{exc!r}"[:200])
        return SendResult(recipient.delivery_id, Outcome.SENT, code=250, message_id=message_id)


def _text(value: bytes | str) -> str:
    return (value.decode(errors="replace") if isinstance(value, bytes) else str(value))[:200]
