"""Builders shared by the WeChat tests, the demo and the bench: articles, issues, followers.

Why in the package: the demo needs the same follower seeding as the tests, and the renderer's
WechatArticle shape is mirrored here so the WeChat side can be exercised on its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from PIL import Image as PILImage
from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from dispatch.models import Issue, utcnow


@dataclass(frozen=True)
class ArticleStub:
    """The fields of dispatch.render.wechat.WechatArticle that publishing reads."""

    title: str
    content: str
    thumb_image: Path
    author: str = ""
    digest: str = ""
    content_source_url: str = ""
    need_open_comment: bool = False
    only_fans_can_comment: bool = False
    images: tuple[Path, ...] = field(default=())


def make_image(
    path: Path, size: tuple[int, int] = (640, 360), color: tuple[int, int, int] = (30, 90, 160)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = PILImage.new("RGB", size, color)
    for x in range(0, size[0], 16):  # a little texture so PNGs are not trivially tiny
        for y in range(0, size[1], 16):
            img.putpixel((x, y), ((x * 7) % 255, (y * 5) % 255, (x + y) % 255))
    img.save(path)
    return path


def stub_articles(folder: Path, count: int = 2, images_per_article: int = 2) -> list[ArticleStub]:
    """Articles whose content references local images (images/…png) as the renderer emits."""
    cover = make_image(folder / "images" / "cover.png", (900, 383), (200, 40, 40))
    articles = []
    for n in range(1, count + 1):
        paths = tuple(
            make_image(folder / "images" / f"a{n}-{k}.png", color=(20 * n, 30 * k, 90))
            for k in range(1, images_per_article + 1)
        )
        body = "".join(
            f'<p style="margin:0">段落 {n}.{k}</p><img src="images/{p.name}" style="width:100%">'
            for k, p in enumerate(paths, 1)
        )
        articles.append(
            ArticleStub(
                title=f"测试文章 {n}",
                content=f"<section>{body}</section>",
                thumb_image=Path("images/cover.png"),
                author="研究院",
                digest=f"摘要 {n}",
                content_source_url="https://example.org/a",
                images=tuple(Path("images") / p.name for p in paths),
            )
        )
    assert cover.exists()
    return articles


def make_issue(session: Session, slug: str = "wechat-test", folder: Path | None = None) -> Issue:
    """A published issue row (without parsing a source), for channel tests and benches."""
    issue = Issue(
        slug=slug,
        title="工作简报",
        number=1,
        period_from=date(2023, 2, 1),
        period_to=date(2023, 2, 28),
        publisher="研究院",
        locale="zh-CN",
        status="published",
        source_path=str(folder or "."),
        source_text="---\n",
        summary={},
        content_hash=hashlib.sha256(slug.encode()).hexdigest(),
        published_at=utcnow(),
    )
    session.add(issue)
    session.commit()
    return issue


def seed_followers(
    session: Session, count: int, list_slug: str = "wechat-followers", openid_prefix: str = "oFAKE"
) -> int:
    """`count` active subscribers with openids, confirmed on one list; returns the list id."""
    from dispatch.models.subscriber import MailingList, Subscriber, Subscription

    mailing_list = MailingList(slug=list_slug, name=list_slug, description="", optin="single")
    session.add(mailing_list)
    session.flush()
    now = utcnow()
    rows = [
        {
            "email": None,
            "openid": f"{openid_prefix}{i:08d}",
            "name": f"读者{i}",
            "locale": "zh-CN",
            "attributes": {},
            "status": "active",
            "created_at": now,
            "confirmed_at": now,
        }
        for i in range(count)
    ]
    ids = session.scalars(
        insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True), rows
    ).all()
    session.execute(
        insert(Subscription),
        [
            {
                "subscriber_id": sid,
                "list_id": mailing_list.id,
                "status": "confirmed",
                "created_at": now,
                "confirmed_at": now,
            }
            for sid in ids
        ],
    )
    session.commit()
    if (
        session.get_bind().dialect.name == "postgresql"
    ):  # fresh planner statistics after a bulk load
        session.execute(text("ANALYZE subscribers"))
        session.execute(text("ANALYZE subscriptions"))
        session.commit()
    return mailing_list.id


def drafted_issue(
    session: Session, settings, folder: Path, articles: int = 2, images_per_article: int = 1
) -> Issue:
    """A stored issue whose WeChat draft exists on the (fake) API: what a mass send needs."""
    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.publish import ensure_draft

    issue = make_issue(session, folder=folder)
    ensure_draft(
        session,
        WechatClient(settings),
        settings,
        issue,
        articles=stub_articles(folder, articles, images_per_article),
        base_dir=folder,
    )
    return issue
