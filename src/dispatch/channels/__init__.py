"""Channels: one small interface (channels.base.Channel), one module per way of reaching people.

The registry below maps a channel's name to its class; modules are imported lazily so a
worker that only sends email never imports the WeChat client. Everything the rest of the
service needs to know about a channel comes from the class's `traits` (channels.base.
ChannelTraits): the address column, batch and chunk sizes, opens and clicks. So a new
channel is one module (a class with `name`, `traits`, open/send/close) plus one
`register_channel` line; tests/test_channel_webhook.py proves it with a webhook channel.
"""

from __future__ import annotations

import importlib
from typing import Any

from dispatch.channels.base import CampaignContext, Channel, ChannelTraits
from dispatch.config import Settings
from dispatch.errors import DispatchError
from dispatch.vocabulary import Channel as ChannelName

__all__ = [
    "CHANNEL_CLASSES",
    "UnknownChannel",
    "channel_traits",
    "check_campaign",
    "fanout_batch_size",
    "make_channel",
    "prepare_channel",
    "register_channel",
    "registered_channels",
]

# name → "module:Class" (imported on first use) or the class itself
CHANNEL_CLASSES: dict[str, str | type] = {
    ChannelName.EMAIL.value: "dispatch.channels.smtp:SmtpChannel",
    ChannelName.WECHAT.value: "dispatch.channels.wechat:WechatChannel",
    ChannelName.CONFIRMATION.value: "dispatch.channels.confirmation:ConfirmationChannel",
}


class UnknownChannel(DispatchError):
    """No channel of that kind is registered."""


def register_channel(name: str, target: str | type) -> None:
    """Add (or replace) a channel: `target` is "module:Class" or the class."""
    CHANNEL_CLASSES[str(name)] = target


def registered_channels() -> tuple[str, ...]:
    return tuple(CHANNEL_CLASSES)


def channel_class(kind: str) -> type[Any]:
    target = CHANNEL_CLASSES.get(kind)
    if target is None:
        raise UnknownChannel(
            f"unknown channel {kind!r} (known: {', '.join(sorted(CHANNEL_CLASSES))})"
        )
    if isinstance(target, type):
        return target
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def channel_traits(kind: str) -> ChannelTraits:
    """What the channel of `kind` declares about itself (address column, sizes, tracking)."""
    return channel_class(kind).traits


def fanout_batch_size(kind: str, settings: Settings) -> int:
    """How many deliveries fan-out puts in one batch for this channel: its declared
    `batch_size` (a WeChat batch is one mass send of up to 10,000 openids), else the
    configured batch size."""
    fixed = channel_traits(kind).batch_size
    return max(int(fixed or settings.batch_size), 1)


def check_campaign(kind: str, settings: Settings, options: dict | None) -> None:
    """Refuse, before anything is created, a campaign the channel cannot send (ValueError with
    the reason). A channel class opts in with a `check_campaign(settings, options)` method."""
    check = getattr(channel_class(kind), "check_campaign", None)
    if check is not None:
        check(settings, dict(options or {}))


def min_batch_size(kind: str) -> int:
    """The fewest recipients one batch may hold (WeChat's openid mass send takes 2 or more)."""
    return max(int(channel_traits(kind).min_batch_size), 1)


def make_channel(kind: str, settings: Settings, context: CampaignContext) -> Channel:
    """Build the channel of `kind` for one batch of one campaign."""
    return channel_class(kind)(settings, context)


def prepare_channel(kind: str, settings: Settings, context: CampaignContext) -> None:
    """Do the channel's slow once-per-campaign work (rendering the issue) ahead of a batch.

    The engine calls this before it claims rows, so a claim's lease only has to cover the
    sending itself. A channel class opts in with a `prepare_campaign(settings, context)`
    static/class method.
    """
    prepare = getattr(channel_class(kind), "prepare_campaign", None)
    if prepare is not None:
        prepare(settings, context)
