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
            now = time.time()
            for old, expires in list(self.state.tokens.items()):  # old token: 5 minutes' grace
                self.state.tokens[old] = min(expires, now + self.state.token_overlap)
            token = "FAKE" + secrets.token_urlsafe(24)
            self.state.tokens[token] = now + self.state.token_expires_in
            self.state.token_fetches += 1
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

    def freepublish_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        media_id = body.get("media_id", "")
        with self.state.lock:
            if media_id not in self.state.drafts:
                raise ApiError(40007, "invalid media_id")
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
            articles = self.state.drafts[job["media_id"]]
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

    def _record_mass(
        self, mode: str, body: dict[str, Any], openids: list[str], tag_id: int | None
    ) -> dict[str, Any]:
        media_id = self._check_mpnews(body)
        clientmsgid = body.get("clientmsgid")
        with self.state.lock:
            self._dedup(clientmsgid)
            if mode != "preview" and self.state.mass_quota is not None:
                if self.state.mass_quota <= 0:
                    raise ApiError(45028, "has no masssend quota")
                self.state.mass_quota -= 1
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
            if clientmsgid is not None:
                self.state.clientmsgids[clientmsgid] = (record.msg_id, record.at)
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
        return self._record_mass("preview", body, [body.get("touser", "")], None)

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
    def mass_finish_xml(self, msg_id: int, *, status: str = "send success") -> str:
        with self.state.lock:
            record = self.state.mass[msg_id]
            total = (
                len(record.openids)
                if record.mode == "openids"
                else self.state.tag_sizes.get(record.tag_id or 0, 0)
            )
        filtered = total - int(total * self.state.filter_ratio)
        errors = 0
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
        if path == "token":
            return api.token(query)
        if path == "sns/oauth2/access_token":
            return api.sns_access_token(query)
        with api.state.lock:
            api._check_token(query)
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
