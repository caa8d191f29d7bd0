"""The one small interface every delivery channel implements (SMTP, WeChat, a future SMS).

The delivery engine (dispatch.delivery) hands a channel a batch of recipients of one campaign
and gets back one SendResult per recipient; it never knows how the channel talks to the world.
A channel classifies its own errors into the outcomes of dispatch.vocabulary.Outcome; the engine
owns what follows
(retry timing, suppression, pausing the campaign).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from dispatch.vocabulary import Outcome  # what a channel says per recipient (meanings there)


@dataclass(frozen=True)
class Recipient:
    """What a channel needs to reach one person for one delivery (ids only otherwise)."""

    delivery_id: int
    subscriber_id: int
    email: str | None
    name: str
    locale: str
    openid: str | None = None
    provider: str | None = None  # receiving provider (qq, netease, …), fixed at fan-out


@dataclass(frozen=True)
class SendResult:
    delivery_id: int
    outcome: Outcome
    code: int | None = None  # SMTP reply code or WeChat errcode
    text: str = ""  # server's reply text, kept for the admin
    message_id: str | None = None  # RFC 5322 Message-ID (email)
    external_id: str | None = None  # e.g. WeChat msg_id of the chunk
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ChannelTraits:
    """What the engine, fan-out and subscriber rules need to know about a channel, declared
    by the channel class (its `traits`) so none of them branches on the channel's name."""

    # the subscriber/delivery column holding the address: who is eligible (address present,
    # not suppressed), what a test send looks up, what a bounce suppresses
    address: Literal["email", "openid"]
    # deliveries per fan-out batch; None: settings.batch_size
    batch_size: int | None = None
    # recipients per send() call and per recording transaction; None: the engine's default
    chunk_size: int | None = None
    # the fewest deliveries a fan-out batch may hold (a WeChat openid mass send takes 2 or
    # more): above 1, fan-out spreads recipients evenly so the last batch is never smaller
    min_batch_size: int = 1
    # whether its messages can report opens (pixel) and clicks (tracked links): a campaign's
    # tracking is only switched on where the channel has them
    opens: bool = False
    clicks: bool = False
    # sends through the configured relays (dispatch.delivery.relays), one chosen per recipient
    # provider, with provider throttling, quotas and warm-up (dispatch.delivery.routing)
    relays: bool = False

    @property
    def tracks(self) -> bool:
        return self.opens or self.clicks


@dataclass(frozen=True)
class CampaignContext:
    """Per-campaign facts a channel builds its messages from (computed once per batch)."""

    campaign_id: int
    issue_id: int | None  # None for a confirmation campaign (no issue is sent)
    batch_no: int
    list_ids: tuple[int, ...]
    tracking: bool
    is_test: bool = False
    relay: Any = None  # dispatch.delivery.relays.Relay this channel sends through (email)


class Channel(Protocol):
    name: str
    traits: ClassVar[ChannelTraits]

    def open(self) -> None:
        """Connect (one SMTP connection / one API client) for a whole batch."""

    def send(self, batch: Sequence[Recipient]) -> list[SendResult]:
        """Send to every recipient; never raise for a per-recipient problem."""

    def close(self) -> None:
        """Release the connection; safe to call twice."""
