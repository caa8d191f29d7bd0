"""The WeChat channel: one batch of a campaign → one mass send (or previews).

Why a batch is a chunk: the engine fixes batch numbers at fan-out and the WeChat batch holds at
most 10,000 recipients (fan-out spreads them so none holds fewer than 2), so the chunk's
clientmsgid (dispatch-{campaign}-{batch}) is stable and a retried batch is never sent twice.
Every mass send uses a draft of its own (a draft leaves the draft box once sent). Every
recipient of a chunk gets that chunk's msg_id as external_id; WeChat's MASSSENDJOBFINISH later
fails the chunk's deliveries if its Status is not success. Errors go through
dispatch.wechat.errors: token → refreshed inside the client; busy / rate limits → a few
in-process retries, then `deferred`; the daily quota (45009) → the batch waits (engine's
waiting mechanism: `throttled` with `retry_at` and `waiting`, the campaign stays running and
shows the reason) until WeChat's quota day turns, and the sweep sends it then; the same
clientmsgid and draft are used again, so nobody gets it twice; account refusals
(48001/48003/48004/40164) → `paused` with the action for the operator (no automatic
resume); content and media errors → `failed` with WeChat's code and message.

Modes (campaign.options["wechat_mode"], checked against the account type by
dispatch.wechat.account before a campaign is created): "openids" (mass/send, verified service
accounts), "all" (mass/sendall is_to_all: shown in the account's history), "tag" (mass/sendall
to options["wechat_tag_id"]). Template messages are not a content channel (WeChat's rules
forbid pushing content as service notices), so there is no template mode. A test campaign
(context.is_test) sends mass/preview to each recipient's openid.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
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
from dispatch.models import Issue, utcnow
from dispatch.vocabulary import Channel
from dispatch.wechat.account import campaign_send_options, check_campaign, next_quota_day
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import RetryPolicy, WechatError, call_with_retries, error_from
from dispatch.wechat.mass import MAX_OPENIDS, MIN_OPENIDS, clientmsgid_for, send_chunk
from dispatch.wechat.mass import MESSAGES as MASS_MESSAGES
from dispatch.wechat.publish import (
    PublishError,
    draft_for_send,
    ensure_draft,
    mark_consumed,
    upload_media,
)

log = logging.getLogger("dispatch.channels.wechat")

MESSAGES = Catalog(
    {
        "no_openid": ("该订阅者没有微信 OpenID", "the subscriber has no WeChat openid"),
        "no_issue": ("期刊 {issue_id} 不存在", "issue {issue_id} not found"),
        "quota_wait": (
            "微信每日接口额度已用完（45009）：活动在等待，额度在 {until}（北京时间零点）重置，"
            "之后自动继续发送",
            "WeChat's daily API quota is used up (45009): the campaign waits; the quota "
            "resets at {until} (midnight Beijing time) and sending continues by itself then",
        ),
        "no_template": (
            "模板消息不能用于推送内容（微信规则），请改用群发",
            "template messages may not push content (WeChat's rules): use a mass send",
        ),
    }
)

ACTION_OUTCOME: dict[str, Outcome] = {
    "retry": Outcome.DEFERRED,
    "backoff": Outcome.DEFERRED,
    "refresh_token": Outcome.DEFERRED,
    "pause": Outcome.PAUSED,
    "quota": Outcome.THROTTLED,  # waits for the next quota day (see refused)
    "fail": Outcome.FAILED,
    "already_sent": Outcome.SENT,
}


def outcome_text(err: WechatError, now: datetime | None = None) -> str:
    """The reason a recipient (and, for pauses and waits, the campaign) shows, both languages."""
    if err.action == "quota":
        until = next_quota_day(now).strftime("%Y-%m-%d %H:%M UTC")
        return MESSAGES.both("quota_wait", until=until)
    return MASS_MESSAGES.both(
        "refused", reason=err.rule.reason, code=err.errcode, errmsg=err.errmsg
    )


def refused(
    recipients: Sequence[Recipient],
    err: WechatError,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> list[SendResult]:
    """Results for recipients WeChat refused. The daily quota (45009) is no failure and needs
    no operator: the rows wait for the next quota day (the engine shows the reason on the
    campaign and the sweep hands them back after the reset), with no attempt counted."""
    data = dict(data or {}, action=err.action)
    if err.action == "quota":
        data.update(retry_at=next_quota_day(now), waiting=True, stage="quota")
    outcome, text = ACTION_OUTCOME[err.action], outcome_text(err, now)
    return [
        SendResult(r.delivery_id, outcome, code=err.errcode, text=text, data=dict(data))
        for r in recipients
    ]


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
        # mass send by openid takes 2 to 10,000: fan-out spreads a tail so no batch is smaller
        min_batch_size=MIN_OPENIDS,
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
        clock: Callable[[], datetime] = utcnow,
    ):
        self.settings = settings
        self.clock = clock  # "now" for the quota day (tests simulate the reset)
        self.context = context
        self.client = client
        self.engine = engine
        self.policy = policy or RetryPolicy(scale=settings.wechat_retry_scale)
        self.sleep = sleep

    @staticmethod
    def check_campaign(settings: Settings, options: dict[str, Any]) -> None:
        """Refuse what the account type cannot send (dispatch.wechat.account)."""
        check_campaign(settings, options)

    @classmethod
    def prepare_campaign(cls, settings: Settings, context: CampaignContext) -> None:
        """Upload the images and covers before the engine claims rows (slow, cached per
        issue), so a claim's lease covers only the draft/add and the mass send itself."""
        from dispatch.db import get_engine

        with Session(get_engine(settings), expire_on_commit=False) as session:
            issue = session.get(Issue, context.issue_id)
            if issue is not None:
                upload_media(session, WechatClient(settings), settings, issue)

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
            send_options = campaign_send_options(options, self.settings)
            with_openid = [r for r in batch if r.openid]
            results = [
                SendResult(r.delivery_id, Outcome.FAILED, text=MESSAGES.get("no_openid", "en"))
                for r in batch
                if not r.openid
            ]
            mode = send_options.mode
            if mode == "template":
                return results + self._all(
                    with_openid, Outcome.FAILED, text=MESSAGES.both("no_template")
                )
            try:
                if ctx.is_test:
                    preview = ensure_draft(session, self.client, self.settings, issue, check=True)
                    return results + self._preview(with_openid, preview.draft_media_id)
                return results + self._mass(session, issue, with_openid, send_options)
            except (PublishError, ValueError) as exc:  # bad content: renderer/publisher refused
                return self._all(batch, Outcome.FAILED, text=str(exc)[:2000])
            except Exception as exc:  # noqa: BLE001 - classified by the table
                return refused(batch, error_from(exc), self.clock())

    # -- modes ------------------------------------------------------------------------------
    def _options(self, session: Session) -> dict[str, Any]:
        try:
            from dispatch.models import Campaign  # the delivery area's model
        except ImportError:
            return {}
        campaign = session.get(Campaign, self.context.campaign_id)
        return dict(campaign.options or {}) if campaign is not None else {}

    def _mass(
        self, session: Session, issue: Issue, recipients: Sequence[Recipient], opts: Any
    ) -> list[SendResult]:
        assert self.client is not None, "open() first"
        mode = "tag" if opts.mode in ("tag", "all") else "openids"
        tag_id = opts.tag_id if opts.mode == "tag" else None
        if mode == "tag":  # one sendall per campaign; every batch shares its msg_id
            pieces = [list(recipients)]
        else:
            ordered = sorted(recipients, key=lambda r: r.delivery_id)
            pieces = [ordered[i : i + MAX_OPENIDS] for i in range(0, len(ordered), MAX_OPENIDS)]
        results: list[SendResult] = []
        for piece in pieces:
            if piece:
                results += self._send_piece(session, issue, piece, opts, mode, tag_id)
        return results

    def _send_piece(
        self,
        session: Session,
        issue: Issue,
        piece: list[Recipient],
        opts: Any,
        mode: str,
        tag_id: int | None,
    ) -> list[SendResult]:
        """One mass send (a tag, or up to MAX_OPENIDS openids) with its own draft."""
        assert self.client is not None, "open() first"
        ctx = self.context
        openids = list(dict.fromkeys(r.openid for r in piece if r.openid))
        if mode == "openids" and len(openids) < MIN_OPENIDS:
            text = MASS_MESSAGES.both("too_few", count=len(openids))
            return [SendResult(r.delivery_id, Outcome.FAILED, code=40130, text=text) for r in piece]
        if mode == "tag":
            clientmsgid, digest = f"dispatch-{ctx.campaign_id}-{opts.mode}", None
        else:  # after the previous piece's row exists, so each piece gets its own id
            clientmsgid, digest = clientmsgid_for(session, ctx.campaign_id, ctx.batch_no, openids)
        draft = draft_for_send(
            session,
            self.client,
            self.settings,
            issue,
            clientmsgid,
            comments=opts.comments,
        )
        outcome = send_chunk(
            session,
            self.client,
            campaign_id=ctx.campaign_id,
            batch_no=ctx.batch_no,
            clientmsgid=clientmsgid,
            draft_media_id=draft.media_id,
            mode=mode,
            openids=openids,
            tag_id=tag_id,
            digest=digest,
            ignore_reprint=opts.ignore_reprint,
            policy=self.policy,
            sleep=self.sleep,
        )
        if outcome.sent:
            mark_consumed(session, draft)  # WeChat took it out of the draft box
            data = {
                "clientmsgid": clientmsgid,
                "msg_id": outcome.msg_id,
                "already_sent": outcome.already_sent,
            }
            return [
                SendResult(r.delivery_id, Outcome.SENT, external_id=outcome.msg_id, data=data)
                for r in piece
            ]
        err = outcome.error
        assert err is not None
        if err.errcode == 40007:  # the draft is gone (sent or published elsewhere)
            mark_consumed(session, draft)
        return refused(piece, err, self.clock(), {"clientmsgid": clientmsgid})

    def _preview(self, recipients: Sequence[Recipient], media_id: str) -> list[SendResult]:
        assert self.client is not None, "open() first"
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
                results += refused([r], err, self.clock())
        return results

    @staticmethod
    def _all(
        batch: Sequence[Recipient], outcome: Outcome, *, code: int | None = None, text: str = ""
    ) -> list[SendResult]:
        return [SendResult(r.delivery_id, outcome, code=code, text=text) for r in batch]
