"""Shared helpers for the delivery tests (no tests here): sample data and a scripted channel.

ScriptedChannel stands in for the peer (SMTP server / WeChat API) in unit tests of the
engine's state logic; the end-to-end tests use the real SMTP channel and server instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import date

from sqlalchemy.orm import Session

from dispatch.channels.base import CampaignContext, Recipient, SendResult
from dispatch.config import Settings
from dispatch.models import Issue
from dispatch.subscribers import service as subscribers

Script = Callable[[Recipient, int], SendResult]  # (recipient, nth time this address is seen)


def make_issue(session: Session, slug: str = "2023-02") -> Issue:
    issue = Issue(
        slug=slug,
        title="工作简报",
        number=2,
        period_from=date(2023, 2, 1),
        period_to=date(2023, 2, 28),
        publisher="测试",
        locale="zh-CN",
        status="published",
        source_path="/nonexistent",
        source_text="",
        content_hash="x" * 64,
        summary={},
    )
    session.add(issue)
    session.flush()
    return issue


def make_list_with(session: Session, slug: str, emails: Sequence[str]) -> int:
    try:
        mailing_list = subscribers.get_list(session, slug)
    except subscribers.SubscriberError:
        mailing_list = subscribers.create_list(session, slug, slug.title())
    for email in emails:
        sub = subscribers.find_subscriber(session, email=email) or subscribers.add_subscriber(
            session, email=email, name=email.split("@")[0]
        )
        subscribers.subscribe(session, sub, mailing_list, send_confirmation=False)
    session.flush()
    return mailing_list.id


class ScriptedChannel:
    """Records every recipient it is asked to send to; `script` decides each outcome."""

    name = "email"

    def __init__(self, log: list, script: Script | None = None, lock: threading.Lock | None = None):
        self.log = log
        self.script = script
        self.lock = lock or threading.Lock()
        self.opened = 0

    def open(self) -> None:
        self.opened += 1

    def send(self, batch: Sequence[Recipient]) -> list[SendResult]:
        out = []
        for r in batch:
            with self.lock:
                seen = sum(1 for x in self.log if x.email == r.email)
                self.log.append(r)
            if self.script is None:
                out.append(
                    SendResult(
                        r.delivery_id, "sent", 250, "ok", message_id=f"<{r.delivery_id}@test>"
                    )
                )
            else:
                out.append(self.script(r, seen))
        return out

    def close(self) -> None:
        pass


def channel_factory(log: list, script: Script | None = None):
    lock = threading.Lock()

    def factory(kind: str, settings: Settings, context: CampaignContext) -> ScriptedChannel:
        return ScriptedChannel(log, script, lock)

    return factory


def send_sample_campaign(
    session: Session, engine, settings: Settings, slug: str, emails: Sequence[str], **options
) -> int:
    """The sample issue published, a list `slug` of `emails`, a campaign to it (options such
    as tracking) started and drained in this process; the campaign's id."""
    from dispatch.content.store import publish_source
    from dispatch.delivery import campaigns
    from dispatch.delivery.engine import drain
    from dispatch.delivery.queue import ListQueue
    from dispatch.paths import PROJECT_ROOT

    issue = publish_source(session, PROJECT_ROOT / "examples" / "2023-02")
    list_id = make_list_with(session, slug, emails)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[list_id], **options
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(engine, settings, campaign.id, queue)
    drain(engine, settings, queue)
    return campaign.id
