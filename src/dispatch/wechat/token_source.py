"""Where the access token comes from: WeChat's stable token endpoint, the classic one, or a
central token service the institution already runs.

Why the stable endpoint by default: with /cgi-bin/token every fetch invalidates the token any
other system on the same AppSecret holds (a CMS, a menu tool), so two systems knock each other
out. POST /cgi-bin/stable_token in normal mode returns the current token and leaves others'
alone; force_refresh (replace the current token) is limited to 20 a day, 30 s apart, so this
module counts them and refuses a 21st before WeChat does. An institution whose other systems
already share a token service sets `wechat_token_url`: dispatch then only reads from it.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis as redis_lib
import requests
from wechatpy.exceptions import WeChatClientException

from dispatch.config import Settings
from dispatch.i18n import Catalog

FORCE_PER_DAY = 20
FORCE_SPACING_SECONDS = 30.0

MESSAGES = Catalog(
    {
        "force_budget": (
            "今天的强制刷新令牌次数（{limit} 次）已用完，或距上次不足 30 秒",
            "today's forced token refreshes ({limit}) are used up, or the last was under 30 s ago",
        ),
        "central_bad": (
            "中央令牌服务 {url} 没有返回 access_token（{detail}）",
            "the central token service {url} returned no access_token ({detail})",
        ),
    }
)


class ForceBudget:
    """20 forced refreshes a UTC day, 30 s apart; shared through Redis when configured."""

    def __init__(self, settings: Settings, key: str):
        self.key = key + ":force"
        self.redis = redis_lib.Redis.from_url(settings.redis_url) if settings.redis_url else None
        self._lock = threading.Lock()
        self._local: dict[str, float] = {}

    def take(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
        if self.redis is not None:
            last = self.redis.get(self.key + ":last")
            if last is not None and now - float(last) < FORCE_SPACING_SECONDS:
                return False
            self.redis.set(self.key + ":last", now, ex=2 * 86400)
            used = self.redis.incr(f"{self.key}:{day}")
            self.redis.expire(f"{self.key}:{day}", 2 * 86400)
            return int(used) <= FORCE_PER_DAY
        with self._lock:
            if now - self._local.get("last", 0.0) < FORCE_SPACING_SECONDS:
                return False
            count = self._local.get(day, 0.0) + 1
            if count > FORCE_PER_DAY:
                return False
            self._local[day], self._local["last"] = count, now
            return True


class TokenSource:
    def fetch(self, *, force: bool) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError


class StableTokenSource(TokenSource):
    """POST {base}stable_token; normal mode unless the current token was refused."""

    def __init__(self, client: Any, budget: ForceBudget):
        self.client = client
        self.budget = budget

    def fetch(self, *, force: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "grant_type": "client_credential",
            "appid": self.client.appid,
            "secret": self.client.secret,
        }
        if force:
            if not self.budget.take():
                limit = FORCE_PER_DAY
                raise WeChatClientException(45009, MESSAGES.both("force_budget", limit=limit))
            body["force_refresh"] = True
        res = self.client._http.post(self.client.API_BASE_URL + "stable_token", json=body)
        return _checked(self.client, res)


class ClassicTokenSource(TokenSource):
    """GET {base}token (invalidates other systems' tokens: only when asked for)."""

    def __init__(self, client: Any):
        self.client = client

    def fetch(self, *, force: bool) -> dict[str, Any]:
        res = self.client._http.get(
            self.client.API_BASE_URL + "token",
            params={
                "grant_type": "client_credential",
                "appid": self.client.appid,
                "secret": self.client.secret,
            },
        )
        return _checked(self.client, res)


class CentralTokenSource(TokenSource):
    """GET wechat_token_url → {"access_token": ..., "expires_in": ...}; never asks WeChat."""

    def __init__(self, client: Any, url: str):
        self.client = client
        self.url = url

    def fetch(self, *, force: bool) -> dict[str, Any]:
        params = {"force": "1"} if force else {}
        try:
            res = self.client._http.get(self.url, params=params, timeout=10)
            res.raise_for_status()
            data = res.json()
        except (requests.RequestException, ValueError) as exc:
            detail = type(exc).__name__
            raise WeChatClientException(
                None, MESSAGES.both("central_bad", url=self.url, detail=detail)
            ) from None
        if not isinstance(data, dict) or not data.get("access_token"):
            detail = data.get("errmsg", "no token") if isinstance(data, dict) else "not JSON"
            raise WeChatClientException(
                data.get("errcode") if isinstance(data, dict) else None,
                MESSAGES.both("central_bad", url=self.url, detail=detail),
            )
        return {"access_token": data["access_token"], "expires_in": data.get("expires_in", 300)}


def _checked(client: Any, res: Any) -> dict[str, Any]:
    try:
        res.raise_for_status()
    except requests.RequestException as exc:
        raise WeChatClientException(
            None, None, client=client, request=exc.request, response=exc.response
        ) from None
    result = res.json()
    if result.get("errcode", 0) != 0:
        raise WeChatClientException(
            result["errcode"], result.get("errmsg", ""), client=client, response=res
        )
    return result


def token_source_for(settings: Settings, client: Any, key: str) -> TokenSource:
    """The configured source: a central URL, else stable_token (default) or classic token."""
    if settings.wechat_token_url:
        return CentralTokenSource(client, settings.wechat_token_url)
    if settings.wechat_token_endpoint == "token":
        return ClassicTokenSource(client)
    return StableTokenSource(client, ForceBudget(settings, key))
