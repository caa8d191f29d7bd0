"""Channels: one small interface (channels.base.Channel), one module per way of reaching people.

`make_channel(kind, settings, context)` is the registry the delivery engine uses; modules are
imported lazily so a worker that only sends email never imports the WeChat client. A third
channel (SMS, WeCom) is one new module plus one line here.
"""

from __future__ import annotations

import importlib

from dispatch.channels.base import CampaignContext, Channel
from dispatch.config import Settings

__all__ = ["CHANNEL_CLASSES", "UnknownChannel", "make_channel"]

CHANNEL_CLASSES: dict[str, str] = {
    "email": "dispatch.channels.smtp:SmtpChannel",
    "wechat": "dispatch.channels.wechat:WechatChannel",
}


class UnknownChannel(ValueError):
    """No channel of that kind is registered."""


def make_channel(kind: str, settings: Settings, context: CampaignContext) -> Channel:
    """Build the channel of `kind` for one batch of one campaign."""
    target = CHANNEL_CLASSES.get(kind)
    if target is None:
        raise UnknownChannel(f"unknown channel {kind!r} (known: {', '.join(sorted(CHANNEL_CLASSES))})")
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(settings, context)
