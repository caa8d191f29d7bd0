"""A faithful fake of the WeChat Official Account API on loopback, for tests and `dispatch demo`.

Why a real HTTP server: the point is to exercise the same wechatpy client, token sharing,
multipart uploads and error handling that talk to api.weixin.qq.com, so the fake speaks HTTP on
127.0.0.1 and answers the way WeChat does (HTTP 200 with {"errcode", "errmsg"}), with WeChat's
field and size checks, clientmsgid de-duplication, quotas and injectable faults. It can also
post MASSSENDJOBFINISH / TEMPLATESENDJOBFINISH events, signed and AES-encrypted as WeChat
sends them in safe mode, to a callback URL.

Control: the Python API (FakeWechatServer.state.*) or HTTP under /_fake/ (GET /_fake/state,
POST /_fake/faults {"path": ..., "errcode": ..., "times": N | "drop": true},
POST /_fake/expire-tokens, POST /_fake/emit {"msg_id": ...}).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import re
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import WeChatSigner

log = logging.getLogger("dispatch.wechat.fake")

MMBIZ_PREFIX = "http://mmbiz.qpic.cn/mmbiz_"
ONE_MB = 1024 * 1024
THUMB_MAX = 64 * 1024  # WeChat: thumb material is JPG, at most 64 KB
IMAGE_MAX = 10 * ONE_MB  # permanent image material
CLIENTMSGID_TTL = 24 * 3600.0


def _sha1_sorted(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def _image_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    return None


@dataclass
class Fault:
    path: str  # endpoint without base, e.g. "message/mass/send"; "*" = any
    times: int = 1
    errcode: int | None = None  # answer this code
    errmsg: str = ""
    drop: bool = False  # close the connection without an answer
    after_processing: bool = True  # for drop: do the work first (the worst case: sent, no reply)


@dataclass
class MassRecord:
    msg_id: int
    msg_data_id: int
    clientmsgid: str | None
    mode: str  # openids | tag | preview
    media_id: str
    openids: list[str]
    tag_id: int | None
    at: float
    status: str = "SEND_SUCCESS"


@dataclass
class FakeState:
    """Everything the fake knows; all access under `lock`. Tests read and tweak it directly."""

    app_id: str = "wxfake0000000000"
    app_secret: str = "fake-secret"
    original_id: str = "gh_fake00000000"
    token_expires_in: int = 7200
    token_overlap: float = 300.0  # the old token keeps working this long after a new one
    token_delay: float = 0.0  # seconds to wait before answering cgi-bin/token (stampede tests)
    # web authorisation (snsapi_base): code a reader's WeChat would hand back -> their openid
    oauth_codes: dict[str, str] = field(default_factory=dict)
    mass_quota: int | None = None  # mass sends left (None: unlimited); 0 → 45028
    tag_sizes: dict[int, int] = field(default_factory=dict)  # tag_id -> follower count
    filter_ratio: float = 0.0  # share of openids WeChat filters (e.g. 4 per month rule)
    publish_polls: int = 1  # freepublish/get answers "publishing" this many times first
    callback_url: str | None = None  # emit events here after mass send / template send
    callback_token: str = ""
    callback_aes_key: str = ""
    auto_emit: bool = False
    # the account: "service" or "subscription", verified or not (what it may call)
    account_type: str = "service"
    verified: bool = True
    ip_whitelist_error: bool = False  # every API call answers 40164 (server IP not whitelisted)
    mass_per_minute: int | None = 60  # mass-send requests accepted per rolling minute (45011)
    # mass sends accepted per quota day (None: unlimited); more answer 45009 (daily API quota)
    # until new_quota_day() (WeChat: midnight Beijing time; tests call it for the reset)
    mass_daily_calls: int | None = None
    mass_day_used: int = 0
    stable_force_refreshes: int = 20  # stable_token force_refresh a day
    stable_force_at: float = 0.0  # last forced refresh (30 s apart)
    # followers: openid -> info (insertion order = user/get order); tags: id -> name
    followers: dict[str, dict[str, Any]] = field(default_factory=dict)
    tags: dict[int, str] = field(default_factory=dict)
    user_get_page: int = 10_000  # openids per user/get page (WeChat: 10,000)
    finish_status: str = "send success"  # MASSSENDJOBFINISH Status for auto-emitted events
    article_stats: dict[str, dict[str, int]] = field(default_factory=dict)  # msgid -> counts
    lock: threading.RLock = field(default_factory=threading.RLock)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires_at
    calls: Counter = field(default_factory=Counter)  # endpoint -> requests received
    token_fetches: int = 0
    images: dict[str, int] = field(default_factory=dict)  # issued uploadimg URL -> size
    materials: dict[str, str] = field(default_factory=dict)  # media_id -> type
    drafts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    publishes: dict[str, dict[str, Any]] = field(default_factory=dict)
    mass: dict[int, MassRecord] = field(default_factory=dict)
    clientmsgids: dict[str, tuple[int, float]] = field(default_factory=dict)
    stable_token: str | None = None
    mass_times: list[float] = field(default_factory=list)  # accepted mass sends (rate window)
    sendall_days: dict[str, int] = field(default_factory=dict)  # subscription: day -> sendalls
    monthly_received: Counter = field(default_factory=Counter)  # service: openid -> this month
    consumed_drafts: set[str] = field(default_factory=set)
    sent_articles: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # msg_data_id
    templates: dict[int, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    emitted: list[dict[str, Any]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1000000001))

    def next_id(self) -> int:
        return next(self._ids)

    # -- Python control API -----------------------------------------------------------------
    def expire_tokens(self) -> None:
        """Every token issued so far is expired now (the next call answers 42001)."""
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = time.time() - 1

    def add_fault(
        self,
        path: str,
        *,
        errcode: int | None = None,
        times: int = 1,
        errmsg: str = "",
        drop: bool = False,
        after_processing: bool = True,
    ) -> None:
        with self.lock:
            self.faults.append(
                Fault(
                    path, times, errcode, errmsg or f"fake fault {errcode}", drop, after_processing
                )
            )

    def new_quota_day(self) -> None:
        """WeChat's quota day turned (midnight Beijing time): daily API quotas start again."""
        with self.lock:
            self.mass_day_used = 0

    def add_followers(
        self, count: int, *, prefix: str = "oFOLLOW", tags: tuple[int, ...] = (), start: int = 0
    ) -> list[str]:
        """`count` followers with predictable openids, appended in user/get order."""
        openids = [f"{prefix}{i:09d}" for i in range(start, start + count)]
        with self.lock:
            now = int(time.time())
            for n, openid in enumerate(openids):
                self.followers[openid] = {
                    "openid": openid,
                    "unionid": "u" + openid,
                    "language": "en" if n % 10 == 0 else "zh_CN",
                    "subscribe_time": now - n,
                    "tagid_list": list(tags),
                }
        return openids

    def unfollow(self, openids: list[str]) -> None:
        with self.lock:
            for openid in openids:
                self.followers.pop(openid, None)

    def mass_sends(self, mode: str | None = None) -> list[MassRecord]:
        with self.lock:
            return [m for m in self.mass.values() if mode is None or m.mode == mode]

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path in (path, "*") and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "token_fetches": self.token_fetches,
                "images": len(self.images),
                "materials": len(self.materials),
                "drafts": len(self.drafts),
                "mass_sends": len(self.mass),
                "mass_quota": self.mass_quota,
                "templates": len(self.templates),
                "faults": [f.__dict__ for f in self.faults],
                "emitted": len(self.emitted),
            }


class ApiError(Exception):
    def __init__(self, errcode: int, errmsg: str, **extra: Any):
        super().__init__(errmsg)
        self.body = {"errcode": errcode, "errmsg": errmsg, **extra}


class _DropConnection(Exception):
    pass


class FakeWechatApi:
    """The endpoint logic (no sockets): request in → JSON dict out or ApiError."""

    def __init__(self, state: FakeState):
        self.state = state

    # -- helpers -----------------------------------------------------------------------------
    def _check_token(self, query: dict[str, str]) -> None:
        token = query.get("access_token", "")
        expires = self.state.tokens.get(token)
        if expires is None:
            raise ApiError(40001, "invalid credential, access_token is invalid or not latest")
        if time.time() >= expires:
            raise ApiError(42001, "access_token expired")

    def token(self, query: dict[str, str]) -> dict[str, Any]:
        if self.state.token_delay:
            time.sleep(self.state.token_delay)
        with self.state.lock:
            if query.get("grant_type") != "client_credential":
                raise ApiError(40002, "invalid grant_type")
            if query.get("appid") != self.state.app_id:
                raise ApiError(40013, "invalid appid")
            if query.get("secret") != self.state.app_secret:
                raise ApiError(40125, "invalid appsecret")
            token = self._issue_token()
            return {"access_token": token, "expires_in": self.state.token_expires_in}

    def sns_access_token(self, query: dict[str, str]) -> dict[str, Any]:
        """Web authorisation: a code is usable once (40029 invalid code otherwise)."""
        if (
            query.get("grant_type") != "authorization_code"
            or query.get("appid") != self.state.app_id
        ):
            raise ApiError(40013, "invalid appid")
        with self.state.lock:
            openid = self.state.oauth_codes.pop(query.get("code", ""), None)
        if openid is None:
            raise ApiError(40029, "invalid code")
        return {
            "access_token": f"sns-{openid}",
            "expires_in": 7200,
            "refresh_token": f"refresh-{openid}",
            "openid": openid,
            "scope": "snsapi_base",
        }

    def _issue_token(self) -> str:
        now = time.time()
        for old, expires in list(self.state.tokens.items()):  # old token: 5 minutes' grace
            self.state.tokens[old] = min(expires, now + self.state.token_overlap)
        token = "FAKE" + secrets.token_urlsafe(24)
        self.state.tokens[token] = now + self.state.token_expires_in
        self.state.token_fetches += 1
        return token

    def stable_token(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST stable_token: normal mode returns the current token while it is valid;
        force_refresh replaces it (20 a day, 30 s apart). Isolated from cgi-bin/token."""
        if self.state.token_delay:
            time.sleep(self.state.token_delay)
        with self.state.lock:
            if body.get("grant_type") != "client_credential":
                raise ApiError(40002, "invalid grant_type")
            if body.get("appid") != self.state.app_id:
                raise ApiError(40013, "invalid appid")
            if body.get("secret") != self.state.app_secret:
                raise ApiError(40125, "invalid appsecret")
            current = self.state.stable_token
            now = time.time()
            if body.get("force_refresh"):
                if self.state.stable_force_refreshes <= 0:
                    raise ApiError(45009, "reach max api daily quota limit (force_refresh)")
                if now - self.state.stable_force_at < 30:
                    raise ApiError(45011, "api minute-quota reach limit (force_refresh 30 s)")
                self.state.stable_force_refreshes -= 1
                self.state.stable_force_at = now
                current = None
            # normal mode: the current token while it has more than 5 minutes left (WeChat
            # renews it 5 minutes early), else a fresh one
            if current is not None and self.state.tokens.get(current, 0) > now + 300:
                remaining = int(self.state.tokens[current] - now)
                return {"access_token": current, "expires_in": remaining}
            token = self._issue_token()
            self.state.stable_token = token
            return {"access_token": token, "expires_in": self.state.token_expires_in}

    # -- followers ------------------------------------------------------------------------------
    def user_get(self, query: dict[str, str]) -> dict[str, Any]:
        """user/get: up to 10,000 openids after next_openid, in follow order."""
        after = query.get("next_openid") or ""
        with self.state.lock:
            order = list(self.state.followers)
            total = len(order)
            if after:
                try:
                    start = order.index(after) + 1
                except ValueError:
                    raise ApiError(40003, "invalid next_openid") from None
            else:
                start = 0
            page = order[start : start + self.state.user_get_page]
        if not page:
            return {"total": total, "count": 0, "next_openid": ""}
        more = start + len(page) < total
        return {
            "total": total,
            "count": len(page),
            "data": {"openid": page},
            "next_openid": page[-1] if more else "",
        }

    def user_batchget(self, body: dict[str, Any]) -> dict[str, Any]:
        users = body.get("user_list")
        if not isinstance(users, list) or not users:
            raise ApiError(40003, "invalid user_list")
        if len(users) > 100:
            raise ApiError(45032, "user_list size out of limit (100)")
        out = []
        with self.state.lock:
            for item in users:
                openid = (item or {}).get("openid", "")
                info = self.state.followers.get(openid)
                if info is None:
                    out.append({"subscribe": 0, "openid": openid})
                    continue
                out.append(
                    {
                        "subscribe": 1,
                        "openid": openid,
                        "language": info["language"],
                        "subscribe_time": info["subscribe_time"],
                        "unionid": info["unionid"],
                        "remark": "",
                        "groupid": 0,
                        "tagid_list": list(info["tagid_list"]),
                        "subscribe_scene": "ADD_SCENE_QR_CODE",
                        "qr_scene": 0,
                        "qr_scene_str": "",
                    }
                )
        return {"user_info_list": out}

    def tags_get(self) -> dict[str, Any]:
        with self.state.lock:
            counts: Counter = Counter()
            for info in self.state.followers.values():
                counts.update(info["tagid_list"])
            return {
                "tags": [
                    {"id": tag_id, "name": name, "count": counts[tag_id]}
                    for tag_id, name in sorted(self.state.tags.items())
                ]
            }

    def subscribe_xml(self, openid: str, *, event: str = "subscribe", at: int | None = None) -> str:
        """A subscribe / unsubscribe event as WeChat posts it (updates the fake's followers)."""
        with self.state.lock:
            if event == "subscribe":
                self.state.followers.setdefault(
                    openid,
                    {
                        "openid": openid,
                        "unionid": "u" + openid,
                        "language": "zh_CN",
                        "subscribe_time": int(time.time()),
                        "tagid_list": [],
                    },
                )
            else:
                self.state.followers.pop(openid, None)
        return (
            "<xml>"
            f"<ToUserName><![CDATA[{self.state.original_id}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{at or int(time.time())}</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event>"
            "</xml>"
        )

    # -- statistics ------------------------------------------------------------------------------
    def datacube(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """getarticlesummary / getarticletotal: one day at a time, per article of a mass send."""
        begin, end = body.get("begin_date", ""), body.get("end_date", "")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", begin or "") or begin != end:
            raise ApiError(61500, "date format error or range exceeds the limit (1 day)")
        out = []
        with self.state.lock:
            for record in self.state.mass.values():
                if record.mode == "preview":
                    continue
                day = time.strftime("%Y-%m-%d", time.gmtime(record.at))
                if path.endswith("getarticletotal") and day != begin:
                    continue
                if path.endswith("getarticlesummary") and day > begin:
                    continue
                articles = self.state.sent_articles.get(record.msg_data_id, [])
                for idx, article in enumerate(articles, 1):
                    msgid = f"{record.msg_data_id}_{idx}"
                    stats = self.state.article_stats.get(msgid) or {
                        "read_user": 3 * idx + 10,
                        "read_count": 4 * idx + 12,
                        "share_user": idx,
                        "share_count": idx + 1,
                        "fav_user": 1,
                        "fav_count": 1,
                    }
                    figures = {
                        "int_page_read_user": stats["read_user"],
                        "int_page_read_count": stats["read_count"],
                        "ori_page_read_user": 0,
                        "ori_page_read_count": 0,
                        "share_user": stats["share_user"],
                        "share_count": stats["share_count"],
                        "add_to_fav_user": stats["fav_user"],
                        "add_to_fav_count": stats["fav_count"],
                    }
                    title = article.get("title", "")
                    if path.endswith("getarticlesummary"):
                        out.append({"ref_date": begin, "msgid": msgid, "title": title, **figures})
                    else:
                        out.append(
                            {
                                "ref_date": day,
                                "msgid": msgid,
                                "title": title,
                                "details": [
                                    {
                                        "stat_date": begin,
                                        "target_user": len(record.openids),
                                        **figures,
                                    }
                                ],
                            }
                        )
        return {"list": out}

    def uploadimg(self, files: dict[str, tuple[str, bytes]]) -> dict[str, Any]:
        if "media" not in files:
            raise ApiError(41005, "media data missing")
        name, data = files["media"]
        fmt = _image_format(data)
        if fmt not in ("jpg", "png") or not name.lower().endswith((".jpg", ".jpeg", ".png")):
            raise ApiError(40113, "unsupported file type: uploadimg takes jpg/png only")
        if len(data) >= ONE_MB:
            raise ApiError(40009, "invalid image size: uploadimg takes less than 1MB")
        with self.state.lock:
            url = f"{MMBIZ_PREFIX}{fmt}/{secrets.token_hex(12)}/0?wx_fmt={fmt}"
            self.state.images[url] = len(data)
        return {"url": url, "errcode": 0, "errmsg": "ok"}

    def add_material(
        self, query: dict[str, str], files: dict[str, tuple[str, bytes]]
    ) -> dict[str, Any]:
        kind = query.get("type", "")
        if "media" not in files:
            raise ApiError(41005, "media data missing")
        name, data = files["media"]
        fmt = _image_format(data)
        if kind == "thumb":
            if fmt != "jpg":
                raise ApiError(40113, "unsupported file type: thumb must be JPG")
            if len(data) > THUMB_MAX:
                raise ApiError(40009, "invalid image size: thumb must be at most 64KB")
        elif kind == "image":
            if fmt not in ("jpg", "png", "gif", "bmp"):
                raise ApiError(40113, "unsupported file type")
            if len(data) > IMAGE_MAX:
                raise ApiError(40009, "invalid image size")
        else:
            raise ApiError(40004, f"invalid media type {kind!r}")
        with self.state.lock:
            media_id = "FAKEMEDIA" + secrets.token_urlsafe(18)
            self.state.materials[media_id] = kind
        return {"media_id": media_id, "url": f"{MMBIZ_PREFIX}{fmt}/{media_id}/0"}

    def draft_add(self, body: dict[str, Any]) -> dict[str, Any]:
        articles = body.get("articles")
        if not isinstance(articles, list) or not articles:
            raise ApiError(44003, "empty news data")
        if len(articles) > 8:
            raise ApiError(45008, "article size out of limit: at most 8 articles")
        for n, article in enumerate(articles, 1):
            self._check_article(n, article)
        with self.state.lock:
            media_id = "FAKEDRAFT" + secrets.token_urlsafe(18)
            self.state.drafts[media_id] = articles
        return {"media_id": media_id}

    def _check_article(self, n: int, a: dict[str, Any]) -> None:
        where = f"article {n}"
        title = a.get("title") or ""
        if not title:
            raise ApiError(44003, f"{where}: title missing")
        if len(title) > 32:
            raise ApiError(45003, f"{where}: title size out of limit (32 characters)")
        if len(a.get("author") or "") > 16:
            raise ApiError(45110, f"{where}: author size out of limit (16 characters)")
        if len(a.get("digest") or "") > 128:
            raise ApiError(45004, f"{where}: description size out of limit (128 characters)")
        content = a.get("content") or ""
        if not content:
            raise ApiError(44003, f"{where}: content missing")
        if len(content) >= 20000 or len(content.encode("utf-8")) >= ONE_MB:
            raise ApiError(45002, f"{where}: content size out of limit (20,000 characters, 1MB)")
        if len((a.get("content_source_url") or "").encode("utf-8")) > 1024:
            raise ApiError(45005, f"{where}: content_source_url size out of limit (1KB)")
        thumb = a.get("thumb_media_id") or ""
        if self.state.materials.get(thumb) not in ("thumb", "image"):
            raise ApiError(
                40007, f"{where}: invalid media_id (thumb_media_id must be a permanent material)"
            )
        for src in _img_sources(content):
            if src not in self.state.images:
                raise ApiError(
                    45166,
                    f"{where}: invalid content: image {src[:80]!r} was not uploaded with uploadimg",
                )
        for flag in ("need_open_comment", "only_fans_can_comment"):
            if a.get(flag, 0) not in (0, 1):
                raise ApiError(40097, f"{where}: invalid args {flag}")

    def draft_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            articles = self.state.drafts.get(body.get("media_id", ""))
            if articles is None:
                raise ApiError(40007, "invalid media_id")
            return {"news_item": articles}

    def _require_verified(self, what: str) -> None:
        if not self.state.verified:
            raise ApiError(48001, f"api unauthorized: {what} needs a verified account")

    def freepublish_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        media_id = body.get("media_id", "")
        self._require_verified("freepublish")
        with self.state.lock:
            if media_id not in self.state.drafts:
                raise ApiError(40007, "invalid media_id")
            self.state.consumed_drafts.add(media_id)
            publish_id = str(self.state.next_id())
            self.state.publishes[publish_id] = {"media_id": media_id, "polls": 0}
        return {
            "errcode": 0,
            "errmsg": "ok",
            "publish_id": publish_id,
            "msg_data_id": self.state.next_id(),
        }

    def freepublish_get(self, body: dict[str, Any]) -> dict[str, Any]:
        publish_id = str(body.get("publish_id", ""))
        with self.state.lock:
            job = self.state.publishes.get(publish_id)
            if job is None:
                raise ApiError(53600, "invalid publish_id")
            job["polls"] += 1
            if job["polls"] <= self.state.publish_polls:
                return {"publish_id": publish_id, "publish_status": 1}
            articles = self.state.drafts.pop(job["media_id"], None) or job.setdefault(
                "articles", []
            )
            job["articles"] = articles
            article_id = "FAKEART" + hashlib.sha1(publish_id.encode()).hexdigest()[:16]
            return {
                "publish_id": publish_id,
                "publish_status": 0,
                "article_id": article_id,
                "article_detail": {
                    "count": len(articles),
                    "item": [
                        {"idx": i, "article_url": f"https://mp.weixin.qq.com/s/{article_id}_{i}"}
                        for i in range(1, len(articles) + 1)
                    ],
                },
                "fail_idx": [],
            }

    def _check_mpnews(self, body: dict[str, Any]) -> str:
        if body.get("msgtype") != "mpnews":
            raise ApiError(40008, "invalid message type (the fake supports mpnews)")
        media_id = (body.get("mpnews") or {}).get("media_id", "")
        if media_id not in self.state.drafts:
            raise ApiError(40007, "invalid media_id")
        return media_id

    def _dedup(self, clientmsgid: str | None) -> None:
        if clientmsgid is None:
            return
        if len(clientmsgid.encode("utf-8")) > 64:
            raise ApiError(45067, "clientmsgid size out of limit")
        seen = self.state.clientmsgids.get(clientmsgid)
        if seen and time.time() - seen[1] < CLIENTMSGID_TTL:
            raise ApiError(45065, "clientmsgid exist", msg_id=seen[0])

    def _rate(self) -> None:
        """About 60 mass-send requests a minute: more answer 45011 (too frequent)."""
        if self.state.mass_per_minute is None:
            return
        now = time.time()
        self.state.mass_times = [t for t in self.state.mass_times if now - t < 60]
        if len(self.state.mass_times) >= self.state.mass_per_minute:
            raise ApiError(45011, "api minute-quota reach limit, mass send too frequent")
        self.state.mass_times.append(now)

    def _account_allows(self, mode: str, openids: list[str]) -> None:
        """What the account type may send: openid lists need a verified service account; a
        subscription account sends to all or one tag, once a day."""
        if mode == "preview":
            return
        self._require_verified("mass send")
        if mode == "openids" and self.state.account_type != "service":
            raise ApiError(48001, "api unauthorized: mass send by openid needs a service account")
        if mode == "tag" and self.state.account_type == "subscription":
            day = time.strftime("%Y-%m-%d", time.gmtime())
            if self.state.sendall_days.get(day, 0) >= 1:
                raise ApiError(45028, "has no masssend quota (one mass send a day)")
            self.state.sendall_days[day] = self.state.sendall_days.get(day, 0) + 1

    def _record_mass(
        self, mode: str, body: dict[str, Any], openids: list[str], tag_id: int | None
    ) -> dict[str, Any]:
        clientmsgid = body.get("clientmsgid")
        with self.state.lock:
            daily = self.state.mass_daily_calls
            if mode != "preview" and daily is not None and self.state.mass_day_used >= daily:
                raise ApiError(45009, "reach max api daily quota limit")
            self._dedup(clientmsgid)  # before the media check: a retry of a sent chunk is 45065
            media_id = self._check_mpnews(body)
            if mode != "preview":
                self._rate()
            self._account_allows(mode, openids)
            if mode != "preview" and self.state.mass_quota is not None:
                if self.state.mass_quota <= 0:
                    raise ApiError(45028, "has no masssend quota")
                self.state.mass_quota -= 1
            if mode != "preview":  # a draft leaves the draft box once it is mass-sent
                articles = self.state.drafts.pop(media_id)
                self.state.consumed_drafts.add(media_id)
                self.state.monthly_received.update(openids)
            else:
                articles = self.state.drafts[media_id]
            record = MassRecord(
                self.state.next_id(),
                self.state.next_id(),
                clientmsgid,
                mode,
                media_id,
                openids,
                tag_id,
                time.time(),
            )
            self.state.mass[record.msg_id] = record
            self.state.sent_articles[record.msg_data_id] = articles
            if clientmsgid is not None:
                self.state.clientmsgids[clientmsgid] = (record.msg_id, record.at)
            if mode != "preview":
                self.state.mass_day_used += 1
        if mode != "preview" and self.state.auto_emit and self.state.callback_url:
            threading.Thread(target=self._emit_quietly, args=(record.msg_id,), daemon=True).start()
        if mode == "preview":
            return {"errcode": 0, "errmsg": "preview success", "msg_id": record.msg_id}
        return {
            "errcode": 0,
            "errmsg": "send job submission success",
            "msg_id": record.msg_id,
            "msg_data_id": record.msg_data_id,
        }

    def mass_send(self, body: dict[str, Any]) -> dict[str, Any]:
        touser = body.get("touser")
        if not isinstance(touser, list) or not 2 <= len(touser) <= 10000:
            raise ApiError(40130, "invalid openid list size, at least two openid, at most 10000")
        if len(set(touser)) != len(touser) or not all(isinstance(o, str) and o for o in touser):
            raise ApiError(40003, "invalid openid in touser")
        return self._record_mass("openids", body, list(touser), None)

    def mass_sendall(self, body: dict[str, Any]) -> dict[str, Any]:
        filt = body.get("filter") or {}
        if "group_id" in filt:
            raise ApiError(40050, "invalid group id: use filter.tag_id")
        tag_id = filt.get("tag_id")
        if not filt.get("is_to_all") and tag_id is None:
            raise ApiError(40050, "invalid tag id")
        if tag_id is not None and self.state.tag_sizes and tag_id not in self.state.tag_sizes:
            raise ApiError(45159, "invalid tag")
        return self._record_mass("tag", body, [], tag_id)

    def mass_preview(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("touser") and not body.get("towxname"):
            raise ApiError(40003, "invalid openid")
        if body.get("towxname") and not re.fullmatch(
            r"[A-Za-z][-_A-Za-z0-9]{5,19}", body["towxname"]
        ):
            raise ApiError(40132, "invalid username (WeChat ID)")
        target = body.get("touser") or "wxname:" + body["towxname"]
        return self._record_mass("preview", body, [target], None)

    def mass_get(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.state.lock:
            record = self.state.mass.get(int(body.get("msg_id", 0)))
            if record is None:
                raise ApiError(40007, "invalid msg id")
            return {"msg_id": record.msg_id, "msg_status": record.status}

    def template_send(self, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("touser"):
            raise ApiError(40003, "invalid openid")
        if not body.get("template_id"):
            raise ApiError(40037, "invalid template_id")
        with self.state.lock:
            msgid = self.state.next_id()
            self.state.templates[msgid] = {
                "touser": body["touser"],
                "url": body.get("url"),
                "data": body.get("data"),
                "at": time.time(),
            }
        if self.state.auto_emit and self.state.callback_url:
            threading.Thread(target=self._emit_template_quietly, args=(msgid,), daemon=True).start()
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    # -- events ---------------------------------------------------------------------------------
    def mass_finish_xml(self, msg_id: int, *, status: str | None = None) -> str:
        status = status or self.state.finish_status
        with self.state.lock:
            record = self.state.mass[msg_id]
            if status != "send success":  # mass/get agrees with the event
                record.status = "SEND_FAIL"
            total = (
                len(record.openids)
                if record.mode == "openids"
                else self.state.tag_sizes.get(record.tag_id or 0, 0)
            )
            # a service account's follower receives at most 4 mass messages a month
            over_monthly = sum(1 for o in record.openids if self.state.monthly_received[o] > 4)
        filtered = total - int(total * self.state.filter_ratio) - over_monthly
        errors = 0 if status == "send success" else filtered
        return (
            "<xml>"
            f"<ToUserName><![CDATA[{self.state.original_id}]]></ToUserName>"
            "<FromUserName><![CDATA[oFakeSystem000000000000000000]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[MASSSENDJOBFINISH]]></Event>"
            f"<MsgID>{msg_id}</MsgID>"
            f"<Status><![CDATA[{status}]]></Status>"
            f"<TotalCount>{total}</TotalCount>"
            f"<FilterCount>{filtered}</FilterCount>"
            f"<SentCount>{filtered - errors}</SentCount>"
            f"<ErrorCount>{errors}</ErrorCount>"
            "<CopyrightCheckResult><Count>0</Count><ResultList></ResultList>"
            "<CheckState>1</CheckState></CopyrightCheckResult>"
            "<ArticleUrlResult><Count>1</Count><ResultList><item><ArticleIdx>1</ArticleIdx>"
            f"<ArticleUrl><![CDATA[https://mp.weixin.qq.com/s/fake{msg_id}]]></ArticleUrl>"
            "</item></ResultList></ArticleUrlResult>"
            "</xml>"
        )

    def template_finish_xml(self, msgid: int, *, status: str = "success") -> str:
        with self.state.lock:
            openid = self.state.templates[msgid]["touser"]
        return (
            "<xml>"
            f"<ToUserName><![CDATA[{self.state.original_id}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime>"
            "<MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event>"
            f"<MsgID>{msgid}</MsgID>"
            f"<Status><![CDATA[{status}]]></Status>"
            "</xml>"
        )

    def sign_and_encrypt(
        self, xml: str, *, openid: str = "oFakeSystem"
    ) -> tuple[dict[str, str], bytes]:
        """(query params, body) exactly as WeChat posts an event in safe (AES) mode."""
        token, aes_key = self.state.callback_token, self.state.callback_aes_key
        timestamp, nonce = str(int(time.time())), secrets.token_hex(5)
        crypto = WeChatCrypto(token, aes_key, self.state.app_id)
        encrypted = crypto.encrypt_message(xml, nonce, timestamp)
        encrypt = encrypted.split("<Encrypt><![CDATA[", 1)[1].split("]]></Encrypt>", 1)[0]
        body = (
            f"<xml><ToUserName><![CDATA[{self.state.original_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        ).encode()
        params = {
            "signature": _sha1_sorted(token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": openid,
            "encrypt_type": "aes",
            "msg_signature": _sha1_sorted(token, timestamp, nonce, encrypt),
        }
        return params, body

    def post_event(
        self, xml: str, url: str | None = None, *, openid: str = "oFakeSystem"
    ) -> tuple[int, str]:
        target = url or self.state.callback_url
        if not target:
            raise ValueError("no callback URL configured for the fake WeChat server")
        params, body = self.sign_and_encrypt(xml, openid=openid)
        sep = "&" if "?" in target else "?"
        req = urllib.request.Request(
            target + sep + urllib.parse.urlencode(params),
            data=body,
            headers={"Content-Type": "text/xml"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as res:  # noqa: S310 - loopback/configured URL
            answer = res.read().decode()
        with self.state.lock:
            self.state.emitted.append({"xml": xml, "status": res.status, "answer": answer})
        return res.status, answer

    def _emit_quietly(self, msg_id: int) -> None:
        time.sleep(0.05)
        try:
            self.post_event(self.mass_finish_xml(msg_id))
        except Exception as exc:  # the fake must not crash on a dead callback endpoint
            log.warning("wechat.fake.emit_failed msg_id=%s error=%s", msg_id, exc)

    def _emit_template_quietly(self, msgid: int) -> None:
        time.sleep(0.05)
        try:
            with self.state.lock:
                openid = self.state.templates[msgid]["touser"]
            self.post_event(self.template_finish_xml(msgid), openid=openid)
        except Exception as exc:
            log.warning("wechat.fake.emit_failed msgid=%s error=%s", msgid, exc)


def _img_sources(html: str) -> list[str]:
    return re.findall(r"<img\b[^>]*?\bsrc\s*=\s*[\"']([^\"']*)[\"']", html, flags=re.I)


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    """multipart/form-data → {field: (filename, bytes)}, byte-exact (binary images)."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or not match:
        return {}
    files: dict[str, tuple[str, bytes]] = {}
    for part in body.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.partition(b"\r\n\r\n")
        disposition = head.decode("utf-8", "replace")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name:
            files[name.group(1)] = (
                filename.group(1) if filename else "",
                data.removesuffix(b"\r\n"),
            )
    return files


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY each keep-alive request
    # waits ~40 ms for the client's delayed ACK (Nagle), which no real WeChat server does
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counters instead
        log.debug("wechat.fake.request " + format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _answer(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; encoding=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        api: FakeWechatApi = self.server.api
        state = api.state
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if url.path.startswith("/_fake/"):
            self._answer(200, self._control(url.path[len("/_fake/") :], raw))
            return
        path = url.path.removeprefix("/cgi-bin/").strip("/")
        with state.lock:
            state.calls[path] += 1
        fault = state.take_fault(path)
        if fault and fault.drop and not fault.after_processing:
            self._drop()
            return
        try:
            if fault and fault.errcode is not None:
                raise ApiError(fault.errcode, fault.errmsg)
            payload = self._route(api, method, path, query, raw)
        except ApiError as exc:
            payload = exc.body
        if fault and fault.drop:
            self._drop()
            return
        self._answer(200, payload)

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(2)
        except OSError:
            pass

    def _route(
        self, api: FakeWechatApi, method: str, path: str, query: dict[str, str], raw: bytes
    ) -> dict[str, Any]:
        if api.state.ip_whitelist_error:
            raise ApiError(40164, "invalid ip 127.0.0.1, not in whitelist")
        if path == "token":
            return api.token(query)
        if path == "sns/oauth2/access_token":
            return api.sns_access_token(query)
        if path == "stable_token":
            return api.stable_token(json.loads(raw.decode("utf-8") or "{}"))
        with api.state.lock:
            api._check_token(query)
        if path == "user/get":
            return api.user_get(query)
        if path == "tags/get":
            return api.tags_get()
        if path in ("media/uploadimg", "material/add_material"):
            files = _parse_multipart(self.headers.get("Content-Type", ""), raw)
            return (
                api.uploadimg(files)
                if path == "media/uploadimg"
                else api.add_material(query, files)
            )
        try:
            body = json.loads(raw.decode("utf-8") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ApiError(47001, "data format error: body is not JSON") from None
        routes = {
            "draft/add": api.draft_add,
            "draft/get": api.draft_get,
            "user/info/batchget": api.user_batchget,
            "datacube/getarticlesummary": lambda b: api.datacube("getarticlesummary", b),
            "datacube/getarticletotal": lambda b: api.datacube("getarticletotal", b),
            "freepublish/submit": api.freepublish_submit,
            "freepublish/get": api.freepublish_get,
            "message/mass/send": api.mass_send,
            "message/mass/sendall": api.mass_sendall,
            "message/mass/preview": api.mass_preview,
            "message/mass/get": api.mass_get,
            "message/template/send": api.template_send,
        }
        if path not in routes:
            raise ApiError(48001, f"api unauthorized (the fake has no {path})")
        return routes[path](body)

    def _control(self, action: str, raw: bytes) -> dict[str, Any]:
        api: FakeWechatApi = self.server.api
        data = json.loads(raw.decode() or "{}")
        if action == "faults":
            api.state.add_fault(**data)
        elif action == "expire-tokens":
            api.state.expire_tokens()
        elif action == "emit":
            status, answer = api.post_event(api.mass_finish_xml(int(data["msg_id"])))
            return {"status": status, "answer": answer}
        elif action == "quota":
            api.state.mass_quota = data.get("mass_quota")
        return api.state.snapshot()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: FakeWechatApi


class FakeWechatServer:
    """Run the fake in a background thread: `with FakeWechatServer() as fake: fake.base_url`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, state: FakeState | None = None):
        self.state = state or FakeState()
        self.api = FakeWechatApi(self.state)
        self._server = _Server((host, port), _Handler)
        self._server.api = self.api
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/"

    def start(self) -> FakeWechatServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-wechat", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeWechatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings_for(self, settings: Any) -> Any:
        """The given Settings pointed at this fake (app id/secret and base URL)."""
        return settings.replace(
            wechat_app_id=self.state.app_id,
            wechat_app_secret=self.state.app_secret,
            wechat_api_base_url=self.base_url,
        )


def new_aes_key() -> str:
    """A random 43-character EncodingAESKey, as the WeChat console generates."""
    return base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
