"""Campaign lifecycle: the one place that knows which state may follow which.

draft → scheduled → running ⇄ paused → finished, or cancelled, or failed. Every change goes
through `transition`, a conditional UPDATE (… WHERE status = <the state we saw>), so two
processes racing on one campaign (a worker pausing it on a policy refusal while the editor
cancels it) never both win. Used by the CLI and the web API alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from dispatch.channels import channel_traits, registered_channels
from dispatch.config import Settings
from dispatch.db import affected, analyze, analyze_if_stale
from dispatch.delivery.prepare import ask_workers_to_prepare
from dispatch.errors import DispatchError, ErrorKind
from dispatch.i18n import Catalog
from dispatch.log import get_logger
from dispatch.models import Campaign, Delivery, Issue, utcnow
from dispatch.vocabulary import (
    CAMPAIGN_FINAL,
    CAMPAIGN_TRANSITIONS,
    DELIVERY_CLAIMABLE,
    DELIVERY_DONE,
    DELIVERY_OPEN,
    CampaignStatus,
    DeliveryStatus,
    IssueStatus,
)

log = get_logger(__name__)

MESSAGES = Catalog(
    {
        "bad_transition": (
            "活动 {id}：不能从 {current!r} 变为 {wanted!r}（{current!r} 之后可以是：{allowed}）",
            "campaign {id}: cannot go from {current!r} to {wanted!r} (allowed from {current!r}: "
            "{allowed})",
        ),
        "not_found": ("活动 {id} 不存在", "campaign {id} not found"),
        "retry_not_finished": (
            "活动 {id} 状态为 {status}：只有已完成的活动可以重试失败的收件人",
            "campaign {id} is {status}: only a finished campaign can retry its failed recipients",
        ),
        "no_issue": ("期刊 {id} 不存在", "issue {id} not found"),
        "not_published": (
            "期刊 {slug!r} 尚未发布（状态 {status!r}）",
            "issue {slug!r} is not published (status {status!r})",
        ),
        "bad_channel": (
            "未知渠道 {channel!r}（可用：{known}）",
            "unknown channel {channel!r} (expected one of {known})",
        ),
        "no_lists": ("活动至少需要一个列表", "a campaign needs at least one list"),
        "no_recipients": (
            "活动 {id} 没有可送达的收件人（{channel}）：请先向列表添加订阅者；活动仍为草稿，"
            "之后可再发送",
            "campaign {id} has nobody to reach on {channel}: add subscribers to its lists first; "
            "it stays a draft and can be sent later",
        ),
        "cannot_include_new": (
            "活动 {id}（{status}）不能补发新加入的人：只有已开始的正式活动可以",
            "campaign {id} ({status}) cannot include new people: only a started, non-test "
            "campaign can",
        ),
        "no_addresses": ("测试发送至少需要一个地址", "a test send needs at least one address"),
        "no_valid_address": (
            "测试发送没有可用的地址：{rejected}",
            "no usable address for the test send: {rejected}",
        ),
        "naive_time": (
            "定时时间需要时区（例如 2026-03-01T09:00+08:00）",
            "the scheduled time needs a timezone (e.g. 2026-03-01T09:00+08:00)",
        ),
    }
)

TRANSITIONS = CAMPAIGN_TRANSITIONS  # the table lives in dispatch.vocabulary
# a fan-out of this many batches or more analyses deliveries afterwards (PostgreSQL): the
# statistics then know the campaign's rows (10 batches of 200: 2,000 deliveries)
ANALYZE_AFTER_BATCHES = 10


class CampaignError(DispatchError):
    """A campaign request that cannot be done; the message says which campaign and why."""

    kind = ErrorKind.CONFLICT  # most refusals depend on stored state (status, issue)


class NoRecipients(CampaignError):
    """Starting would reach nobody: refused, so the campaign stays a draft and can start once
    its lists have people (a campaign "finished" with 0 would block that send for good)."""

    kind = ErrorKind.INVALID


class InvalidTransition(CampaignError):
    def __init__(self, campaign_id: int, current: str, wanted: str):
        current, wanted = str(current), str(wanted)  # plain strings in the message
        allowed = ", ".join(sorted(TRANSITIONS.get(CampaignStatus(current), ()))) or "-"
        super().__init__(
            MESSAGES.both(
                "bad_transition", id=campaign_id, current=current, wanted=wanted, allowed=allowed
            )
        )
        self.campaign_id, self.current, self.wanted = campaign_id, current, wanted


def check_transition(campaign_id: int, current: str, wanted: str) -> None:
    if wanted not in TRANSITIONS.get(CampaignStatus(current), frozenset()):
        raise InvalidTransition(campaign_id, current, wanted)


def transition(
    session: Session,
    campaign: Campaign,
    wanted: str,
    *,
    reason: str | None = None,
    now: datetime | None = None,
) -> Campaign:
    """Move `campaign` to `wanted` if allowed and nobody changed it meanwhile; else raise."""
    now = now or utcnow()
    current = campaign.status
    check_transition(campaign.id, current, wanted)
    wanted = CampaignStatus(wanted)
    values: dict[str, Any] = {"status": wanted.value, "updated_at": now}
    if wanted == CampaignStatus.RUNNING and campaign.started_at is None:
        values["started_at"] = now
    if wanted == CampaignStatus.RUNNING:
        values["paused_reason"] = None
    stopping = (CampaignStatus.PAUSED, CampaignStatus.FAILED, CampaignStatus.CANCELLED)
    if wanted in stopping and reason:
        values["paused_reason"] = reason[:2000]
    if wanted in CAMPAIGN_FINAL:
        values["finished_at"] = now
    result = session.execute(
        update(Campaign.__table__)
        .where(Campaign.__table__.c.id == campaign.id, Campaign.__table__.c.status == current)
        .values(**values)
    )
    if affected(result) != 1:
        session.refresh(campaign)
        raise InvalidTransition(campaign.id, campaign.status, wanted)
    for key, value in values.items():  # mirror the UPDATE without marking the object dirty
        set_committed_value(campaign, key, value)
    log.info(
        "campaign.transition",
        campaign_id=campaign.id,
        from_status=current,
        to_status=wanted.value,
        reason=reason,
    )
    return campaign


def _check_channel(channel: str) -> None:
    """An issue goes out on a registered channel; the confirmation channel sends no issue
    (an import's confirmations, dispatch.subscribers.import_confirmations)."""
    known = tuple(c for c in registered_channels() if c != "confirmation")
    if channel not in known:
        raise CampaignError(MESSAGES.both("bad_channel", channel=channel, known=", ".join(known)))


def dedupe_key(issue_id: int, channel: str, list_ids: Iterable[int]) -> str:
    return f"{issue_id}:{channel}:{','.join(str(i) for i in sorted(set(list_ids)))}"


def get(session: Session, campaign_id: int, *, for_update: bool = False) -> Campaign:
    stmt = select(Campaign).where(Campaign.id == campaign_id)
    if for_update:
        stmt = stmt.with_for_update()
    campaign = session.scalars(stmt).one_or_none()
    if campaign is None:
        raise CampaignError(MESSAGES.both("not_found", id=campaign_id), kind=ErrorKind.NOT_FOUND)
    return campaign


def _check_issue(session: Session, issue_id: int) -> Issue:
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise CampaignError(MESSAGES.both("no_issue", id=issue_id), kind=ErrorKind.NOT_FOUND)
    if issue.status != IssueStatus.PUBLISHED:
        raise CampaignError(MESSAGES.both("not_published", slug=issue.slug, status=issue.status))
    return issue


def _check_channel_options(
    channel: str, options: dict[str, Any] | None, settings: Settings | None
) -> None:
    """The channel refuses what it cannot send (e.g. a mode the WeChat account type lacks)."""
    from dispatch.channels import check_campaign
    from dispatch.config import get_settings

    try:
        check_campaign(channel, settings or get_settings(), options)
    except ValueError as exc:
        raise CampaignError(str(exc)) from None


def create_or_get(
    session: Session,
    *,
    issue_id: int,
    channel: str,
    list_ids: Iterable[int],
    tracking: bool = True,
    options: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> tuple[Campaign, bool]:
    """The campaign for issue × channel × lists: created as a draft, or the existing one.

    Returns (campaign, created). Triggering the same send twice therefore finds the first
    campaign and, since it is no longer a draft, sends nothing more.
    """
    _check_channel(channel)
    ids = sorted(set(int(i) for i in list_ids))
    if not ids:
        raise CampaignError(MESSAGES.both("no_lists"))
    _check_issue(session, issue_id)
    _check_channel_options(channel, options, settings)
    key = dedupe_key(issue_id, channel, ids)
    existing = session.scalars(select(Campaign).where(Campaign.dedupe_key == key)).one_or_none()
    if existing is not None:
        return existing, False
    campaign = Campaign(
        issue_id=issue_id,
        channel=channel,
        list_ids=ids,
        dedupe_key=key,
        status=CampaignStatus.DRAFT.value,
        is_test=False,
        tracking=tracking,
        options=dict(options or {}),
    )
    try:
        with session.begin_nested():
            session.add(campaign)
    except IntegrityError:  # another process created it between our look and our insert
        existing = session.scalars(select(Campaign).where(Campaign.dedupe_key == key)).one()
        return existing, False
    log.info(
        "campaign.created",
        campaign_id=campaign.id,
        issue_id=issue_id,
        channel=channel,
        list_ids=ids,
    )
    return campaign, True


def create_test(
    session: Session,
    *,
    issue_id: int,
    channel: str,
    subscriber_ids: Iterable[int],
    tracking: bool = True,
    options: dict[str, Any] | None = None,
) -> Campaign:
    """A test send: its own campaign (never deduplicated) to the given subscribers only."""
    import uuid

    _check_channel(channel)
    ids = sorted(set(int(i) for i in subscriber_ids))
    if not ids:
        raise CampaignError(MESSAGES.both("no_addresses"))
    _check_issue(session, issue_id)  # no channel check: a test send (a preview) is always allowed
    campaign = Campaign(
        issue_id=issue_id,
        channel=channel,
        list_ids=[],
        dedupe_key=f"test:{issue_id}:{channel}:{uuid.uuid4().hex}",
        status=CampaignStatus.DRAFT.value,
        is_test=True,
        tracking=tracking,
        options={**(options or {}), "test_subscriber_ids": ids},
    )
    session.add(campaign)
    session.flush()
    log.info(
        "campaign.created",
        campaign_id=campaign.id,
        issue_id=issue_id,
        channel=channel,
        is_test=True,
    )
    return campaign


def create_test_send(
    session: Session,
    *,
    issue_id: int,
    channel: str,
    addresses: Iterable[str],
    tracking: bool = True,
    options: dict[str, Any] | None = None,
) -> Campaign:
    """A test send to these addresses (emails, or openids for WeChat): each is found among the
    subscribers or added (on no list), then `create_test`.

    One bad address does not spoil the test: it goes to the valid ones, and the rejected ones
    are kept with their reason in `options["rejected_addresses"]` for the page to name.
    Only when no address is usable is the whole test refused (naming each)."""
    from dispatch.subscribers import service as subscribers
    from dispatch.subscribers.addresses import InvalidEmail, check_email

    _check_channel(channel)
    ids: list[int] = []
    rejected: list[dict[str, str]] = []
    for raw in addresses:
        address = raw.strip()
        try:
            field = channel_traits(channel).address
            if field == "email":
                check_email(address)
            key: dict[str, Any] = {field: address}
            found = subscribers.find_subscriber(session, **key)
            if found is None:
                with session.begin_nested():
                    found = subscribers.add_subscriber(session, **key, name="")
        except (InvalidEmail, subscribers.SubscriberError) as exc:
            rejected.append({"address": address, "reason": str(exc).splitlines()[0]})
            continue
        if found.id not in ids:
            ids.append(found.id)
    if not ids and rejected:
        named = "; ".join(f"{r['address']} ({r['reason']})" for r in rejected)
        raise CampaignError(MESSAGES.both("no_valid_address", rejected=named))
    options = dict(options or {})
    if rejected:
        options["rejected_addresses"] = rejected
    return create_test(
        session,
        issue_id=issue_id,
        channel=channel,
        subscriber_ids=ids,
        tracking=tracking,
        options=options,
    )


def check_release(session: Session, settings: Settings, campaign: Campaign) -> None:
    """A campaign to real lists sends only an approved issue (dispatch.editorial.guard);
    test sends and an import's confirmation emails are not reviewed."""
    if campaign.is_test or campaign.issue_id is None:
        return
    from dispatch.editorial.guard import check_sendable

    check_sendable(session, settings, campaign.issue_id)


def _locked_releasable(session: Session, settings: Settings, campaign_id: int) -> Campaign:
    """The campaign, row-locked, whose issue may be sent now (check_release)."""
    campaign = get(session, campaign_id, for_update=True)
    check_release(session, settings, campaign)
    return campaign


def schedule(
    session: Session, campaign_id: int, at: datetime, *, settings: Settings | None = None
) -> Campaign:
    """Start at `at` (the beat sweep starts due campaigns, so this survives worker restarts).
    Refused for an issue not approved now (the sweep checks again when it starts it)."""
    if at.tzinfo is None:
        raise CampaignError(MESSAGES.both("naive_time"))
    from dispatch.config import get_settings
    from dispatch.delivery.fanout import recipient_count

    campaign = get(session, campaign_id)
    check_release(session, settings or get_settings(), campaign)
    if not recipient_count(session, campaign):
        raise NoRecipients(
            MESSAGES.both("no_recipients", id=campaign_id, channel=str(campaign.channel))
        )
    if campaign.status != CampaignStatus.SCHEDULED:
        transition(session, campaign, CampaignStatus.SCHEDULED)
    campaign.scheduled_at = at
    session.flush()
    log.info("campaign.scheduled", campaign_id=campaign_id, at=at.isoformat())
    return campaign


def begin_running(
    session: Session, settings: Settings, campaign_id: int, now: datetime | None = None
) -> list[int]:
    """draft|scheduled → running and fan out, in the caller's transaction. Returns the batch
    numbers to enqueue once that transaction commits."""
    from dispatch.delivery.fanout import fan_out

    now = now or utcnow()
    campaign = get(session, campaign_id, for_update=True)
    transition(session, campaign, CampaignStatus.RUNNING, now=now)
    check_release(session, settings, campaign)
    total, batches = fan_out(session, settings, campaign, now=now)
    if not total:  # the caller's transaction rolls back: the campaign stays as it was
        raise NoRecipients(
            MESSAGES.both("no_recipients", id=campaign_id, channel=str(campaign.channel))
        )
    session.execute(
        update(Campaign.__table__)
        .where(Campaign.__table__.c.id == campaign_id)
        .values(total=total, batch_count=len(batches))
    )
    campaign.total, campaign.batch_count = total, len(batches)
    log.info("campaign.started", campaign_id=campaign_id, deliveries=total, batches=len(batches))
    return batches


def start(
    engine: Engine, settings: Settings, campaign_id: int, queue, now: datetime | None = None
) -> list[int]:
    """Start now: fan out in one transaction, then enqueue every batch. Idle workers render
    the issue meanwhile (delivery.prepare: asked first, so it overlaps the fan-out)."""
    ask_workers_to_prepare(engine, settings, campaign_id, queue)
    # the fan-out reads the whole list: plan it on statistics that know the list (a hash join,
    # not a nested loop per person as on never-analysed tables after a big import)
    analyze_if_stale(engine, "subscribers", "subscriptions", "suppressions")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        batches = begin_running(session, settings, campaign_id, now=now)
    if len(batches) >= ANALYZE_AFTER_BATCHES:  # a big fan-out: fresh statistics before sending
        analyze(engine, "deliveries")
    for batch_no in batches:
        queue.enqueue(campaign_id, batch_no)
    return batches


def include_new(
    engine: Engine, settings: Settings, campaign_id: int, queue, now: datetime | None = None
) -> tuple[int, list[int]]:
    """Reach the people who joined the campaign's lists after it started ("send to those not
    yet reached"): new deliveries for them only, so nobody already in it gets it twice. A
    finished campaign runs again for them. Returns (people added, batches enqueued)."""
    from dispatch.delivery.fanout import fan_out

    now = now or utcnow()
    with Session(engine, expire_on_commit=False) as session, session.begin():
        campaign = _locked_releasable(session, settings, campaign_id)
        if campaign.is_test or campaign.status not in (
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
            CampaignStatus.FINISHED,
        ):
            raise CampaignError(
                MESSAGES.both("cannot_include_new", id=campaign_id, status=str(campaign.status))
            )
        added, batches = fan_out(session, settings, campaign, now=now, only_new=True)
        if not added:
            return 0, []
        if campaign.status == CampaignStatus.FINISHED:
            # like "retry failed", a guarded way out of "finished" (start still refuses it)
            reopened = affected(
                session.execute(
                    update(Campaign.__table__)
                    .where(
                        Campaign.__table__.c.id == campaign_id,
                        Campaign.__table__.c.status == CampaignStatus.FINISHED,
                    )
                    .values(status=CampaignStatus.RUNNING.value, updated_at=now)
                )
            )
            if reopened != 1:
                raise InvalidTransition(campaign_id, campaign.status, CampaignStatus.RUNNING)
            log.info(
                "campaign.transition",
                campaign_id=campaign_id,
                from_status="finished",
                to_status="running",
                reason="include new",
            )
            set_committed_value(campaign, "status", CampaignStatus.RUNNING.value)
        total, count = session.execute(
            select(func.count(), func.count(func.distinct(Delivery.batch_no))).where(
                Delivery.campaign_id == campaign_id
            )
        ).one()
        session.execute(
            update(Campaign.__table__)
            .where(Campaign.__table__.c.id == campaign_id)
            .values(total=total, batch_count=count, finished_at=None)
        )
        running = campaign.status == CampaignStatus.RUNNING
    log.info("campaign.included_new", campaign_id=campaign_id, added=added, batches=len(batches))
    if running:  # a paused campaign sends them when resumed
        for batch_no in batches:
            queue.enqueue(campaign_id, batch_no)
    return added, batches


def pause(session: Session, campaign_id: int, reason: str = "paused by operator") -> Campaign:
    """Stop claiming; batches in flight stop at their next chunk and give rows back."""
    campaign = get(session, campaign_id)
    return transition(session, campaign, CampaignStatus.PAUSED, reason=reason)


def open_batches(session: Session, campaign_id: int) -> list[int]:
    rows = session.execute(
        select(Delivery.batch_no)
        .where(Delivery.campaign_id == campaign_id, Delivery.status.in_(DELIVERY_CLAIMABLE))
        .distinct()
        .order_by(Delivery.batch_no)
    )
    return [r[0] for r in rows]


def resume(engine: Engine, settings: Settings, campaign_id: int, queue) -> list[int]:
    """paused → running and enqueue every batch that still has work (idle workers render the
    issue meanwhile, as for `start`)."""
    ask_workers_to_prepare(engine, settings, campaign_id, queue)
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session, session.begin():
        campaign = get(session, campaign_id, for_update=True)
        transition(session, campaign, CampaignStatus.RUNNING, now=now)
        check_release(session, settings, campaign)  # changed while paused: approve it again
        # the reputation guard starts a fresh window: what paused it does not pause it again
        campaign.options = {**(campaign.options or {}), "reputation_since": now.isoformat()}
        batches = open_batches(session, campaign_id)
        session.execute(
            update(Delivery.__table__)
            .where(
                Delivery.__table__.c.campaign_id == campaign_id,
                Delivery.__table__.c.status.in_(DELIVERY_CLAIMABLE),
            )
            .values(lease_until=now + timedelta(seconds=settings.lease_seconds))
        )
    for batch_no in batches:
        queue.enqueue(campaign_id, batch_no)
    with Session(engine) as session, session.begin():
        finish_if_done(session, campaign_id)
    return batches


def cancel(session: Session, campaign_id: int, reason: str = "cancelled by operator") -> Campaign:
    """Stop for good: rows not yet sent stay pending (never sent); in-flight chunks finish."""
    campaign = get(session, campaign_id)
    return transition(session, campaign, CampaignStatus.CANCELLED, reason=reason)


def finish_if_done(session: Session, campaign_id: int, now: datetime | None = None) -> bool:
    """running → finished when no delivery is left to send (atomic: one conditional UPDATE)."""
    now = now or utcnow()
    c, d = Campaign.__table__.c, Delivery.__table__
    still_open = (
        select(d.c.id)
        .where(d.c.campaign_id == campaign_id, d.c.status.in_(DELIVERY_OPEN))
        .limit(1)
        .exists()
    )
    result = session.execute(
        update(Campaign.__table__)
        .where(c.id == campaign_id, c.status == CampaignStatus.RUNNING, ~still_open)
        .values(status=CampaignStatus.FINISHED.value, finished_at=now, updated_at=now)
    )
    if affected(result):
        log.info("campaign.finished", campaign_id=campaign_id)
    return bool(affected(result))


def counts(session: Session, campaign_id: int) -> dict[str, int]:
    out = {status.value: 0 for status in DeliveryStatus}
    rows = session.execute(
        select(Delivery.status, func.count())
        .where(Delivery.campaign_id == campaign_id)
        .group_by(Delivery.status)
    )
    for status, n in rows:
        out[status] = int(n)
    return out


def send_rate(
    session: Session,
    campaign: Campaign,
    *,
    window_seconds: float = 60.0,
    now: datetime | None = None,
) -> float:
    """Messages per second, counted from the first send (never from when it was queued: a
    campaign waiting for a worker is not slow). While running: over the last `window_seconds`
    (or since the first send, if later); afterwards: the average from first to last send."""
    now = now or utcnow()
    sent = Delivery.campaign_id == campaign.id, Delivery.status == DeliveryStatus.SENT
    first, last, n = session.execute(
        select(func.min(Delivery.sent_at), func.max(Delivery.sent_at), func.count()).where(*sent)
    ).one()
    if not n or first is None or last is None:
        return 0.0
    if campaign.status != CampaignStatus.RUNNING:
        return round(n / max((last - first).total_seconds(), 1.0), 2)
    since = max(now - timedelta(seconds=window_seconds), first)
    recent = session.scalar(select(func.count()).where(*sent, Delivery.sent_at >= since)) or 0
    return round(recent / max((now - since).total_seconds(), 1.0), 2)


def progress(session: Session, campaign_id: int, *, window_seconds: float = 60.0) -> dict[str, Any]:
    """Counts by status, done fraction, the send rate (messages per second, `send_rate`) and
    the issue's and lists' names beside their ids (people read names)."""
    from dispatch.models.subscriber import MailingList

    campaign = get(session, campaign_id)
    by_status = counts(session, campaign_id)
    total = sum(by_status.values())
    done = sum(by_status[s] for s in DELIVERY_DONE)
    # a confirmation campaign (an import's opt-in emails) sends no issue
    issue = session.get(Issue, campaign.issue_id) if campaign.issue_id is not None else None
    list_ids = list(campaign.list_ids)
    slugs = dict(
        session.execute(
            select(MailingList.id, MailingList.slug).where(MailingList.id.in_(list_ids))
        )
        .tuples()
        .all()
    )
    return {
        "id": campaign.id,
        "issue_id": campaign.issue_id,
        "issue_slug": issue.slug if issue else None,
        "issue_title": issue.title if issue else None,
        "kind": "confirmation" if campaign.channel == "confirmation" else "issue",
        "channel": campaign.channel,
        "list_ids": list_ids,
        "list_slugs": [slugs.get(i, f"#{i}") for i in list_ids],
        "status": campaign.status,
        "is_test": campaign.is_test,
        "tracking": campaign.tracking,
        "paused_reason": campaign.paused_reason,
        # running but held back (quota, sending window, warm-up, relays down) and until when
        "waiting_reason": campaign.waiting_reason,
        "waiting_until": campaign.waiting_until,
        "scheduled_at": campaign.scheduled_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "total": total,
        "done": done,
        "counts": by_status,
        "rate_per_second": send_rate(session, campaign, window_seconds=window_seconds),
        "after_send": _after_send(session, campaign),
        "reach": reach(session, campaign),
        "providers": _providers(session, campaign),
    }


def _providers(session: Session, campaign: Campaign) -> list[dict[str, Any]]:
    """Per receiving provider: sent / deferred / bounced and its throttle state (email)."""
    from dispatch.config import get_settings
    from dispatch.delivery.provider_progress import provider_progress

    try:
        settings = get_settings()
    except Exception:  # noqa: BLE001 - counts without throttle state
        settings = None
    return provider_progress(session, settings, campaign.id)


def _after_send(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Bounces and complaints that came back after the send, with their rates over sent."""
    from dispatch.bounces.record import campaign_bounce_rates

    return campaign_bounce_rates(session, campaign)


def reach(session: Session, campaign: Campaign) -> dict[str, Any] | None:
    """For one campaign of a send on several channels (options["channels"]): the campaigns of
    that send, the messages sent and the people reached (a person counted once however many
    channels reached them). None for a single-channel campaign."""
    group = sorted((campaign.options or {}).get("channels") or [])
    if len(group) < 2:
        return None
    siblings = [
        c.id
        for c in session.scalars(
            select(Campaign).where(Campaign.issue_id == campaign.issue_id, ~Campaign.is_test)
        )
        if sorted((c.options or {}).get("channels") or []) == group
        and sorted(c.list_ids or []) == sorted(campaign.list_ids or [])
    ]
    sent = (Delivery.campaign_id.in_(siblings), Delivery.status == "sent")
    messages = session.scalar(select(func.count()).where(*sent)) or 0
    people = session.scalar(select(func.count(func.distinct(Delivery.subscriber_id))).where(*sent))
    return {"campaign_ids": sorted(siblings), "messages": messages, "people": people or 0}


def list_campaigns(session: Session, limit: int = 50) -> list[Campaign]:
    return list(session.scalars(select(Campaign).order_by(Campaign.id.desc()).limit(limit)))


_RETRY_STATUSES = ("failed", "deferred")


def retry_failed(engine: Engine, settings: Settings, campaign_id: int, queue) -> dict[str, Any]:
    """finished → running again for its failed and deferred recipients only.

    Delivered (sent), bounced and skipped rows are never touched, so nobody who got the issue
    gets it twice; a failed recipient whose address has been suppressed since is skipped, not
    retried. Each retried row starts with fresh attempts; its batch number is kept.
    """
    now = utcnow()
    with Session(engine, expire_on_commit=False) as session, session.begin():
        campaign = get(session, campaign_id, for_update=True)
        if campaign.status != "finished":
            raise CampaignError(
                MESSAGES.both("retry_not_finished", id=campaign_id, status=campaign.status),
                kind=ErrorKind.CONFLICT,
            )
        skipped = _skip_suppressed_failures(session, campaign_id, now)
        retried = _reset_failures(session, settings, campaign_id, now)
        batches = open_batches(session, campaign_id)
        if retried:
            _reopen_finished(session, campaign, now)
    for batch_no in batches if retried else []:
        queue.enqueue(campaign_id, batch_no)
    log.info("campaign.retry_failed", campaign_id=campaign_id, retried=retried, skipped=skipped)
    return {"campaign_id": campaign_id, "retried": retried, "skipped": skipped, "batches": batches}


def _skip_suppressed_failures(session: Session, campaign_id: int, now: datetime) -> int:
    """Failed/deferred rows whose address is suppressed now become skipped; returns how many."""
    from dispatch.models.subscriber import Subscriber, Suppression

    d = Delivery.__table__
    # the mailbox in any spelling (canonical key of the recipient), or the exact address
    suppressed = or_(
        select(Suppression.id)
        .join(Subscriber, Subscriber.email_key == Suppression.email_key)
        .where(Subscriber.id == d.c.subscriber_id)
        .exists(),
        select(Suppression.id).where(Suppression.email == d.c.email).exists(),
    )
    return affected(
        session.execute(
            update(d)
            .where(d.c.campaign_id == campaign_id, d.c.status.in_(_RETRY_STATUSES), suppressed)
            .values(status="skipped", updated_at=now)
        )
    )


def _reset_failures(session: Session, settings: Settings, campaign_id: int, now: datetime) -> int:
    """The remaining failed/deferred rows are pending again with fresh attempts."""
    d = Delivery.__table__
    return affected(
        session.execute(
            update(d)
            .where(d.c.campaign_id == campaign_id, d.c.status.in_(_RETRY_STATUSES))
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=None,
                claimed_by=None,
                lease_until=now + timedelta(seconds=settings.lease_seconds),
                updated_at=now,
            )
        )
    )


def _reopen_finished(session: Session, campaign: Campaign, now: datetime) -> None:
    """The one way out of "finished": guarded by the status it had."""
    campaign_id = campaign.id
    reopened = affected(
        session.execute(
            update(Campaign.__table__)
            .where(
                Campaign.__table__.c.id == campaign_id,
                Campaign.__table__.c.status == "finished",
            )
            .values(status="running", finished_at=None, paused_reason=None, updated_at=now)
        )
    )
    if reopened != 1:
        raise InvalidTransition(campaign_id, campaign.status, "running")
    log.info(
        "campaign.transition",
        campaign_id=campaign_id,
        from_status="finished",
        to_status="running",
        reason="retry failed",
    )
