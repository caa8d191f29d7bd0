"""What the configured Official Account may send, checked before a campaign is created.

Why up front: WeChat refuses a send the account type cannot do only when the send is tried,
after deliveries exist and people have been told it is on its way. A subscription account
(订阅号) mass-sends once a day, to all followers (is_to_all, the only sends shown in the
account's history 历史消息) or to one tag; openid lists need a verified service account (认证
服务号), whose followers each receive at most 4 mass messages a month; an unverified account
has no mass-send API at all. Template messages are service notices, never content pushes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dispatch.config import Settings
from dispatch.i18n import Catalog

ACCOUNT_TYPES = ("subscription", "service")
MODES = ("openids", "all", "tag")  # mass/send to lists | sendall is_to_all | sendall to a tag
BEIJING = timedelta(hours=8)

MESSAGES = Catalog(
    {
        "bad_type": (
            "设置 wechat_account_type 须为 subscription（订阅号）或 service（服务号），而非 "
            "{value!r}",
            "setting wechat_account_type must be subscription or service, not {value!r}",
        ),
        "bad_mode": (
            "未知的微信群发方式 {mode!r}（可用：openids、all、tag）",
            "unknown WeChat send mode {mode!r} (use openids, all or tag)",
        ),
        "template": (
            "模板消息只能用于服务通知，不能推送内容（微信规则）；请用群发方式 all、tag 或 openids",
            "template messages are for service notices, never content (WeChat's rules); "
            "use the mode all, tag or openids",
        ),
        "unverified": (
            "未认证的公众号不能调用群发接口；请先完成微信认证",
            "an unverified Official Account cannot call the mass-send API; get it verified first",
        ),
        "openids_need_service": (
            "按 OpenID 列表群发只有认证服务号可用；订阅号请用 all（全部关注者）或 tag（一个标签）",
            "sending to openid lists needs a verified service account; a subscription account "
            "sends to all followers (all) or one tag (tag)",
        ),
        "tag_needed": (
            "tag 方式需要 wechat_tag_id（整数标签 ID，见 dispatch wechat tags）",
            "the tag mode needs wechat_tag_id (an integer tag id, see dispatch wechat tags)",
        ),
        "limit_service": (
            "服务号：每位关注者每月最多收到 4 条群发，超出的会被微信过滤",
            "service account: each follower receives at most 4 mass messages a month; "
            "WeChat filters the rest",
        ),
        "limit_subscription": (
            "订阅号：每天只能群发 1 次（全部关注者或一个标签）",
            "subscription account: one mass send a day (all followers or one tag)",
        ),
        "history": (
            "只有发给全部关注者（all）的群发会出现在公众号历史消息中",
            "only sends to all followers (all) appear in the account's history",
        ),
    }
)


class AccountRefusal(ValueError):
    """The account type cannot do this send; the message gives the reason in both languages."""


@dataclass(frozen=True)
class SendOptions:
    """A campaign's WeChat options with their safe defaults."""

    mode: str = "openids"
    tag_id: int | None = None
    # 1: when WeChat's originality check finds a reprint (e.g. a 新华社 text) the send goes on
    # as a reprint; 0 stops the whole send. Bulletins quote official texts, so 1 by default.
    ignore_reprint: bool = True
    # (open comments, only followers may comment); None: as the articles say
    comments: tuple[bool, bool] | None = None


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def default_mode(settings: Settings | None) -> str:
    """Openid lists on a service account (every list member, nobody else); a subscription
    account can only send to all followers."""
    if settings is not None and settings.wechat_account_type == "subscription":
        return "all"
    return "openids"


def campaign_send_options(
    options: dict[str, Any] | None, settings: Settings | None = None
) -> SendOptions:
    options = options or {}
    tag = options.get("wechat_tag_id")
    return SendOptions(
        mode=str(options.get("wechat_mode") or default_mode(settings)),
        tag_id=int(tag) if tag not in (None, "") and str(tag).lstrip("-").isdigit() else None,
        ignore_reprint=_flag(options.get("wechat_ignore_reprint"), True),
        comments=(
            (
                _flag(options.get("wechat_open_comment"), False),
                _flag(options.get("wechat_fans_only_comment"), True),
            )
            if "wechat_open_comment" in options or "wechat_fans_only_comment" in options
            else None
        ),
    )


def allowed_modes(settings: Settings) -> tuple[str, ...]:
    if not settings.wechat_verified:
        return ()
    if settings.wechat_account_type == "service":
        return MODES
    return ("all", "tag")


def check_campaign(settings: Settings, options: dict[str, Any] | None) -> SendOptions:
    """The campaign's options if the account can send them; else AccountRefusal (why)."""
    if settings.wechat_account_type not in ACCOUNT_TYPES:
        raise AccountRefusal(MESSAGES.both("bad_type", value=settings.wechat_account_type))
    opts = campaign_send_options(options, settings)
    if opts.mode == "template":
        raise AccountRefusal(MESSAGES.both("template"))
    if opts.mode not in MODES:
        raise AccountRefusal(MESSAGES.both("bad_mode", mode=opts.mode))
    if not settings.wechat_verified:
        raise AccountRefusal(MESSAGES.both("unverified"))
    if opts.mode not in allowed_modes(settings):
        raise AccountRefusal(MESSAGES.both("openids_need_service"))
    if opts.mode == "tag" and opts.tag_id is None:
        raise AccountRefusal(MESSAGES.both("tag_needed"))
    return opts


def limits(settings: Settings) -> list[str]:
    """The limits to show before a send, both languages, one per line."""
    kind = "limit_service" if settings.wechat_account_type == "service" else "limit_subscription"
    return [MESSAGES.both(kind), MESSAGES.both("history")]


def next_quota_day(now: datetime | None = None) -> datetime:
    """When WeChat's daily quotas reset: the next midnight in Beijing (UTC+8), as UTC."""
    now = now or datetime.now(UTC)
    local = now.astimezone(UTC) + BEIJING
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - BEIJING
