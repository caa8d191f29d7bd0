"""WeChat tables: upload cache, drafts per issue, mass-send chunks and template messages.

Why a cache keyed by content hash: WeChat's uploads are slow and counted against daily quotas,
so a retried batch or a second campaign of the same issue must reuse what was uploaded. Every
row is scoped by `account` (app id @ API base) so a fake server's ids never leak into the real
account's drafts and vice versa.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = [
    "WechatMedia",
    "WechatDraft",
    "WechatMassChunk",
    "WechatTemplateMessage",
    "WechatFollower",
    "WechatTag",
    "WechatSyncRun",
    "WechatCallbackSeen",
    "WechatArticleStat",
    "MEDIA_KINDS",
]

# image: media/uploadimg URL (article content); cover: permanent image material (draft cover);
# thumb: permanent thumb material (64 KB, kept for rows made before covers became images)
MEDIA_KINDS = ("image", "cover", "thumb")


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
    """One draft (draft/add) of one rendering of an issue. A draft is used once: WeChat takes
    it out of the draft box when it is mass-sent or published, so each mass send claims its own
    (`used_by` = the chunk's clientmsgid, or publish:<id>) and `consumed_at` marks it gone."""

    __tablename__ = "wechat_drafts"
    __table_args__ = (
        UniqueConstraint("used_by", name="uq_wechat_drafts_used_by"),
        Index("ix_wechat_drafts_key", "account", "issue_id", "content_hash"),
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
    used_by: Mapped[str | None] = mapped_column(String(80), default=None)
    # the draft/add articles (uploaded media ids and URLs in place): the next draft of the same
    # rendering is made from it without rendering or uploading again
    payload: Mapped[list] = mapped_column(JSON, default=list)
    consumed_at: Mapped[datetime | None] = mapped_column(default=None)
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
    delivery_id: Mapped[int] = mapped_column(BigInteger)  # deliveries.id is BIGINT
    subscriber_id: Mapped[int | None] = mapped_column(default=None)
    openid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32), default="sent")  # sent | success | failed:…
    event: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WechatFollower(Base):
    """What WeChat says about one follower of the account (user/get + user/info/batchget).

    Why a table of its own: the subscriber row is the person (owned by the subscribers area);
    this row is the account's view of the openid: whether it still follows, its unionid, tags
    and the sync run that last saw it (a follower no run has seen since has unfollowed).
    """

    __tablename__ = "wechat_followers"
    __table_args__ = (UniqueConstraint("account", "openid", name="uq_wechat_followers_openid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    openid: Mapped[str] = mapped_column(String(128))
    subscriber_id: Mapped[int | None] = mapped_column(default=None, index=True)
    unionid: Mapped[str | None] = mapped_column(String(128), default=None)
    language: Mapped[str] = mapped_column(String(16), default="")
    subscribe_time: Mapped[int | None] = mapped_column(default=None)  # unix seconds
    tag_ids: Mapped[list] = mapped_column(JSON, default=list)
    subscribed: Mapped[bool] = mapped_column(default=True)
    seen_run: Mapped[int] = mapped_column(default=0)  # the last sync run that saw it
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WechatTag(Base):
    """A follower tag of the account (tags/get); a campaign may send to one (mass/sendall)."""

    __tablename__ = "wechat_tags"
    __table_args__ = (UniqueConstraint("account", "tag_id", name="uq_wechat_tags_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    tag_id: Mapped[int]
    name: Mapped[str] = mapped_column(String(64), default="")
    count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WechatSyncRun(Base):
    """One pass of the follower sync; its cursor (next_openid) lets an interrupted run resume."""

    __tablename__ = "wechat_sync_runs"
    __table_args__ = (Index("ix_wechat_sync_runs_account", "account", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    list_id: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|finished|failed
    next_openid: Mapped[str] = mapped_column(String(128), default="")
    total: Mapped[int] = mapped_column(default=0)  # WeChat's follower count
    pages: Mapped[int] = mapped_column(default=0)
    seen: Mapped[int] = mapped_column(default=0)
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unfollowed: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class WechatCallbackSeen(Base):
    """A callback nonce or event key already accepted: a second one is a replay or a retry.

    Rows older than the timestamp window are useless (such callbacks are refused by time) and
    are pruned as new ones arrive.
    """

    __tablename__ = "wechat_callback_seen"
    __table_args__ = (UniqueConstraint("key", name="uq_wechat_callback_seen_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(160))  # nonce:<ts>:<nonce> | event:<...>
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WechatArticleStat(Base):
    """WeChat's own reading figures for a sent article (datacube getarticletotal/summary)."""

    __tablename__ = "wechat_article_stats"
    __table_args__ = (
        UniqueConstraint("account", "msgid", "stat_date", name="uq_wechat_article_stats_key"),
        Index("ix_wechat_article_stats_campaign", "campaign_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account: Mapped[str] = mapped_column(String(200))
    campaign_id: Mapped[int | None] = mapped_column(default=None)
    msgid: Mapped[str] = mapped_column(String(64))  # "{msg_data_id}_{article index}"
    title: Mapped[str] = mapped_column(String(200), default="")
    ref_date: Mapped[str] = mapped_column(String(10))  # the send day, YYYY-MM-DD
    stat_date: Mapped[str] = mapped_column(String(10))  # the day counted
    read_user: Mapped[int] = mapped_column(default=0)
    read_count: Mapped[int] = mapped_column(default=0)
    share_user: Mapped[int] = mapped_column(default=0)
    share_count: Mapped[int] = mapped_column(default=0)
    fav_user: Mapped[int] = mapped_column(default=0)
    fav_count: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
