"""Publishing to the fake WeChat API over real HTTP: uploads once, URLs replaced, draft accepted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dispatch.dev.wechat_fake import MMBIZ_PREFIX
from dispatch.dev.wechat_testing import ArticleStub, make_image, make_issue, stub_articles
from dispatch.models.wechat import WechatDraft, WechatMedia
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.wechat.client import WechatClient
from dispatch.wechat.publish import PublishError, ensure_draft, prepare_image, publish

IMG_SRC = re.compile(r"<img\b[^>]*?\bsrc=[\"']([^\"']*)[\"']")


def _draft_sources(fake) -> list[str]:
    return [
        src
        for articles in fake.state.drafts.values()
        for a in articles
        for src in IMG_SRC.findall(a["content"])
    ]


def test_publish_stub_articles_uploads_each_image_once_and_second_publish_reuses(
    session, wechat_settings, fake, tmp_path
):
    articles = stub_articles(tmp_path, count=3, images_per_article=2)
    issue = make_issue(session, folder=tmp_path)
    client = WechatClient(wechat_settings)

    first = ensure_draft(
        session, client, wechat_settings, issue, articles=articles, base_dir=tmp_path
    )

    assert first.article_count == 3 and not first.reused
    assert fake.state.calls["media/uploadimg"] == 6  # every body image once
    assert fake.state.calls["material/add_material"] == 1  # one shared cover
    sources = _draft_sources(fake)
    assert len(sources) == 6 and all(src in fake.state.images for src in sources)
    assert all(src.startswith(MMBIZ_PREFIX) for src in sources)
    assert session.query(WechatMedia).count() == 7

    # a second campaign (fresh client, draft row gone) re-uploads nothing, only re-creates the draft
    session.query(WechatDraft).delete()
    session.commit()
    second = ensure_draft(
        session,
        WechatClient(wechat_settings),
        wechat_settings,
        issue,
        articles=articles,
        base_dir=tmp_path,
    )
    assert second.uploaded_images == 0
    assert fake.state.calls["media/uploadimg"] == 6
    assert fake.state.calls["material/add_material"] == 1
    # and once the draft exists it is reused with no API call at all
    calls = sum(fake.state.calls.values())
    third = ensure_draft(session, client, wechat_settings, issue)
    assert third.reused and third.draft_media_id == second.draft_media_id
    assert sum(fake.state.calls.values()) == calls


def test_fake_refuses_draft_with_local_image_and_publish_refuses_leftover_path(
    session, wechat_settings, fake, tmp_path
):
    make_image(tmp_path / "images" / "cover.png")
    article = ArticleStub(
        title="t",
        content='<p><img src="images/missing.png"></p>',
        thumb_image=Path("images/cover.png"),
    )
    issue = make_issue(session, folder=tmp_path)
    with pytest.raises(PublishError, match="images/missing.png"):
        ensure_draft(
            session,
            WechatClient(wechat_settings),
            wechat_settings,
            issue,
            articles=[article],
            base_dir=tmp_path,
        )
    assert fake.state.calls["draft/add"] == 0
    assert session.query(WechatDraft).count() == 0


def test_fake_enforces_wechat_field_limits(wechat_settings, fake, tmp_path):
    from wechatpy.exceptions import WeChatClientException

    client = WechatClient(wechat_settings)
    thumb = client.add_thumb(Path(_jpeg(tmp_path)))
    ok = {"title": "标题", "content": "<p>x</p>", "thumb_media_id": thumb}
    for field, value, code in [
        ("title", "长" * 33, 45003),
        ("author", "a" * 17, 45110),
        ("digest", "d" * 129, 45004),
        ("content", "c" * 20000, 45002),
        ("thumb_media_id", "nope", 40007),
        ("content", '<img src="https://example.org/x.png">', 45166),
    ]:
        with pytest.raises(WeChatClientException) as info:
            client.draft_add([{**ok, field: value}])
        assert info.value.errcode == code, field
    with pytest.raises(WeChatClientException) as info:
        client.draft_add([ok] * 9)
    assert info.value.errcode == 45008
    assert client.draft_add([ok] * 8)


def _jpeg(tmp_path: Path) -> Path:
    name, data = prepare_image(make_image(tmp_path / "c.png", (1200, 800)), "thumb")
    out = tmp_path / name
    out.write_bytes(data)
    assert len(data) <= 64 * 1024
    return out


def test_free_publish_polls_until_published(session, wechat_settings, fake, tmp_path):
    issue = make_issue(session, folder=tmp_path)
    fake.state.publish_polls = 2
    result = publish(
        session,
        WechatClient(wechat_settings),
        wechat_settings,
        issue,
        free=True,
        articles=stub_articles(tmp_path, 1, 1),
        base_dir=tmp_path,
        poll_interval=0,
    )
    assert result.publish_id and result.article_url.startswith("https://mp.weixin.qq.com/s/")
    assert fake.state.calls["freepublish/get"] == 3


def test_publish_sample_issue(session, wechat_settings, fake):
    """The sample issue through the real parser and renderer: every image once, no local path."""
    from dispatch.content.store import publish_source

    issue = publish_source(session, SAMPLE_ISSUE_DIR)
    session.commit()
    client = WechatClient(wechat_settings)
    result = ensure_draft(session, client, wechat_settings, issue)

    body_images = {
        p.read_bytes() for p in (SAMPLE_ISSUE_DIR / "images").glob("*.png") if p.name != "cover.png"
    }
    assert fake.state.calls["media/uploadimg"] <= len(body_images)  # identical bytes upload once
    sources = _draft_sources(fake)
    assert sources and all(src in fake.state.images for src in sources)
    for articles in fake.state.drafts.values():
        for a in articles:
            assert "images/" not in a["content"] and str(SAMPLE_ISSUE_DIR) not in a["content"]
    assert result.article_count == len(next(iter(fake.state.drafts.values())))
    uploads = dict(fake.state.calls)
    session.query(WechatDraft).delete()
    session.commit()
    ensure_draft(session, WechatClient(wechat_settings), wechat_settings, issue)
    assert fake.state.calls["media/uploadimg"] == uploads["media/uploadimg"]
    assert fake.state.calls["material/add_material"] == uploads["material/add_material"]
