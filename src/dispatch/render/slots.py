"""What one recipient changes in an already-rendered issue: nothing more than these values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RecipientSlots:
    """Per-recipient values filled into prepared slots of a rendered email.

    `name` is subscriber-provided and is escaped by the renderer. `open_url` None means no
    open pixel. `click_urls[i]` replaces `doc.links[i]` when the email was rendered with
    tracking; None keeps the original links. `locale` is the subscriber's language: the
    greeting follows it ("Hello Partner 07," for an English reader of a Chinese issue).
    """

    name: str
    unsubscribe_url: str
    open_url: str | None = None
    click_urls: Sequence[str] | None = None
    locale: str | None = None
