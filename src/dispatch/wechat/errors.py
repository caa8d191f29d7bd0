"""The one table that says what to do with each WeChat API error code.

Why one table: the channel, the publisher and the CLI all meet the same codes; keeping the
decision in one place (with the reason beside each code) is what makes the policy reviewable.
Every action is bounded: `retry` and `backoff` are tried a few times in-process
(see RetryPolicy) and then handed to the delivery engine as `deferred`, whose own retry count
is capped by settings.max_attempts. Nothing retries forever.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from wechatpy.exceptions import WeChatClientException

Action = Literal["retry", "refresh_token", "backoff", "pause", "quota", "fail", "already_sent"]
# retry          transient on WeChat's side: try again soon (short backoff with jitter)
# refresh_token  the access token is stale: refresh it once (shared) and repeat the call once
# backoff        a rate limit: wait longer (exponential with jitter), then try again
# pause          the account (not the recipients) is refused: stop the campaign, say why
# quota          a daily quota is used up: pause the campaign until the quota day turns
# fail           the message or its data is wrong: retrying cannot help; keep code and message
# already_sent   the clientmsgid was already used: the earlier msg_id means success


@dataclass(frozen=True)
class Rule:
    action: Action
    reason: str  # English reason for logs and the admin (WeChat's errmsg is kept beside it)
    delay: float = 0.0  # minimum seconds before trying again (retry / backoff)


ERROR_TABLE: dict[int, Rule] = {
    # -- transient ---------------------------------------------------------------------------
    -1: Rule("retry", "WeChat system busy", 2.0),  # 系统繁忙，此时请开发者稍候再试
    45066: Rule("retry", "same clientmsgid retried too soon; retry after a minute", 60.0),
    # -- access token ------------------------------------------------------------------------
    40001: Rule(
        "refresh_token", "access token invalid (40001)"
    ),  # 获取 access_token 时 AppSecret 错误，或者 access_token 无效
    40014: Rule("refresh_token", "access token malformed (40014)"),  # 不合法的 access_token
    42001: Rule("refresh_token", "access token expired (42001)"),  # access_token 超时
    # -- rate limits --------------------------------------------------------------------------
    # 45009 is the DAILY quota: retrying within minutes cannot help; pause until it resets
    45009: Rule("quota", "daily API quota reached; resets at midnight Beijing time"),
    45011: Rule("backoff", "API called too often", 10.0),  # API 调用太频繁，请稍候再试
    45047: Rule("backoff", "too many messages to this user", 60.0),  # 客服接口下行条数超过上限
    # -- the account is refused: pause the campaign -------------------------------------------
    45028: Rule("pause", "no mass-send quota left for this account"),  # has no masssend quota
    48001: Rule("pause", "this account is not authorised for this API"),  # api 功能未授权
    40164: Rule(  # 调用接口的IP地址不在白名单中
        "pause",
        "this server's IP is not on the account's IP whitelist: add it in the WeChat console "
        "(设置与开发 → 基本配置 → IP白名单 / Settings → Basic configuration → IP whitelist)",
    ),
    48003: Rule(  # 用户未同意群发协议
        "pause",
        "the mass-send (群发) agreement is not accepted: an administrator must accept it in the "
        "WeChat console (内容与互动 → 群发), then resume the campaign",
    ),
    48004: Rule(  # api 接口被封禁
        "pause",
        "WeChat has banned this API for the account: read the notice in the WeChat console "
        "(mp.weixin.qq.com), resolve it, then resume the campaign",
    ),
    48002: Rule("fail", "the follower has blocked messages from the account"),  # 粉丝拒收消息
    40125: Rule("pause", "invalid AppSecret"),  # 无效的 appsecret
    40013: Rule("pause", "invalid AppID"),  # 不合法的 AppID
    50002: Rule("pause", "the account is restricted"),  # 用户受限，可能是违规后接口被封禁
    # -- de-duplication -------------------------------------------------------------------------
    45065: Rule(
        "already_sent", "clientmsgid already sent within 24 h"
    ),  # 相同 clientmsgid 已存在群发记录
    # -- data and content errors: fail with the code and WeChat's message kept -------------------
    45067: Rule("fail", "clientmsgid longer than 64 bytes"),  # clientmsgid 长度超过限制
    40007: Rule("fail", "invalid media_id"),  # 不合法的媒体文件 id
    40004: Rule("fail", "invalid media type"),  # 不合法的媒体文件类型
    40005: Rule("fail", "invalid file type"),  # 不合法的文件类型
    40006: Rule("fail", "invalid file size"),  # 不合法的文件大小
    40009: Rule("fail", "invalid image size"),  # 不合法的图片文件大小
    40113: Rule("fail", "unsupported file type"),  # 不支持的文件类型
    45001: Rule("fail", "media file too large"),  # 多媒体文件大小超过限制
    45002: Rule("fail", "message content too long"),  # 消息内容超过限制
    45003: Rule("fail", "title too long"),  # 标题字段超过限制
    45004: Rule("fail", "description (digest) too long"),  # 描述字段超过限制
    45005: Rule("fail", "link too long"),  # 链接字段超过限制
    45006: Rule("fail", "image URL too long"),  # 图片链接字段超过限制
    45008: Rule("fail", "too many articles"),  # 图文消息超过限制
    40003: Rule("fail", "invalid openid"),  # 不合法的 OpenID
    40130: Rule("fail", "openid list must hold 2 to 10,000 openids"),  # invalid openid list size
    43004: Rule("fail", "the user does not follow the account"),  # 需要接收者关注
    40037: Rule("fail", "invalid template_id"),  # 不合法的 template_id
    44003: Rule("fail", "empty article content"),  # 图文消息内容为空
    53404: Rule(
        "fail", "draft or article refused by content review"
    ),  # 账号已被限制带货能力 / 审核
}

UNKNOWN = Rule("fail", "unknown WeChat error code")  # unknown codes fail with the code kept
TRANSPORT = Rule("retry", "no answer from the WeChat API (connection or HTTP error)", 2.0)

TOKEN_CODES = frozenset(
    code for code, rule in ERROR_TABLE.items() if rule.action == "refresh_token"
)


def classify(errcode: int | None) -> Rule:
    """The rule for an errcode; None (HTTP/transport failure) is a bounded retry."""
    if errcode is None:
        return TRANSPORT
    return ERROR_TABLE.get(int(errcode), UNKNOWN)


class WechatError(Exception):
    """A WeChat API failure after the policy ran out: code, WeChat's message and the rule."""

    def __init__(self, errcode: int | None, errmsg: str, rule: Rule, data: dict | None = None):
        self.errcode = errcode
        self.errmsg = errmsg
        self.rule = rule
        self.data = data or {}
        super().__init__(f"WeChat error {errcode}: {errmsg} ({rule.reason})")

    @property
    def action(self) -> Action:
        return self.rule.action

    @classmethod
    def from_exception(cls, exc: Exception) -> WechatError:
        if isinstance(exc, WechatError):
            return exc
        if isinstance(exc, WeChatClientException):
            code = exc.errcode
            return cls(code, str(exc.errmsg or ""), classify(code))
        return cls(None, f"{type(exc).__name__}: {exc}", TRANSPORT)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded in-process retries for `retry` and `backoff` codes, exponential with jitter.

    `scale` shrinks every wait (tests and the demo use a tiny scale so they stay fast).
    """

    attempts: int = 4
    max_delay: float = 300.0
    scale: float = 1.0

    def delay(self, rule: Rule, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        base = max(rule.delay, 1.0) * (2 ** (attempt - 1))
        jitter = (rng or random).uniform(0.5, 1.0)
        return min(base, self.max_delay) * jitter * self.scale


def error_from(exc: Exception) -> WechatError:
    """WechatError from any client failure, keeping extra fields of WeChat's answer (msg_id)."""
    err = WechatError.from_exception(exc)
    response = getattr(exc, "response", None)
    if response is not None and not err.data:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            err.data.update({k: v for k, v in body.items() if k not in ("errcode", "errmsg")})
    return err


def call_with_retries(fn, policy: RetryPolicy, sleep, *, log_context: str = ""):
    """Run fn(); on `retry`/`backoff` codes wait (exponential, jitter) and try again, at most
    policy.attempts times in all. Anything else, or the last failure, raises WechatError."""
    import logging

    log = logging.getLogger("dispatch.wechat.errors")
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified right here
            err = error_from(exc)
            if err.action not in ("retry", "backoff") or attempt >= policy.attempts:
                raise err from exc
            wait = policy.delay(err.rule, attempt)
            log.info(
                "wechat.retry %s code=%s action=%s attempt=%s wait=%.2f",
                log_context,
                err.errcode,
                err.action,
                attempt,
                wait,
            )
            sleep(wait)
