"""Publish an issue to the Official Account: upload images, create the draft, free-publish.

Why everything is cached by content hash: uploads are slow and count against WeChat's daily
quotas, and every chunk of every campaign needs the draft. The first caller uploads and stores
the ids (wechat_media, wechat_drafts); a retry, a second worker or a second campaign finds
them and uploads nothing. A per-issue lock (Redis when configured) keeps two workers from
building the same draft at once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_lib
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.errors import DispatchError
from dispatch.i18n import Catalog
from dispatch.models import Issue
from dispatch.models.wechat import WechatDraft, WechatMedia
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import WechatError, classify

log = logging.getLogger("dispatch.wechat.publish")

MESSAGES = Catalog(
    {
        "local_image_left": (
            "第 {n} 篇文章正文仍引用本地图片 {src}，未替换为微信图片地址",
            "article {n}: content still references the local image {src}",
        ),
        "too_many_articles": (
            "一次群发最多 8 篇文章，渲染结果有 {count} 篇",
            "a WeChat message holds at most 8 articles, the rendering has {count}",
        ),
        "image_too_large": (
            "图片 {path} 压缩后仍超过微信上限 {limit} 字节",
            "image {path} is still over WeChat's {limit}-byte limit after compression",
        ),
        "publish_timeout": (
            "发布任务 {publish_id} 在 {seconds} 秒内未完成",
            "publish job {publish_id} did not finish in {seconds} s",
        ),
        "publish_failed": (
            "发布任务 {publish_id} 失败，状态 {status}",
            "publish job {publish_id} failed with status {status}",
        ),
    }
)

UPLOADIMG_MAX = 1024 * 1024 - 1  # media/uploadimg: jpg/png, under 1 MB
THUMB_MAX = 64 * 1024  # thumb material: JPG, at most 64 KB
_IMG_SRC = re.compile(r"(<img\b[^>]*?\bsrc\s*=\s*)([\"'])([^\"']*)\2", re.I)


class PublishError(DispatchError):
    """Publishing cannot succeed with this input (the message says which article / image)."""


@dataclass(frozen=True)
class PublishResult:
    draft_media_id: str
    article_count: int
    uploaded_images: int  # uploads done by this call (0 when everything came from the cache)
    reused: bool  # the draft itself came from the cache
    publish_id: str | None = None
    article_url: str | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- image preparation ---------------------------------------------------------------------
def _jpeg_within(img: PILImage.Image, limit: int) -> bytes:
    img = img.convert("RGB")
    for _ in range(12):
        for quality in (85, 70, 55, 40):
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= limit:
                return buf.getvalue()
        img = img.resize((max(1, img.width * 3 // 4), max(1, img.height * 3 // 4)))
    raise PublishError(MESSAGES.both("image_too_large", path="?", limit=limit))


def prepare_image(path: Path, kind: str) -> tuple[str, bytes]:
    """(filename, bytes) WeChat accepts for this kind: uploadimg jpg/png < 1 MB; thumb JPG ≤ 64 KB."""
    data = path.read_bytes()
    is_png = data.startswith(b"\x89PNG")
    is_jpg = data.startswith(b"\xff\xd8\xff")
    if kind == "image" and (is_png or is_jpg) and len(data) <= UPLOADIMG_MAX:
        return path.name, data
    if kind == "thumb" and is_jpg and len(data) <= THUMB_MAX:
        return path.name, data
    limit = THUMB_MAX if kind == "thumb" else UPLOADIMG_MAX
    try:
        with PILImage.open(path) as img:
            img.load()
            if kind == "thumb":
                img.thumbnail((900, 500))
            return path.stem + ".jpg", _jpeg_within(img, limit)
    except PublishError:
        raise PublishError(MESSAGES.both("image_too_large", path=path, limit=limit)) from None
    except OSError as exc:
        raise PublishError(f"{path}: 无法读取的图片 / not a readable image ({exc})") from None


# -- locking ---------------------------------------------------------------------------------
_local_locks: dict[str, threading.Lock] = {}


@contextmanager
def publish_lock(settings: Settings, key: str) -> Iterator[None]:
    """One publisher per issue at a time: Redis lock across workers, else a process lock."""
    if settings.redis_url:
        client = redis_lib.Redis.from_url(settings.redis_url)
        prefix = getattr(settings, "redis_key_prefix", "") or ""
        with client.lock(
            f"{prefix}dispatch:wechat:publish:{key}", timeout=600, blocking_timeout=600
        ):
            yield
        client.close()
        return
    with _local_locks.setdefault(key, threading.Lock()):
        yield


# -- uploads -----------------------------------------------------------------------------------
class MediaCache:
    """Uploads by content hash, remembered in wechat_media (committed row by row)."""

    def __init__(self, session: Session, client: WechatClient):
        self.session = session
        self.client = client
        self.uploads = 0

    def _find(self, digest: str, kind: str) -> WechatMedia | None:
        return self.session.scalars(
            select(WechatMedia).where(
                WechatMedia.account == self.client.account,
                WechatMedia.content_hash == digest,
                WechatMedia.kind == kind,
            )
        ).first()

    def _remember(
        self, digest: str, kind: str, media_id: str | None, url: str | None
    ) -> WechatMedia:
        row = WechatMedia(
            account=self.client.account, content_hash=digest, kind=kind, media_id=media_id, url=url
        )
        self.session.add(row)
        try:
            self.session.commit()
        except IntegrityError:  # another worker stored it first: use theirs
            self.session.rollback()
            found = self._find(digest, kind)
            assert found is not None
            return found
        return row

    def image_url(self, path: Path) -> str:
        digest = sha256_bytes(path.read_bytes())
        row = self._find(digest, "image")
        if row is None:
            name, data = prepare_image(path, "image")
            url = self.client.media.upload_image((name, data, _mime(name)))
            self.uploads += 1
            log.info("wechat.upload kind=image file=%s", path.name)
            row = self._remember(digest, "image", None, url)
        return str(row.url)

    def thumb_media_id(self, path: Path) -> str:
        digest = sha256_bytes(path.read_bytes())
        row = self._find(digest, "thumb")
        if row is None:
            name, data = prepare_image(path, "thumb")
            media_id = self.client.material.add("thumb", (name, data, _mime(name)))["media_id"]
            self.uploads += 1
            log.info("wechat.upload kind=thumb file=%s", path.name)
            row = self._remember(digest, "thumb", media_id, None)
        return str(row.media_id)


def _mime(name: str) -> str:
    return "image/png" if name.lower().endswith(".png") else "image/jpeg"


# -- draft payload ---------------------------------------------------------------------------------
def _resolve(path: Path, base_dir: Path | None) -> Path:
    if path.is_absolute() or base_dir is None:
        return path
    return base_dir / path


def build_draft_articles(
    articles: Sequence[Any],
    base_dir: Path | None,
    thumb_media_id_for: Callable[[Path], str],
    image_url_for: Callable[[Path], str],
) -> list[dict[str, Any]]:
    """draft/add articles from rendered WechatArticle objects, every <img src> replaced.

    Uses the renderer's to_draft_articles when it exists (one definition of the payload);
    then checks that no content still points at a local file.
    """
    if len(articles) > 8:
        raise PublishError(MESSAGES.both("too_many_articles", count=len(articles)))
    try:
        from dispatch.render.wechat import to_draft_articles
    except ImportError:  # renderer not installed: the same fields, built here
        to_draft_articles = None
    if to_draft_articles is not None:
        payload = to_draft_articles(
            list(articles),
            lambda p: thumb_media_id_for(_resolve(Path(p), base_dir)),
            lambda p: image_url_for(_resolve(Path(p), base_dir)),
        )
    else:
        payload = [_draft_article(a, base_dir, thumb_media_id_for, image_url_for) for a in articles]
    issued: set[str] = set()
    for n, item in enumerate(payload, 1):
        for match in _IMG_SRC.finditer(item.get("content", "")):
            src = match.group(3)
            if not src.startswith(("http://mmbiz.qpic.cn/", "https://mmbiz.qpic.cn/")):
                raise PublishError(MESSAGES.both("local_image_left", n=n, src=src))
            issued.add(src)
    return payload


def _draft_article(
    article: Any,
    base_dir: Path | None,
    thumb_media_id_for: Callable[[Path], str],
    image_url_for: Callable[[Path], str],
) -> dict[str, Any]:
    urls: dict[str, str] = {}
    for image in getattr(article, "images", ()):
        path = _resolve(Path(image), base_dir)
        url = image_url_for(path)
        urls[str(image)] = url
        if base_dir is not None and path.is_relative_to(base_dir):
            urls[str(path.relative_to(base_dir))] = url
        urls[str(path)] = url

    def swap(match: re.Match[str]) -> str:
        src = match.group(3)
        return f"{match.group(1)}{match.group(2)}{urls.get(src, src)}{match.group(2)}"

    return {
        "title": article.title,
        "author": article.author,
        "digest": article.digest,
        "content": _IMG_SRC.sub(swap, article.content),
        "content_source_url": article.content_source_url,
        "thumb_media_id": thumb_media_id_for(_resolve(Path(article.thumb_image), base_dir)),
        "need_open_comment": int(bool(article.need_open_comment)),
        "only_fans_can_comment": int(bool(article.only_fans_can_comment)),
    }


def render_articles(issue: Issue, settings: Settings) -> tuple[list[Any], Path]:
    """The issue's WeChat articles (renderer seam) and the folder their image paths are under."""
    from dispatch.content.store import load_issue_doc
    from dispatch.render.wechat import render_wechat

    doc = load_issue_doc(issue)
    return list(render_wechat(doc, settings)), doc.source_dir


# -- the publishing flow -------------------------------------------------------------------------
def find_draft(session: Session, client: WechatClient, issue: Issue) -> WechatDraft | None:
    return session.scalars(
        select(WechatDraft).where(
            WechatDraft.account == client.account,
            WechatDraft.issue_id == issue.id,
            WechatDraft.content_hash == issue.content_hash,
        )
    ).first()


def ensure_draft(
    session: Session,
    client: WechatClient,
    settings: Settings,
    issue: Issue,
    *,
    articles: Sequence[Any] | None = None,
    base_dir: Path | None = None,
) -> PublishResult:
    """The issue's draft media_id, creating it (and uploading what is missing) only once."""
    draft = find_draft(session, client, issue)
    if draft is not None:
        return PublishResult(
            draft.media_id, draft.article_count, 0, True, draft.publish_id, draft.article_url
        )
    with publish_lock(settings, f"{client.account}:{issue.id}:{issue.content_hash[:16]}"):
        session.expire_all()
        draft = find_draft(session, client, issue)
        if draft is not None:
            return PublishResult(
                draft.media_id, draft.article_count, 0, True, draft.publish_id, draft.article_url
            )
        if articles is None:
            articles, base_dir = render_articles(issue, settings)
        cache = MediaCache(session, client)
        payload = build_draft_articles(articles, base_dir, cache.thumb_media_id, cache.image_url)
        try:
            media_id = client.draft_add(payload)
        except Exception as exc:
            raise WechatError.from_exception(exc) from exc
        draft = WechatDraft(
            account=client.account,
            issue_id=issue.id,
            content_hash=issue.content_hash,
            media_id=media_id,
            article_count=len(payload),
        )
        session.add(draft)
        session.commit()
        log.info(
            "wechat.draft.created issue_id=%s articles=%s uploads=%s",
            issue.id,
            len(payload),
            cache.uploads,
        )
        return PublishResult(media_id, len(payload), cache.uploads, False)


def free_publish(
    session: Session,
    client: WechatClient,
    draft: WechatDraft,
    *,
    poll_interval: float = 2.0,
    timeout: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
) -> WechatDraft:
    """freepublish/submit, then poll freepublish/get until it succeeds, fails or times out.

    Free-publishing puts the articles on the account's page; it does NOT notify followers
    (only mass send does).
    """
    if draft.article_url:
        return draft
    if draft.publish_id is None:
        draft.publish_id = client.freepublish_submit(draft.media_id)
        session.commit()
    waited = 0.0
    while True:
        result = client.freepublish_get(draft.publish_id)
        status = int(result.get("publish_status", -1))
        if status == 0:
            items = (result.get("article_detail") or {}).get("item") or []
            draft.article_id = result.get("article_id")
            draft.article_url = items[0]["article_url"] if items else None
            session.commit()
            return draft
        if status != 1:  # 2 original check failed, 3 regular failure, 4 rejected, 5/6 deleted
            raise WechatError(
                status,
                MESSAGES.both("publish_failed", publish_id=draft.publish_id, status=status),
                classify(-999999),
            )
        if waited >= timeout:
            raise WechatError(
                None,
                MESSAGES.both("publish_timeout", publish_id=draft.publish_id, seconds=timeout),
                classify(None),
            )
        sleep(poll_interval)
        waited += poll_interval


def publish(
    session: Session,
    client: WechatClient,
    settings: Settings,
    issue: Issue,
    *,
    free: bool = False,
    articles: Sequence[Any] | None = None,
    base_dir: Path | None = None,
    poll_interval: float = 2.0,
) -> PublishResult:
    """Draft (cached) and, if asked, free-publish it: the `dispatch wechat publish` command."""
    result = ensure_draft(session, client, settings, issue, articles=articles, base_dir=base_dir)
    if not free:
        return result
    draft = find_draft(session, client, issue)
    assert draft is not None
    draft = free_publish(session, client, draft, poll_interval=poll_interval)
    return PublishResult(
        result.draft_media_id,
        result.article_count,
        result.uploaded_images,
        result.reused,
        draft.publish_id,
        draft.article_url,
    )
