"""WeChat tables: upload cache, drafts per issue, mass-send chunks and template messages.

Why a cache keyed by content hash: WeChat's uploads are slow and counted against daily quotas,
so a retried batch or a second campaign of the same issue must reuse what was uploaded. Every
row is scoped by `account` (app id @ API base) so a fake server's ids never leak into the real
account's drafts and vice versa.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["WechatMedia", "WechatDraft", "WechatMassChunk", "WechatTemplateMessage", "MEDIA_KINDS"]

MEDIA_KINDS = ("image", "thumb")  # image: media/uploadimg URL; thumb: permanent thumb material


class WechatMedia(Base):
    """One uploaded file: body images keep the URL, the cover keeps the permanent media_id."""

    __tablename__ = "wechat_media"
    __table_args__ = (
        UniqueConstraint("account", "content_hash", "kind", name="uq_wechat_media_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    content_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    media_id: Mapped[str | None] = mapped_column(String(128), default=None)
    url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WechatDraft(Base):
    """The draft (draft/add) made from one rendering of an issue; reused by every campaign."""

    __tablename__ = "wechat_drafts"
    __table_args__ = (
        UniqueConstraint("account", "issue_id", "content_hash", name="uq_wechat_drafts_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    issue_id: Mapped[int] = mapped_column(index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    media_id: Mapped[str] = mapped_column(String(128))
    article_count: Mapped[int]
    publish_id: Mapped[str | None] = mapped_column(String(64), default=None)
    article_id: Mapped[str | None] = mapped_column(String(128), default=None)
    article_url: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WechatMassChunk(Base):
    """One mass-send call (≤ 10,000 openids, a tag, or a preview) and what WeChat reported."""

    __tablename__ = "wechat_mass_chunks"
    __table_args__ = (
        UniqueConstraint("clientmsgid", name="uq_wechat_mass_chunks_clientmsgid"),
        Index("ix_wechat_mass_chunks_campaign", "campaign_id", "batch_no"),
        Index("ix_wechat_mass_chunks_msg_id", "msg_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int]
    batch_no: Mapped[int]
    clientmsgid: Mapped[str] = mapped_column(String(64))
    account: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(16))  # openids | tag | preview
    draft_media_id: Mapped[str] = mapped_column(String(128))
    openids_hash: Mapped[str | None] = mapped_column(
        String(64), default=None
    )  # sha256 of sorted openids
    msg_id: Mapped[str | None] = mapped_column(String(32), default=None)
    msg_data_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # sending -> sent -> finished (event/poll) | failed | paused | deferred
    status: Mapped[str] = mapped_column(String(16), default="sending")
    attempts: Mapped[int] = mapped_column(default=0)
    recipient_count: Mapped[int] = mapped_column(default=0)
    total_count: Mapped[int | None] = mapped_column(default=None)
    filter_count: Mapped[int | None] = mapped_column(default=None)
    sent_count: Mapped[int | None] = mapped_column(default=None)
    error_count: Mapped[int | None] = mapped_column(default=None)
    errcode: Mapped[int | None] = mapped_column(default=None)
    errmsg: Mapped[str | None] = mapped_column(Text, default=None)
    event: Mapped[dict] = mapped_column(JSON, default=dict)  # the raw MASSSENDJOBFINISH / mass/get
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WechatTemplateMessage(Base):
    """One template message to one follower, so TEMPLATESENDJOBFINISH finds its delivery."""

    __tablename__ = "wechat_template_messages"
    __table_args__ = (
        UniqueConstraint("msg_id", name="uq_wechat_template_messages_msg_id"),
        Index("ix_wechat_template_messages_delivery", "delivery_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    msg_id: Mapped[str] = mapped_column(String(32))
    campaign_id: Mapped[int]
    delivery_id: Mapped[int]
    subscriber_id: Mapped[int | None] = mapped_column(default=None)
    openid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="sent")  # sent | success | failed:…
    event: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
