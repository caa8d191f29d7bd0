"""Channels: one small interface (channels.base.Channel), one module per way of reaching people.

`make_channel(kind, settings, context)` is the registry the delivery engine uses; modules are
imported lazily so a worker that only sends email never imports the WeChat client. A third
channel (SMS, WeCom) is one new module plus one line here.
"""

from __future__ import annotations

import importlib

from dispatch.channels.base import CampaignContext, Channel
from dispatch.config import Settings

__all__ = [
    "CHANNEL_CLASSES",
    "UnknownChannel",
    "fanout_batch_size",
    "make_channel",
    "prepare_channel",
]

CHANNEL_CLASSES: dict[str, str] = {
    "email": "dispatch.channels.smtp:SmtpChannel",
    "wechat": "dispatch.channels.wechat:WechatChannel",
}


class UnknownChannel(ValueError):
    """No channel of that kind is registered."""


def channel_class(kind: str) -> type:
    target = CHANNEL_CLASSES.get(kind)
    if target is None:
        raise UnknownChannel(
            f"unknown channel {kind!r} (known: {', '.join(sorted(CHANNEL_CLASSES))})"
        )
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def fanout_batch_size(kind: str, settings: Settings) -> int:
    """How many deliveries fan-out puts in one batch for this channel.

    A channel whose one send is a whole batch (a WeChat mass-send chunk of up to 10,000
    openids, each chunk using a month's quota of its followers) says so with a `batch_size`
    class attribute; others use the configured email batch size.
    """
    fixed = getattr(channel_class(kind), "batch_size", None)
    return max(int(fixed or settings.batch_size), 1)


def make_channel(kind: str, settings: Settings, context: CampaignContext) -> Channel:
    """Build the channel of `kind` for one batch of one campaign."""
    return channel_class(kind)(settings, context)


def prepare_channel(kind: str, settings: Settings, context: CampaignContext) -> None:
    """Do the channel's slow once-per-campaign work (rendering the issue) ahead of a batch.

    The engine calls this before it claims rows, so a claim's lease only has to cover the
    sending itself. A channel class opts in with a `prepare_campaign(settings, context)`
    static/class method; for email the per-process campaign source cache is warmed.
    """
    cls = channel_class(kind)
    prepare = getattr(cls, "prepare_campaign", None)
    if prepare is not None:
        prepare(settings, context)
        return
    if kind == "email":
        from sqlalchemy.orm import Session

        from dispatch.channels.email_source import load_campaign_source
        from dispatch.db import get_engine

        with Session(bind=get_engine(settings)) as session:
            load_campaign_source(session, context, settings)
