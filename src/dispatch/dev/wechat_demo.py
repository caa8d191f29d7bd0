"""`dispatch demo`'s WeChat part: the sample issue to the fake API, mass-sent to followers.

Why through the campaign machinery: the demo shows the same path production takes (campaign,
fan-out, batches, the WeChat channel, clientmsgid chunks, the MASSSENDJOBFINISH callback), only
with the fake WeChat API on loopback instead of api.weixin.qq.com.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.dev.wechat_fake import FakeWechatServer, new_aes_key
from dispatch.models import Issue
from dispatch.models.wechat import WechatMassChunk
from dispatch.wechat.callbacks import handle_callback
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import RetryPolicy
from dispatch.wechat.publish import ensure_draft


def run_wechat_demo(
    settings: Settings, session: Session, issue: Issue, list_ids: Sequence[int]
) -> dict[str, Any]:
    """Publish `issue` to a fresh fake WeChat API and mass-send it to the lists' followers.

    Commits `session` first (the engine works in its own transactions). Returns the ids to print.
    """
    session.commit()
    from dispatch.channels.wechat import WechatChannel
    from dispatch.delivery import campaigns as campaign_service
    from dispatch.delivery.engine import drain
    from dispatch.delivery.queue import ListQueue

    with FakeWechatServer() as fake:
        fake.state.callback_token = settings.wechat_token or "dispatch-demo-token"
        fake.state.callback_aes_key = settings.wechat_aes_key or new_aes_key()
        demo = fake.settings_for(settings).replace(
            wechat_token=fake.state.callback_token,
            wechat_aes_key=fake.state.callback_aes_key,
            batch_size=10_000,
        )
        client = WechatClient(demo)
        draft = ensure_draft(session, client, demo, issue)

        campaign, _ = campaign_service.create_or_get(
            session, issue_id=issue.id, channel="wechat", list_ids=list(list_ids)
        )
        session.commit()
        engine = session.get_bind()
        if campaign.status == "draft":
            queue = ListQueue()
            campaign_service.start(engine, demo, campaign.id, queue)
            drain(
                engine,
                demo,
                queue,
                channel_factory=lambda kind, s, ctx: WechatChannel(
                    s, ctx, client=client, policy=RetryPolicy(attempts=3, scale=0.01)
                ),
            )

        # WeChat reports each chunk's result by callback: deliver them, signed and encrypted
        chunks = session.scalars(
            select(WechatMassChunk)
            .where(WechatMassChunk.campaign_id == campaign.id)
            .order_by(WechatMassChunk.batch_no)
        ).all()
        for chunk in chunks:
            if chunk.msg_id and int(chunk.msg_id) in fake.state.mass:
                params, body = fake.api.sign_and_encrypt(
                    fake.api.mass_finish_xml(int(chunk.msg_id))
                )
                handle_callback(session, demo, params, body)
        session.commit()
        session.expire_all()
        chunks = session.scalars(
            select(WechatMassChunk)
            .where(WechatMassChunk.campaign_id == campaign.id)
            .order_by(WechatMassChunk.batch_no)
        ).all()
        counts = campaign_service.counts(session, campaign.id)
        return {
            "fake_api": fake.base_url,
            "draft_media_id": draft.draft_media_id,
            "articles": draft.article_count,
            "images_uploaded": fake.state.calls["media/uploadimg"],
            "campaign_id": campaign.id,
            "campaign_status": campaign_service.get(session, campaign.id).status,
            "deliveries": counts,
            "chunks": [
                {
                    "batch_no": c.batch_no,
                    "clientmsgid": c.clientmsgid,
                    "msg_id": c.msg_id,
                    "status": c.status,
                    "sent": c.sent_count,
                }
                for c in chunks
            ],
            "msg_ids": [c.msg_id for c in chunks if c.msg_id],
        }


def demo_step(
    settings: Settings, issue_id: int, list_ids: Sequence[int] | None = None
) -> dict[str, Any]:
    """What `dispatch demo` calls: its own session; every list when none are given.

    Only subscribers with an openid are WeChat recipients; the result says how many there were.
    """
    from dispatch.db import get_engine
    from dispatch.models.subscriber import MailingList

    with Session(get_engine(settings), expire_on_commit=False) as session:
        issue = session.get(Issue, issue_id)
        if issue is None:
            raise ValueError(f"issue {issue_id} not found")
        ids = (
            list(list_ids)
            if list_ids is not None
            else list(session.scalars(select(MailingList.id)))
        )
        return run_wechat_demo(settings, session, issue, ids)
