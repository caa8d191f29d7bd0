"""The WeChat draft payload: ≤ 8 articles, every field within WeChat's limits, safe HTML, real
images."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dispatch.config import Settings, load_settings
from dispatch.content.model import Heading, IssueDoc, Paragraph, Sidebar
from dispatch.content.parse import parse_issue
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.render.wechat import (
    AUTHOR_MAX_CHARS,
    CONTENT_MAX_BYTES,
    CONTENT_MAX_CHARS,
    CONTENT_SOURCE_URL_MAX_BYTES,
    DIGEST_MAX_CHARS,
    MAX_ARTICLES_PER_MESSAGE,
    TITLE_MAX_CHARS,
    WechatArticle,
    render_wechat,
    shorten,
    to_draft_articles,
)

BASE = "https://bulletin.example.org"
FIXTURES = Path(__file__).parent / "fixtures" / "issues"
FORBIDDEN_TAGS = {
    "script",
    "iframe",
    "form",
    "style",
    "link",
    "object",
    "embed",
    "input",
    "frame",
    "meta",
}


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    return load_settings(env={}).replace(secret_key="k", public_base_url=BASE)


@pytest.fixture(scope="module")
def doc() -> IssueDoc:
    return parse_issue(SAMPLE_ISSUE_DIR)


@pytest.fixture(scope="module")
def articles(doc, plain_settings) -> list[WechatArticle]:
    return render_wechat(doc, plain_settings)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(content: str) -> _Tags:
    t = _Tags()
    t.feed(content)
    t.close()
    return t


def test_at_most_eight_articles_each_within_limits(articles):
    assert 1 <= len(articles) <= MAX_ARTICLES_PER_MESSAGE
    for a in articles:
        assert 0 < len(a.title) <= TITLE_MAX_CHARS
        assert 0 < len(a.author) <= AUTHOR_MAX_CHARS
        assert 0 < len(a.digest) <= DIGEST_MAX_CHARS
        assert len(a.content) < CONTENT_MAX_CHARS
        assert len(a.content.encode("utf-8")) < CONTENT_MAX_BYTES
        assert len(a.content_source_url.encode("utf-8")) <= CONTENT_SOURCE_URL_MAX_BYTES
        assert a.content_source_url.startswith(f"{BASE}/issues/2023-02")
        assert a.need_open_comment in (0, 1) and a.only_fans_can_comment in (0, 1)


def test_content_is_wechat_safe_html(articles):
    for a in articles:
        parsed = parse(a.content)
        for tag, attrs in parsed.tags:
            assert tag not in FORBIDDEN_TAGS, tag
            assert "class" not in attrs and "id" not in attrs, (tag, attrs)
            assert not any(name.startswith("on") for name in attrs), attrs
            assert tag != "a", "WeChat drops external links; they are shown as text instead"
        assert "<style" not in a.content and "javascript:" not in a.content


def test_every_image_reference_resolves_to_a_file(articles, doc):
    seen = set()
    for a in articles:
        assert a.thumb_image.is_file()
        srcs = [attrs["src"] for tag, attrs in parse(a.content).tags if tag == "img"]
        assert set(srcs) == {str(p) for p in a.images}
        for src in srcs:
            assert Path(src).is_file() and Path(src).suffix in (".png", ".jpg", ".jpeg")
        for tag, attrs in parse(a.content).tags:
            if tag == "img":
                assert attrs.get("alt")
        seen.update(srcs)
    every_content_image = {str(img.path) for img in doc.images() if img != doc.meta.cover}
    assert every_content_image == seen
    assert articles[0].thumb_image == doc.meta.cover.path


def test_every_article_is_present_whole_or_with_a_visible_archive_link(articles, doc):
    """No silent truncation: each paragraph is in some article, or a note links to the archive."""
    contents = "".join(a.content for a in articles)
    text = "".join(parse(contents).text)
    for article in doc.articles:
        assert article.title in text  # the full title is at the top of its content
        anchor_url = f"{BASE}/issues/2023-02#{article.anchor}"

        def paragraphs(blocks):
            for b in blocks:
                if isinstance(b, Paragraph):  # link URLs are shown beside their text
                    yield from (i.text for i in b.inlines)
                elif isinstance(b, Sidebar):
                    yield from paragraphs(b.blocks)
                elif isinstance(b, Heading):
                    yield b.text

        missing = [p for p in paragraphs(article.blocks) if p not in text]
        if missing:
            assert anchor_url in text and "阅读原文" in text, (article.title, missing[:1])


def test_long_policy_text_is_split_into_numbered_parts(articles):
    parts = [a for a in articles if a.title.startswith("中共中央 国务院印发《质量强国建设纲要》")]
    assert len(parts) >= 2
    assert [a.title[-5:] for a in parts] == [
        f"（{i}/{len(parts)}）" for i in range(1, len(parts) + 1)
    ]


def test_long_titles_get_an_ellipsis_within_the_limit():
    title = "中消协：2022年汽车及零部件投诉4.38万件 汽车消费领域不公平格式条款问题频发"
    short = shorten(title, TITLE_MAX_CHARS)
    assert len(short) == TITLE_MAX_CHARS and short.endswith("…")
    assert shorten("短标题", TITLE_MAX_CHARS) == "短标题"


def test_many_sections_still_fit_eight_articles(tmp_path, plain_settings):
    copy = tmp_path / "issue"
    shutil.copytree(FIXTURES / "valid", copy)
    extra = "".join(
        f"\n# 栏目{i}\n\n## 文章{i}\nsource: 示例\nsource_url: https://www.example.org/{i}\n"
        f"date: 2023-02-{i + 1:02d}\n\n第{i}篇的正文。\n"
        for i in range(1, 13)
    )
    with (copy / "issue.md").open("a", encoding="utf-8") as fh:
        fh.write(extra)
    doc = parse_issue(copy)
    assert len(doc.articles) == 14
    result = render_wechat(doc, plain_settings)
    assert len(result) <= MAX_ARTICLES_PER_MESSAGE
    text = "".join(a.content for a in result)
    for article in doc.articles:
        assert article.title in text


def test_draft_articles_use_uploaded_urls_and_thumb_ids(articles):
    uploaded = {}

    def image_url_for(path: Path) -> str:
        return uploaded.setdefault(
            path, f"https://mmbiz.qpic.cn/mmbiz_png/{len(uploaded)}/0?wx_fmt=png"
        )

    payload = to_draft_articles(articles, lambda p: f"thumb-{p.name}", image_url_for)
    assert len(payload) == len(articles)
    for a, item in zip(articles, payload, strict=True):
        assert set(item) == {
            "title",
            "author",
            "digest",
            "content",
            "content_source_url",
            "thumb_media_id",
            "need_open_comment",
            "only_fans_can_comment",
        }
        assert item["thumb_media_id"] == f"thumb-{a.thumb_image.name}"
        srcs = [attrs["src"] for tag, attrs in parse(item["content"]).tags if tag == "img"]
        assert all(s.startswith("https://mmbiz.qpic.cn/") for s in srcs)
        assert str(SAMPLE_ISSUE_DIR) not in item["content"]
        assert len(item["content"]) < CONTENT_MAX_CHARS
