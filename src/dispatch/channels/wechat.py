"""The WeChat channel: one batch of a campaign → one mass send (or previews / template messages).

Why a batch is a chunk: the engine fixes batch numbers at fan-out and the WeChat batch holds at
most 10,000 recipients, so the chunk's clientmsgid (dispatch-{campaign}-{batch}) is stable and a
retried batch is never sent twice. Every recipient of a chunk gets that chunk's msg_id as
external_id. Errors go through dispatch.wechat.errors: token → refreshed inside the client;
busy / rate limits → a few in-process retries, then `deferred` for the engine's own retry;
quota and account refusals → `paused` with the reason; content and media errors → `failed`
with WeChat's code and message.

Modes (campaign.options["wechat_mode"]): "openids" (default, mass/send), "tag" (mass/sendall
to options["wechat_tag_id"], or everyone when absent), "template" (message/template/send per
recipient with options["wechat_template_id"], linking the published article). A test campaign
(context.is_test) sends mass/preview to each recipient's openid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from dispatch.channels.base import (
    CampaignContext,
    ChannelTraits,
    Outcome,
    Recipient,
    SendResult,
)
from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.models import Issue
from dispatch.models.wechat import WechatTemplateMessage
from dispatch.vocabulary import Channel
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import RetryPolicy, WechatError, call_with_retries, error_from
from dispatch.wechat.mass import MAX_OPENIDS, MIN_OPENIDS, clientmsgid_for, send_chunk
from dispatch.wechat.mass import MESSAGES as MASS_MESSAGES
from dispatch.wechat.publish import PublishError, ensure_draft, find_draft

log = logging.getLogger("dispatch.channels.wechat")

MESSAGES = Catalog(
    {
        "no_openid": ("该订阅者没有微信 OpenID", "the subscriber has no WeChat openid"),
        "no_issue": ("期刊 {issue_id} 不存在", "issue {issue_id} not found"),
        "no_template": (
            "模板消息模式需要 wechat_template_id",
            "template mode needs wechat_template_id",
        ),
        "no_article_url": (
            "模板消息需要已发布文章的链接：请先 dispatch wechat publish --free-publish",
            "template messages link the published article: run dispatch wechat publish --free-publish first",
        ),
        "template_title": ("{title} 已发布", "{title} is out"),
    }
)

ACTION_OUTCOME: dict[str, Outcome] = {
    "retry": Outcome.DEFERRED,
    "backoff": Outcome.DEFERRED,
    "refresh_token": Outcome.DEFERRED,
    "pause": Outcome.PAUSED,
    "fail": Outcome.FAILED,
    "already_sent": Outcome.SENT,
}


def outcome_text(err: WechatError) -> str:
    return MASS_MESSAGES.get(
        "refused", "en", reason=err.rule.reason, code=err.errcode, errmsg=err.errmsg
    )


class WechatChannel:
    name = Channel.WECHAT
    traits = ChannelTraits(
        address="openid",
        # fan-out puts up to 10,000 followers in one batch: every batch is one mass send, and
        # each counts against the followers' monthly quota, so batches are as large as allowed
        batch_size=MAX_OPENIDS,
        # one send() per batch: a batch is one mass-send chunk (≤ 10,000 openids), so the
        # engine must hand over the whole batch at once rather than in small rate-limit chunks
        chunk_size=MAX_OPENIDS,
        opens=False,  # WeChat reports neither opens nor clicks to the sender
        clicks=False,
    )

    def __init__(
        self,
        settings: Settings,
        context: CampaignContext,
        *,
        client: WechatClient | None = None,
        engine: Engine | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self.context = context
        self.client = client
        self.engine = engine
        self.policy = policy or RetryPolicy(
            scale=float(settings.extra.get("wechat_retry_scale", 1.0))
        )
        self.sleep = sleep

    @classmethod
    def prepare_campaign(cls, settings: Settings, context: CampaignContext) -> None:
        """Upload the images and create the draft before the engine claims rows (slow, cached
        per issue), so a claim's lease covers only the mass send itself."""
        from dispatch.db import get_engine

        with Session(get_engine(settings), expire_on_commit=False) as session:
            issue = session.get(Issue, context.issue_id)
            if issue is not None:
                ensure_draft(session, WechatClient(settings), settings, issue)

    # -- Channel protocol ---------------------------------------------------------------------
    def open(self) -> None:
        if self.client is None:
            self.client = WechatClient(self.settings)
        if self.engine is None:
            from dispatch.db import get_engine

            self.engine = get_engine(self.settings)

    def close(self) -> None:
        if self.client is not None:
            self.client._http.close()

    def send(self, batch: Sequence[Recipient]) -> list[SendResult]:
        self.open()
        assert self.client is not None and self.engine is not None
        ctx = self.context
        with Session(self.engine, expire_on_commit=False) as session:
            issue = session.get(Issue, ctx.issue_id)
            if issue is None:
                return self._all(
                    batch,
                    Outcome.FAILED,
                    text=MESSAGES.get("no_issue", "en", issue_id=ctx.issue_id),
                )
            options = self._options(session)
            try:
                draft = ensure_draft(session, self.client, self.settings, issue)
            except (
                PublishError,
                ValueError,
            ) as exc:  # bad content: renderer or publisher refused it
                return self._all(batch, Outcome.FAILED, text=str(exc)[:2000])
            except Exception as exc:  # noqa: BLE001 - classified by the table
                err = error_from(exc)
                return self._all(
                    batch, ACTION_OUTCOME[err.action], code=err.errcode, text=outcome_text(err)
                )
            with_openid = [r for r in batch if r.openid]
            results = [
                SendResult(r.delivery_id, Outcome.FAILED, text=MESSAGES.get("no_openid", "en"))
                for r in batch
                if not r.openid
            ]
            mode = str(options.get("wechat_mode") or "openids")
            if ctx.is_test:
                results += self._preview(with_openid, draft.draft_media_id)
            elif mode == "template":
                results += self._template(session, with_openid, issue, options)
            elif mode == "tag":
                tag = options.get("wechat_tag_id")
                results += self._mass(
                    session,
                    with_openid,
                    draft.draft_media_id,
                    "tag",
                    tag_id=int(tag) if tag is not None else None,
                )
            else:
                results += self._mass(session, with_openid, draft.draft_media_id, "openids")
            return results

    # -- modes ------------------------------------------------------------------------------
    def _options(self, session: Session) -> dict[str, Any]:
        try:
            from dispatch.models import Campaign  # the delivery area's model
        except ImportError:
            return {}
        campaign = session.get(Campaign, self.context.campaign_id)
        return dict(campaign.options or {}) if campaign is not None else {}

    def _mass(
        self,
        session: Session,
        recipients: Sequence[Recipient],
        media_id: str,
        mode: str,
        tag_id: int | None = None,
    ) -> list[SendResult]:
        ctx = self.context
        if mode == "tag":  # one sendall per campaign; every batch shares its msg_id
            pieces = [list(recipients)]
        else:
            ordered = sorted(recipients, key=lambda r: r.delivery_id)
            pieces = [ordered[i : i + MAX_OPENIDS] for i in range(0, len(ordered), MAX_OPENIDS)]
        results: list[SendResult] = []
        for piece in pieces:
            if not piece:
                continue
            openids = list(dict.fromkeys(r.openid for r in piece if r.openid))
            if mode == "openids" and len(openids) < MIN_OPENIDS:
                text = MASS_MESSAGES.get("too_few", "en", count=len(openids))
                results += [
                    SendResult(r.delivery_id, Outcome.FAILED, code=40130, text=text) for r in piece
                ]
                continue
            if mode == "tag":
                clientmsgid, digest = f"dispatch-{ctx.campaign_id}-tag", None
            else:  # after the previous piece's row exists, so each piece gets its own id
                clientmsgid, digest = clientmsgid_for(
                    session, ctx.campaign_id, ctx.batch_no, openids
                )
            outcome = send_chunk(
                session,
                self.client,
                campaign_id=ctx.campaign_id,
                batch_no=ctx.batch_no,
                clientmsgid=clientmsgid,
                draft_media_id=media_id,
                mode=mode,
                openids=openids,
                tag_id=tag_id,
                digest=digest,
                policy=self.policy,
                sleep=self.sleep,
            )
            if outcome.sent:
                data = {
                    "clientmsgid": clientmsgid,
                    "msg_id": outcome.msg_id,
                    "already_sent": outcome.already_sent,
                }
                results += [
                    SendResult(r.delivery_id, Outcome.SENT, external_id=outcome.msg_id, data=data)
                    for r in piece
                ]
            else:
                err = outcome.error
                assert err is not None
                outcome_kind = ACTION_OUTCOME[err.action]
                results += [
                    SendResult(
                        r.delivery_id,
                        outcome_kind,
                        code=err.errcode,
                        text=outcome_text(err),
                        data={"clientmsgid": clientmsgid, "action": err.action},
                    )
                    for r in piece
                ]
        return results

    def _preview(self, recipients: Sequence[Recipient], media_id: str) -> list[SendResult]:
        results = []
        for r in recipients:
            try:
                answer = call_with_retries(
                    lambda r=r: self.client.mass_preview(r.openid, media_id),
                    self.policy,
                    self.sleep,
                    log_context=f"preview delivery_id={r.delivery_id}",
                )
                results.append(
                    SendResult(
                        r.delivery_id,
                        Outcome.SENT,
                        external_id=str(answer.get("msg_id", "")) or None,
                        data={"preview": True},
                    )
                )
            except WechatError as err:
                results.append(
                    SendResult(
                        r.delivery_id,
                        ACTION_OUTCOME[err.action],
                        code=err.errcode,
                        text=outcome_text(err),
                    )
                )
        return results

    def _template(
        self,
        session: Session,
        recipients: Sequence[Recipient],
        issue: Issue,
        options: dict[str, Any],
    ) -> list[SendResult]:
        template_id = str(options.get("wechat_template_id") or "")
        if not template_id:
            return self._all(recipients, Outcome.FAILED, text=MESSAGES.get("no_template", "en"))
        draft = find_draft(session, self.client, issue)
        url = options.get("wechat_article_url") or (draft.article_url if draft else None)
        if not url:
            return self._all(recipients, Outcome.FAILED, text=MESSAGES.get("no_article_url", "en"))
        results = []
        for r in recipients:
            data = {
                "first": {"value": MESSAGES.get("template_title", r.locale, title=issue.title)},
                "keyword1": {"value": issue.title},
                "keyword2": {"value": f"{issue.period_from:%Y-%m-%d} – {issue.period_to:%Y-%m-%d}"},
                "remark": {"value": issue.publisher},
            }
            try:
                msgid = call_with_retries(
                    lambda r=r, data=data: self.client.template_send(
                        r.openid, template_id, data, url
                    ),
                    self.policy,
                    self.sleep,
                    log_context=f"template delivery_id={r.delivery_id}",
                )
            except WechatError as err:
                kind = Outcome.BOUNCED if err.errcode == 43004 else ACTION_OUTCOME[err.action]
                results.append(
                    SendResult(r.delivery_id, kind, code=err.errcode, text=outcome_text(err))
                )
                continue
            session.add(
                WechatTemplateMessage(
                    msg_id=msgid,
                    campaign_id=self.context.campaign_id,
                    delivery_id=r.delivery_id,
                    subscriber_id=r.subscriber_id,
                    openid=r.openid or "",
                    status="sent",
                    event={},
                )
            )
            session.commit()
            results.append(
                SendResult(r.delivery_id, Outcome.SENT, external_id=msgid, data={"template": True})
            )
        return results

    @staticmethod
    def _all(
        batch: Sequence[Recipient], outcome: Outcome, *, code: int | None = None, text: str = ""
    ) -> list[SendResult]:
        return [SendResult(r.delivery_id, outcome, code=code, text=text) for r in batch]
