"""Mass sending in chunks with a stable clientmsgid, and the chunk's bookkeeping.

Why the clientmsgid is derived from (campaign, batch): a batch is fixed at fan-out, so a
retried batch (after a crash, a dropped connection, a deferred error) asks WeChat again with
the same id, and WeChat answers 45065 with the earlier msg_id instead of sending twice. The
wechat_mass_chunks row records the msg_id as soon as WeChat gives it, so even a repeated
45065 without a msg_id still finds it.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.i18n import Catalog
from dispatch.models.wechat import WechatMassChunk
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import RetryPolicy, WechatError, call_with_retries

log = logging.getLogger("dispatch.wechat.mass")

MAX_OPENIDS = 10_000
MIN_OPENIDS = 2
DEFAULT_POLICY = RetryPolicy()

MESSAGES = Catalog(
    {
        "too_few": (
            "按 OpenID 群发至少需要 2 个 OpenID，本批只有 {count} 个",
            "mass send by openid needs at least 2 openids, this chunk has {count}",
        ),
        "refused": (
            "微信拒绝群发：{reason}（{code}：{errmsg}）",
            "WeChat refused the mass send: {reason} ({code}: {errmsg})",
        ),
    }
)


def openids_hash(openids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(openids)).encode()).hexdigest()


def clientmsgid_for(
    session: Session, campaign_id: int, batch_no: int, openids: Sequence[str]
) -> tuple[str, str]:
    """(clientmsgid, openids hash) for this set of openids of a batch.

    The batch's first set gets dispatch-{campaign}-{batch}; the same set asked again (a retry)
    gets the same id, so WeChat de-duplicates it. Should the engine ever hand the channel a
    batch in several parts, each other part gets its own id (suffix: its hash) instead of
    being mistaken for the first part and silently dropped as "already sent".
    """
    digest = openids_hash(openids)
    rows = session.execute(
        select(WechatMassChunk.clientmsgid, WechatMassChunk.openids_hash).where(
            WechatMassChunk.campaign_id == campaign_id, WechatMassChunk.batch_no == batch_no
        )
    ).all()
    for clientmsgid, known in rows:
        if known == digest:
            return clientmsgid, digest
    base = f"dispatch-{campaign_id}-{batch_no}"
    if not any(clientmsgid == base for clientmsgid, _ in rows):
        return base, digest
    return f"{base}-{digest[:12]}", digest


@dataclass(frozen=True)
class ChunkOutcome:
    """What happened to one chunk: `sent` with its msg_id, or the error that stopped it."""

    clientmsgid: str
    msg_id: str | None
    error: WechatError | None = None
    already_sent: bool = False

    @property
    def sent(self) -> bool:
        return self.error is None


def _chunk(session: Session, clientmsgid: str, **fields: Any) -> WechatMassChunk:
    row = session.scalars(
        select(WechatMassChunk).where(WechatMassChunk.clientmsgid == clientmsgid)
    ).first()
    if row is not None:
        return row
    row = WechatMassChunk(clientmsgid=clientmsgid, event={}, **fields)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        row = session.scalars(
            select(WechatMassChunk).where(WechatMassChunk.clientmsgid == clientmsgid)
        ).one()
    return row


def send_chunk(
    session: Session,
    client: WechatClient,
    *,
    campaign_id: int,
    batch_no: int,
    clientmsgid: str,
    draft_media_id: str,
    mode: str,
    openids: Sequence[str] = (),
    tag_id: int | None = None,
    digest: str | None = None,
    ignore_reprint: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] = time.sleep,
) -> ChunkOutcome:
    """Send one chunk once: a chunk already marked sent is not asked for again."""
    row = _chunk(
        session,
        clientmsgid,
        campaign_id=campaign_id,
        batch_no=batch_no,
        account=client.account,
        mode=mode,
        draft_media_id=draft_media_id,
        recipient_count=len(openids),
        openids_hash=digest,
    )
    if row.status in ("sent", "finished") and row.msg_id:
        return ChunkOutcome(clientmsgid, row.msg_id, already_sent=True)
    row.attempts += 1
    row.status = "sending"
    session.commit()

    def call() -> dict[str, Any]:
        if mode == "tag":
            return client.mass_send_tag(
                tag_id, draft_media_id, clientmsgid, ignore_reprint=ignore_reprint
            )
        return client.mass_send_openids(
            list(openids), draft_media_id, clientmsgid, ignore_reprint=ignore_reprint
        )

    try:
        answer = call_with_retries(
            call, policy, sleep, log_context=f"campaign_id={campaign_id} batch_no={batch_no}"
        )
    except WechatError as err:
        return _after_error(session, row, err, campaign_id, batch_no)
    return _after_sent(session, row, answer, campaign_id, batch_no, len(openids))


def _after_error(
    session: Session, row: WechatMassChunk, err: WechatError, campaign_id: int, batch_no: int
) -> ChunkOutcome:
    """WeChat refused the chunk: "already sent" counts as sent; anything else is stored on
    the chunk as paused, failed or deferred."""
    clientmsgid = row.clientmsgid
    if err.action == "already_sent":
        msg_id = err.data.get("msg_id") or row.msg_id
        row.msg_id = str(msg_id) if msg_id is not None else None
        row.status = "sent"
        session.commit()
        log.info(
            "wechat.mass.already_sent campaign_id=%s batch_no=%s msg_id=%s",
            campaign_id,
            batch_no,
            row.msg_id,
        )
        return ChunkOutcome(clientmsgid, row.msg_id, already_sent=True)
    # the daily quota (45009) is "deferred" too: the same chunk goes out after the reset
    row.status = {"pause": "paused", "fail": "failed"}.get(err.action, "deferred")
    row.errcode, row.errmsg = err.errcode, err.errmsg
    session.commit()
    log.warning(
        "wechat.mass.error campaign_id=%s batch_no=%s code=%s action=%s errmsg=%r",
        campaign_id,
        batch_no,
        err.errcode,
        err.action,
        err.errmsg[:200],
    )
    return ChunkOutcome(clientmsgid, None, err)


def _after_sent(
    session: Session,
    row: WechatMassChunk,
    answer: dict[str, Any],
    campaign_id: int,
    batch_no: int,
    recipients: int,
) -> ChunkOutcome:
    """WeChat accepted the chunk: its msg_id is stored (the result event matches on it)."""
    row.msg_id = str(answer["msg_id"])
    row.msg_data_id = str(answer["msg_data_id"]) if answer.get("msg_data_id") is not None else None
    row.status = "sent"
    row.errcode, row.errmsg = None, None
    session.commit()
    log.info(
        "wechat.mass.sent campaign_id=%s batch_no=%s msg_id=%s openids=%s",
        campaign_id,
        batch_no,
        row.msg_id,
        recipients,
    )
    return ChunkOutcome(row.clientmsgid, row.msg_id)


def record_mass_result(
    row: WechatMassChunk,
    *,
    status: str,
    total: int | None,
    filtered: int | None,
    sent: int | None,
    errors: int | None,
    raw: dict[str, Any],
) -> None:
    """Store what WeChat reported for the chunk (event or poll)."""
    row.status = "finished"
    row.total_count, row.filter_count, row.sent_count, row.error_count = (
        total,
        filtered,
        sent,
        errors,
    )
    row.event = {**raw, "status": status}


def poll_mass_status(
    session: Session, client: WechatClient, campaign_id: int | None = None
) -> list[dict[str, Any]]:
    """Fallback to the MASSSENDJOBFINISH event: ask mass/get for chunks still `sent`.

    mass/get only tells the status (SEND_SUCCESS, SENDING, SEND_FAIL, DELETE), no counts;
    a chunk that WeChat finished is marked finished with that status.
    """
    query = select(WechatMassChunk).where(
        WechatMassChunk.status == "sent", WechatMassChunk.msg_id.is_not(None)
    )
    if campaign_id is not None:
        query = query.where(WechatMassChunk.campaign_id == campaign_id)
    report = []
    for row in session.scalars(query).all():
        answer = client.mass_get(str(row.msg_id))
        status = str(answer.get("msg_status", ""))
        if status in ("SEND_SUCCESS", "SEND_FAIL", "DELETE"):
            row.status = "finished"
            row.event = {**(row.event or {}), "polled": answer}
        report.append({"clientmsgid": row.clientmsgid, "msg_id": row.msg_id, "msg_status": status})
    session.commit()
    return report
