"""A third channel, for tests only: POST each message as JSON to an HTTP endpoint.

Why it exists: it proves that a channel is one module plus one registration. Nothing in the
engine, fan-out, campaigns or the subscriber rules knows its name; they read its `traits`.
It reaches people by their email address (so eligibility, test sends and bounces use the
email rules), sends in chunks of 3 and fans out in batches of 4, and reports no opens or
clicks. Register it with `register_webhook_channel(url)`.

Replies: 2xx sent; 410 Gone bounced (the address is suppressed); 429 and 5xx (or no answer)
deferred; any other reply failed.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from dispatch.channels import register_channel
from dispatch.channels.base import CampaignContext, ChannelTraits, Recipient, SendResult
from dispatch.config import Settings
from dispatch.vocabulary import Outcome

NAME = "webhook"


class WebhookChannel:
    name = NAME
    traits = ChannelTraits(address="email", batch_size=4, chunk_size=3, opens=False, clicks=False)
    url = ""  # set by register_webhook_channel
    timeout = 5.0

    def __init__(self, settings: Settings, context: CampaignContext):
        self.settings = settings
        self.context = context
        self.client: httpx.Client | None = None
        self.calls = 0

    def open(self) -> None:
        self.client = httpx.Client(timeout=self.timeout)

    def send(self, batch: Sequence[Recipient]) -> list[SendResult]:
        assert self.client is not None, "open() first"
        self.calls += 1
        return [self._post(recipient) for recipient in batch]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def _post(self, recipient: Recipient) -> SendResult:
        assert self.client is not None
        payload = {
            "campaign_id": self.context.campaign_id,
            "issue_id": self.context.issue_id,
            "batch_no": self.context.batch_no,
            "delivery_id": recipient.delivery_id,
            "subscriber_id": recipient.subscriber_id,
            "email": recipient.email,
            "name": recipient.name,
            "locale": recipient.locale,
            "tracking": self.context.tracking,
        }
        try:
            reply = self.client.post(self.url, json=payload)
        except httpx.HTTPError as exc:
            return SendResult(recipient.delivery_id, Outcome.DEFERRED, text=f"{exc!r}")
        return SendResult(
            recipient.delivery_id,
            classify(reply.status_code),
            code=reply.status_code,
            text=reply.text[:200],
        )


def classify(status: int) -> Outcome:
    if 200 <= status < 300:
        return Outcome.SENT
    if status == 410:
        return Outcome.BOUNCED
    if status == 429 or status >= 500:
        return Outcome.DEFERRED
    return Outcome.FAILED


def register_webhook_channel(url: str) -> type[WebhookChannel]:
    """Register the webhook channel posting to `url` (the one registration line)."""
    bound = type("WebhookChannel", (WebhookChannel,), {"url": url})
    register_channel(NAME, bound)
    return bound
