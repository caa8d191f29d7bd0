"""Publish an issue to the Official Account: upload images, create drafts, free-publish.

Why uploads are cached by content hash but drafts are not reused: uploads are slow and count
against WeChat's daily quotas, so the first caller uploads and stores the ids (wechat_media)
and every later draft reuses them. A draft, though, is used once: WeChat takes it out of the
draft box when it is mass-sent or published, and a later send of its media_id gets 40007.
So every mass send claims a draft of its own (`draft_for_send`, keyed by the chunk's
clientmsgid so a retried chunk finds the same one and WeChat de-duplicates it), every
free-publish claims one, and a draft that WeChat no longer has is marked consumed and replaced.
Previews do not consume a draft. The cover is a permanent image material (not the 64 KB thumb
type) with centred 2.35:1 and 1:1 crops. A per-issue lock (Redis when configured) keeps two
workers from building the same draft at once.
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
from dispatch.models import Issue, utcnow
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
COVER_MAX = 2 * 1024 * 1024  # permanent image material takes 10 MB; covers need far less
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
    """(filename, bytes) WeChat accepts for this kind: uploadimg jpg/png < 1 MB; thumb JPG ≤ 64
    KB."""
    data = path.read_bytes()
    is_png = data.startswith(b"\x89PNG")
    is_jpg = data.startswith(b"\xff\xd8\xff")
    if kind == "image" and (is_png or is_jpg) and len(data) <= UPLOADIMG_MAX:
        return path.name, data
    if kind == "thumb" and is_jpg and len(data) <= THUMB_MAX:
        return path.name, data
    if kind == "cover" and (is_png or is_jpg) and len(data) <= COVER_MAX:
        return path.name, data
    limit = {"thumb": THUMB_MAX, "cover": COVER_MAX}.get(kind, UPLOADIMG_MAX)
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
        """The cover: a permanent image material (material/add_material type=image)."""
        digest = sha256_bytes(path.read_bytes())
        row = self._find(digest, "cover")
        if row is None:
            name, data = prepare_image(path, "cover")
            media_id = self.client.material.add("image", (name, data, _mime(name)))["media_id"]
            self.uploads += 1
            log.info("wechat.upload kind=cover file=%s", path.name)
            row = self._remember(digest, "cover", media_id, None)
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

    Uses the renderer's to_draft_articles (one definition of the payload); then checks that
    no content still points at a local file.
    """
    from dispatch.render.wechat import to_draft_articles

    if len(articles) > 8:
        raise PublishError(MESSAGES.both("too_many_articles", count=len(articles)))
    payload = to_draft_articles(
        list(articles),
        lambda p: thumb_media_id_for(_resolve(Path(p), base_dir)),
        lambda p: image_url_for(_resolve(Path(p), base_dir)),
    )
    for item, article in zip(payload, articles, strict=True):
        cover = _resolve(Path(article.thumb_image), base_dir)
        item.update(cover_crops(cover))
    issued: set[str] = set()
    for n, item in enumerate(payload, 1):
        for match in _IMG_SRC.finditer(item.get("content", "")):
            src = match.group(3)
            if not src.startswith(("http://mmbiz.qpic.cn/", "https://mmbiz.qpic.cn/")):
                raise PublishError(MESSAGES.both("local_image_left", n=n, src=src))
            issued.add(src)
    return payload


def _crop(width: int, height: int, ratio: float) -> str:
    """A centred crop of this aspect ratio as WeChat's X1_Y1_X2_Y2 fractions of the image."""
    if width / height > ratio:  # too wide: cut the sides
        keep = height * ratio / width
        x1, y1, x2, y2 = (1 - keep) / 2, 0.0, (1 + keep) / 2, 1.0
    else:  # too tall: cut top and bottom
        keep = width / ratio / height
        x1, y1, x2, y2 = 0.0, (1 - keep) / 2, 1.0, (1 + keep) / 2
    return "_".join(f"{v:.6f}" for v in (x1, y1, x2, y2))


def cover_crops(path: Path) -> dict[str, str]:
    """pic_crop_235_1 (the feed's wide card) and pic_crop_1_1 (the square) for a cover."""
    try:
        with PILImage.open(path) as img:
            width, height = img.size
    except OSError:
        return {}
    return {"pic_crop_235_1": _crop(width, height, 2.35), "pic_crop_1_1": _crop(width, height, 1)}


def render_articles(issue: Issue, settings: Settings) -> tuple[list[Any], Path]:
    """The issue's WeChat articles (renderer seam) and the folder their image paths are under."""
    from dispatch.content.store import load_issue_doc
    from dispatch.render.wechat import render_wechat

    doc = load_issue_doc(issue)
    return list(render_wechat(doc, settings)), doc.source_dir


# -- the publishing flow -------------------------------------------------------------------------
def upload_media(session: Session, client: WechatClient, settings: Settings, issue: Issue) -> int:
    """Render the issue and upload every image and cover not uploaded yet (no draft made):
    the slow part of a send, done before the engine claims rows. Returns the uploads done."""
    articles, base_dir = render_articles(issue, settings)
    cache = MediaCache(session, client)
    build_draft_articles(articles, base_dir, cache.thumb_media_id, cache.image_url)
    return cache.uploads


def _drafts(client: WechatClient, issue: Issue):  # type: ignore[no-untyped-def]
    return select(WechatDraft).where(
        WechatDraft.account == client.account,
        WechatDraft.issue_id == issue.id,
        WechatDraft.content_hash == issue.content_hash,
    )


def find_draft(session: Session, client: WechatClient, issue: Issue) -> WechatDraft | None:
    """A draft of this rendering nobody has claimed and WeChat has not consumed (for previews
    and for the next send to claim)."""
    return session.scalars(
        _drafts(client, issue)
        .where(WechatDraft.used_by.is_(None), WechatDraft.consumed_at.is_(None))
        .order_by(WechatDraft.id)
    ).first()


def draft_alive(client: WechatClient, draft: WechatDraft) -> bool:
    """draft/get: is the draft still in the draft box (someone may have sent or published it
    from the WeChat console)? 40007 means gone; other errors are raised."""
    try:
        client.draft_get(draft.media_id)
    except Exception as exc:
        err = WechatError.from_exception(exc)
        if err.errcode == 40007:
            return False
        raise err from exc
    return True


def mark_consumed(session: Session, draft: WechatDraft) -> None:
    if draft.consumed_at is None:
        draft.consumed_at = utcnow()
        session.commit()


def _create_draft(
    session: Session,
    client: WechatClient,
    settings: Settings,
    issue: Issue,
    *,
    articles: Sequence[Any] | None,
    base_dir: Path | None,
    used_by: str | None,
    comments: tuple[bool, bool] | None = None,
) -> tuple[WechatDraft, int]:
    cache = MediaCache(session, client)
    earlier = (
        next(
            (
                d.payload
                for d in session.scalars(_drafts(client, issue).order_by(WechatDraft.id.desc()))
                if d.payload
            ),
            None,
        )
        if articles is None
        else None
    )
    if earlier:  # the same rendering, already uploaded
        payload = [dict(item) for item in earlier]
    else:
        if articles is None:
            articles, base_dir = render_articles(issue, settings)
        payload = build_draft_articles(articles, base_dir, cache.thumb_media_id, cache.image_url)
    stored = [dict(item) for item in payload]
    if comments is not None:  # per-campaign comment settings
        for item in payload:
            item["need_open_comment"] = int(comments[0])
            item["only_fans_can_comment"] = int(comments[0] and comments[1])
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
        used_by=used_by,
        payload=stored,
    )
    session.add(draft)
    session.commit()
    log.info(
        "wechat.draft.created issue_id=%s articles=%s uploads=%s used_by=%s",
        issue.id,
        len(payload),
        cache.uploads,
        used_by,
    )
    return draft, cache.uploads


def ensure_draft(
    session: Session,
    client: WechatClient,
    settings: Settings,
    issue: Issue,
    *,
    articles: Sequence[Any] | None = None,
    base_dir: Path | None = None,
    check: bool = False,
) -> PublishResult:
    """An unclaimed draft of the issue (for previews, or ready for the next send), creating it
    (and uploading what is missing) when there is none. `check` asks WeChat whether the draft
    is still there first (a consumed one is marked and replaced)."""
    draft = find_draft(session, client, issue)
    if draft is not None and check and not draft_alive(client, draft):
        mark_consumed(session, draft)
        draft = None
    if draft is not None:
        return PublishResult(draft.media_id, draft.article_count, 0, True)
    with publish_lock(settings, f"{client.account}:{issue.id}:{issue.content_hash[:16]}"):
        session.expire_all()
        draft = find_draft(session, client, issue)
        if draft is not None:
            return PublishResult(draft.media_id, draft.article_count, 0, True)
        draft, uploads = _create_draft(
            session, client, settings, issue, articles=articles, base_dir=base_dir, used_by=None
        )
        return PublishResult(draft.media_id, draft.article_count, uploads, False)


def draft_for_send(
    session: Session,
    client: WechatClient,
    settings: Settings,
    issue: Issue,
    use_key: str,
    *,
    comments: tuple[bool, bool] | None = None,
    articles: Sequence[Any] | None = None,
    base_dir: Path | None = None,
) -> WechatDraft:
    """The draft this mass send (or publish) uses: the one it claimed before (a retry: WeChat
    de-duplicates the send by clientmsgid), else a fresh one claimed under `use_key`.

    Never a draft another send used: a draft leaves the draft box once mass-sent or published.
    """
    mine = session.scalars(_drafts(client, issue).where(WechatDraft.used_by == use_key)).first()
    if mine is not None:
        return mine
    with publish_lock(settings, f"{client.account}:{issue.id}:{issue.content_hash[:16]}"):
        session.expire_all()
        mine = session.scalars(_drafts(client, issue).where(WechatDraft.used_by == use_key)).first()
        if mine is not None:
            return mine
        spare = find_draft(session, client, issue) if comments is None else None
        if spare is not None and draft_alive(client, spare):
            spare.used_by = use_key
            session.commit()
            return spare
        if spare is not None:
            mark_consumed(session, spare)
        draft, _ = _create_draft(
            session,
            client,
            settings,
            issue,
            articles=articles,
            base_dir=base_dir,
            used_by=use_key,
            comments=comments,
        )
        return draft


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
        draft.consumed_at = utcnow()  # published: the draft leaves the draft box
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
    """Draft (uploads cached) and, if asked, free-publish it with a draft of its own: the
    `dispatch wechat publish` command. Publishing the same rendering again reuses its result."""
    if not free:
        return ensure_draft(
            session, client, settings, issue, articles=articles, base_dir=base_dir, check=True
        )
    key = f"publish:{issue.id}:{issue.content_hash[:32]}"
    before = len(session.scalars(_drafts(client, issue)).all())
    draft = draft_for_send(
        session, client, settings, issue, key, articles=articles, base_dir=base_dir
    )
    reused = len(session.scalars(_drafts(client, issue)).all()) == before
    draft = free_publish(session, client, draft, poll_interval=poll_interval)
    return PublishResult(
        draft.media_id, draft.article_count, 0, reused, draft.publish_id, draft.article_url
    )
