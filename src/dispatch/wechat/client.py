"""The one place that talks HTTP to the WeChat API: a wechatpy 1.8.18 client, configured.

Why a subclass: 1.8.18 hard-codes the token URL (so a fake server could not issue tokens),
keeps the token's expiry in process memory, and its auto_retry recurses without a cap. Here the
base URL comes from settings.wechat_api_base_url, the token lives in a shared TokenStore, and a
token error refreshes once and repeats the call once. The draft and freepublish endpoints,
missing from 1.8.18, are called through the client's generic `post` in this module only.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from pathlib import Path
from typing import Any

from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

from dispatch.config import Settings
from dispatch.wechat.errors import TOKEN_CODES
from dispatch.wechat.token import FetchedToken, TokenStore, token_store_for
from dispatch.wechat.token_source import token_source_for

log = logging.getLogger("dispatch.wechat.client")

REAL_API_BASE_URL = "https://api.weixin.qq.com/cgi-bin/"
DEFAULT_TIMEOUT = 30.0


def api_base_url(settings: Settings) -> str:
    base = settings.wechat_api_base_url or REAL_API_BASE_URL
    return base if base.endswith("/") else base + "/"


def account_key(settings: Settings) -> str:
    """Which account + API the cached ids belong to (a fake's ids never reach the real API)."""
    base = api_base_url(settings)
    host = "api.weixin.qq.com" if base == REAL_API_BASE_URL else base.split("//", 1)[-1].rstrip("/")
    return f"{settings.wechat_app_id}@{host}"[:200]


def upload_file(path: Path) -> tuple[str, bytes, str]:
    """A re-sendable multipart part (bytes, not an open file, so a retry can post it again)."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return (path.name, path.read_bytes(), mime)


class WechatSettingsMissing(ValueError):
    """The Official Account is not configured; the message names the settings to set."""


def check_wechat_settings(settings: Settings) -> None:
    """Raise WechatSettingsMissing unless the app id and secret are set (checked before a
    WeChat campaign is created, so nothing is stored for a send that cannot happen)."""
    if not settings.wechat_app_id or not settings.wechat_app_secret:
        raise WechatSettingsMissing(
            "需要设置 wechat_app_id 和 wechat_app_secret"
            "（环境变量 DISPATCH_WECHAT_APP_ID / DISPATCH_WECHAT_APP_SECRET） / "
            "settings wechat_app_id and wechat_app_secret are required "
            "(DISPATCH_WECHAT_APP_ID / DISPATCH_WECHAT_APP_SECRET)"
        )


class WechatClient(WeChatClient):
    """wechatpy's client with a configurable base URL, a shared token and one token retry."""

    def __init__(
        self,
        settings: Settings,
        *,
        token_store: TokenStore | None = None,
        token_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ):
        check_wechat_settings(settings)
        super().__init__(
            settings.wechat_app_id, settings.wechat_app_secret, timeout=timeout, auto_retry=False
        )
        self.API_BASE_URL = api_base_url(settings)
        base_tag = hashlib.sha256(self.API_BASE_URL.encode()).hexdigest()[:8]
        prefix = getattr(settings, "redis_key_prefix", "") or ""
        key = token_key or f"{prefix}dispatch:wechat:token:{settings.wechat_app_id}:{base_tag}"
        self.token_store = token_store or token_store_for(settings.redis_url, key)
        self.account = account_key(settings)
        self.token_source = token_source_for(settings, self, key)

    # -- token ---------------------------------------------------------------------------------
    def fetch_access_token(self) -> dict[str, Any]:
        """The token by the configured source (see dispatch.wechat.token_source)."""
        return self.token_source.fetch(force=False)

    def _fetch_shared(self) -> FetchedToken:
        result = self.token_source.fetch(force=False)
        return FetchedToken(result["access_token"], float(result.get("expires_in", 7200)))

    def _fetch_forced(self) -> FetchedToken:
        result = self.token_source.fetch(force=True)
        return FetchedToken(result["access_token"], float(result.get("expires_in", 7200)))

    @property
    def access_token(self) -> str:
        return self.token_store.get(self._fetch_shared)

    def _request(self, method: str, url_or_endpoint: str, **kwargs: Any) -> Any:
        params = dict(kwargs.pop("params", None) or {})
        token = self.access_token
        params["access_token"] = token
        try:
            return super()._request(method, url_or_endpoint, params=params, **kwargs)
        except WeChatClientException as exc:
            if exc.errcode not in TOKEN_CODES:
                raise
            log.info("wechat.token.rejected code=%s endpoint=%s", exc.errcode, url_or_endpoint)
            fresh = self.token_store.replace(token, self._fetch_shared)
            if fresh == token:  # the stable endpoint still answers the refused token: force it
                fresh = self.token_store.replace(token, self._fetch_forced)
            params["access_token"] = fresh
            return super()._request(method, url_or_endpoint, params=params, **kwargs)

    # -- uploads -------------------------------------------------------------------------------
    def add_thumb(self, path: Path) -> str:
        """material/add_material type=thumb: permanent cover material; returns media_id."""
        return self.material.add("thumb", upload_file(path))["media_id"]

    # -- drafts and free publishing (absent from wechatpy 1.8.18) -------------------------------
    def draft_add(self, articles: list[dict[str, Any]]) -> str:
        return self.post("draft/add", data={"articles": articles})["media_id"]

    def draft_get(self, media_id: str) -> dict[str, Any]:
        """draft/get: the draft's articles; 40007 once it left the draft box (sent/published)."""
        return self.post("draft/get", data={"media_id": media_id})

    # -- followers -------------------------------------------------------------------------------
    def user_get(self, next_openid: str = "") -> dict[str, Any]:
        """user/get: up to 10,000 follower openids after next_openid."""
        params = {"next_openid": next_openid} if next_openid else {}
        return self.get("user/get", params=params)

    def user_batchget(self, openids: list[str], lang: str = "zh_CN") -> list[dict[str, Any]]:
        """user/info/batchget: up to 100 followers' unionid, language, subscribe time, tags."""
        body = {"user_list": [{"openid": o, "lang": lang} for o in openids]}
        return list(self.post("user/info/batchget", data=body).get("user_info_list") or [])

    def tags_get(self) -> list[dict[str, Any]]:
        return list(self.get("tags/get").get("tags") or [])

    # -- statistics ------------------------------------------------------------------------------
    def datacube(self, endpoint: str, day: str) -> list[dict[str, Any]]:
        """datacube/<endpoint> for one day (YYYY-MM-DD); outside /cgi-bin/ on WeChat's host."""
        url = self.API_BASE_URL.removesuffix("cgi-bin/") + "datacube/" + endpoint
        return list(self.post(url, data={"begin_date": day, "end_date": day}).get("list") or [])

    def freepublish_submit(self, media_id: str) -> str:
        return str(self.post("freepublish/submit", data={"media_id": media_id})["publish_id"])

    def freepublish_get(self, publish_id: str) -> dict[str, Any]:
        return self.post("freepublish/get", data={"publish_id": publish_id})

    # -- mass send -----------------------------------------------------------------------------
    def mass_send_openids(
        self, openids: list[str], media_id: str, clientmsgid: str, *, ignore_reprint: bool = False
    ) -> dict[str, Any]:
        """mass/send to an openid list (2 to 10,000; verified service accounts only)."""
        return self.post(
            "message/mass/send",
            data={
                "touser": list(openids),
                "mpnews": {"media_id": media_id},
                "msgtype": "mpnews",
                "send_ignore_reprint": int(ignore_reprint),
                "clientmsgid": clientmsgid,
            },
        )

    def mass_send_tag(
        self, tag_id: int | None, media_id: str, clientmsgid: str, *, ignore_reprint: bool = False
    ) -> dict[str, Any]:
        """mass/sendall with WeChat's `tag_id` filter (wechatpy 1.8.18 still sends group_id);
        tag_id None sends to all followers (is_to_all: the only sends shown in 历史消息)."""
        filt: dict[str, Any] = {"is_to_all": tag_id is None}
        if tag_id is not None:
            filt["tag_id"] = tag_id
        return self.post(
            "message/mass/sendall",
            data={
                "filter": filt,
                "mpnews": {"media_id": media_id},
                "msgtype": "mpnews",
                "send_ignore_reprint": int(ignore_reprint),
                "clientmsgid": clientmsgid,
            },
        )

    def mass_preview(
        self, openid: str | None, media_id: str, *, wxname: str | None = None
    ) -> dict[str, Any]:
        """mass/preview to one follower's openid, or to a WeChat ID (towxname) instead."""
        target = {"towxname": wxname} if wxname else {"touser": openid}
        return self.post(
            "message/mass/preview",
            data={**target, "mpnews": {"media_id": media_id}, "msgtype": "mpnews"},
        )

    def mass_get(self, msg_id: str) -> dict[str, Any]:
        return self.message.get_mass(int(msg_id))

    def template_send(
        self, openid: str, template_id: str, data: dict[str, Any], url: str | None
    ) -> str:
        return str(self.message.send_template(openid, template_id, data, url=url)["msgid"])
