"""Before a send to real lists: is the domain ready (doctor) and does the list look healthy?

Why here and not in the campaign service: the checks ask DNS and read whole lists, and their
answer is advice for the person pressing "send" (a warning, or a refusal when the operator
asked for one with `doctor_enforce`), not a rule of the campaign state machine. The CLI and
the web call `preflight` with the same arguments and show the same words.

A send does not ask DNS itself: it reads the report `dispatch doctor` (or the deliverability
page) saved last, and says so when there is none or it is older than a day. Only sends through
a relay are judged: with the local outbox nothing reaches a real mailbox, so there is no
reputation to protect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.i18n import Catalog

# Addresses that reach a function or a group rather than a person who subscribed: they do not
# opt in, they complain or bounce, and spam traps hide among them (RFC 2142 names several).
ROLE_LOCALPARTS = frozenset(
    {
        "abuse", "admin", "administrator", "all", "billing", "contact", "donotreply",
        "do-not-reply", "everyone", "help", "hostmaster", "hr", "info", "list", "mail",
        "mailer-daemon", "marketing", "no-reply", "noc", "noreply", "office", "postmaster",
        "root", "sales", "security", "service", "staff", "support", "webmaster",
    }
)  # fmt: skip
STALE_AFTER = timedelta(days=1)
MIN_LIST_SAMPLE = 20  # fewer members than this: no verdict on a list's hygiene

MESSAGES = Catalog(
    {
        "doctor_failed": (
            "发信域名检查（dispatch doctor）有失败项：{failures}",
            "the sending domain check (dispatch doctor) has failures: {failures}",
        ),
        "doctor_refused": (
            "已拒绝发送：doctor_enforce 已开启且域名检查有失败项；先修复或运行 dispatch doctor "
            "查看",
            "send refused: doctor_enforce is on and the domain check has failures; fix them (see "
            "dispatch doctor)",
        ),
        "risky_import": (
            "列表 {slug!r} 最近一次导入（{file}）：{rows} 行中 {invalid} 个无效地址、{role} "
            "个角色地址"
            "（如 {examples}），占 {share}，超过 {limit}；这份名单可能过时",
            "list {slug!r}, last import ({file}): {invalid} invalid and {role} role addresses "
            "(e.g. {examples}) in {rows} rows, {share}, over {limit}; the list may be stale",
        ),
        "never_checked": (
            "发信域名尚未检查：先运行 dispatch doctor（或打开送达率页面）",
            "the sending domain has not been checked: run dispatch doctor (or open the "
            "deliverability page) first",
        ),
        "stale": (
            "域名检查结果已是 {hours} 小时前的：重新运行 dispatch doctor",
            "the domain check is {hours} hours old: run dispatch doctor again",
        ),
        "risky_list": (
            "列表 {slug!r}：{members} 个地址中 {risky} 个（{share}）是角色地址（如 {examples}）"
            "或已退信，"
            "超过 {limit}；发送前请清理",
            "list {slug!r}: {risky} of {members} addresses ({share}) are role addresses (e.g. "
            "{examples}) "
            "or bounced before, over {limit}; clean it before sending",
        ),
    }
)


@dataclass
class ListHealth:
    list_id: int
    slug: str
    members: int
    role: int
    bounced: int
    examples: list[str] = field(default_factory=list)

    @property
    def risky(self) -> int:
        return self.role + self.bounced

    @property
    def share(self) -> float:
        return self.risky / self.members if self.members else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "list_id": self.list_id,
            "slug": self.slug,
            "members": self.members,
            "role": self.role,
            "bounced": self.bounced,
            "share": round(self.share, 4),
            "examples": self.examples,
        }


@dataclass
class Preflight:
    warnings: list[str] = field(default_factory=list)  # "中文 / English" lines
    refused: str | None = None  # why the send must not start (doctor_enforce)
    doctor: dict[str, Any] | None = None  # the last saved doctor report
    lists: list[ListHealth] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "warnings": self.warnings,
            "refused": self.refused,
            "doctor": self.doctor,
            "lists": [h.as_dict() for h in self.lists],
        }


def is_role_address(email: str) -> bool:
    local = email.rpartition("@")[0].lower().split("+", 1)[0]
    return local in ROLE_LOCALPARTS


def list_health(session: Session, list_ids: list[int]) -> list[ListHealth]:
    """Members of each list by email, with role addresses and earlier hard bounces counted."""
    from dispatch.models.subscriber import MailingList, Subscriber, Subscription, Suppression

    out: list[ListHealth] = []
    for mailing_list in session.scalars(select(MailingList).where(MailingList.id.in_(list_ids))):
        rows = session.execute(
            select(Subscriber.email, Suppression.reason)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .outerjoin(Suppression, Suppression.email_key == Subscriber.email_key)
            .where(
                and_(
                    Subscription.list_id == mailing_list.id,
                    Subscription.status == "confirmed",
                    Subscriber.email.is_not(None),
                )
            )
        ).all()
        role = [email for email, _ in rows if is_role_address(email)]
        bounced = sum(
            1 for email, reason in rows if reason == "bounced" and not is_role_address(email)
        )
        out.append(
            ListHealth(mailing_list.id, mailing_list.slug, len(rows), len(role), bounced, role[:3])
        )
    return out


def preflight(
    session: Session, settings: Settings, *, channel: str, list_ids: list[int]
) -> Preflight:
    """Warnings (and a refusal when `doctor_enforce`) for a send of `channel` to these lists."""
    result = Preflight()
    if channel != "email":
        return result
    from dispatch.models.subscriber import MailingList

    for mailing_list in session.scalars(select(MailingList).where(MailingList.id.in_(list_ids))):
        stats = mailing_list.import_stats or {}
        rows = int(stats.get("rows") or 0)
        bad = int(stats.get("invalid") or 0) + int(stats.get("role") or 0)
        if rows >= MIN_LIST_SAMPLE and bad / rows > settings.list_max_risky_share:
            result.warnings.append(
                MESSAGES.both(
                    "risky_import",
                    slug=mailing_list.slug,
                    file=stats.get("file", "?"),
                    rows=rows,
                    invalid=stats.get("invalid", 0),
                    role=stats.get("role", 0),
                    examples=", ".join(stats.get("role_examples") or []) or "-",
                    share=f"{bad / rows:.1%}",
                    limit=f"{settings.list_max_risky_share:.0%}",
                )
            )
    for health in list_health(session, list_ids):
        result.lists.append(health)
        if health.members >= MIN_LIST_SAMPLE and health.share > settings.list_max_risky_share:
            result.warnings.append(
                MESSAGES.both(
                    "risky_list",
                    slug=health.slug,
                    members=health.members,
                    risky=health.risky,
                    share=f"{health.share:.1%}",
                    examples=", ".join(health.examples) or "-",
                    limit=f"{settings.list_max_risky_share:.0%}",
                )
            )
    if not settings.smtp_url:
        return result
    from dispatch.deliverability.doctor import load_report

    report = load_report(settings)
    result.doctor = report
    if report is None:
        result.warnings.append(MESSAGES.both("never_checked"))
        if settings.doctor_enforce:
            result.refused = MESSAGES.both("doctor_refused")
        return result
    try:
        age = datetime.now(UTC) - datetime.fromisoformat(report["checked_at"])
    except (KeyError, TypeError, ValueError):
        age = timedelta(days=365)
    if age > STALE_AFTER:
        result.warnings.append(MESSAGES.both("stale", hours=int(age.total_seconds() // 3600)))
    failures = [c for c in report.get("checks", []) if c.get("status") == "fail"]
    if failures:
        result.warnings.append(
            MESSAGES.both("doctor_failed", failures=", ".join(c["check"] for c in failures))
        )
        if settings.doctor_enforce:
            detail = "; ".join(f"{c['check']}: {c['reason']['en']}" for c in failures)
            result.refused = MESSAGES.both("doctor_refused") + " — " + detail
    return result


class SendRefused(ValueError):
    """doctor_enforce is on and the domain check fails: the send does not start."""


def for_campaign(session: Session, settings: Settings, campaign: Any) -> Preflight:
    """`preflight` for a stored campaign; test sends and drafts to no list need none."""
    if campaign.is_test or not campaign.list_ids:
        return Preflight()
    return preflight(session, settings, channel=campaign.channel, list_ids=list(campaign.list_ids))
