"""Hostile: what a careless (or malicious) editor can put into an issue.

- Editor text never collides with the renderer's per-recipient slots, whatever it contains
  (marker look-alikes of every form), and an issue that cannot render is refused at publish.
- The size budget holds for the whole message: past it, articles become title-and-link
  entries, and an issue that still cannot fit is refused at publish with a clear message.
- Images are checked by content with a real decoder, never by name.
- Invisible control characters are refused with file:line.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image as PILImage
from sqlalchemy import func, select

from dispatch.config import Settings, load_settings
from dispatch.content.parse import IssueSourceError, parse_issue
from dispatch.content.store import publish_source
from dispatch.models.issue import Issue
from dispatch.render import email as email_render
from dispatch.render.email import EmailTooLarge, render_email
from dispatch.render.slots import RecipientSlots

FIXTURE = Path(__file__).parent / "fixtures" / "issues" / "valid"
BASE = "https://bulletin.example.org"
UNSUB = f"{BASE}/u/RECIPIENT-UNSUBSCRIBE-TOKEN"
OPEN = f"{BASE}/t/o/RECIPIENT-OPEN-TOKEN.gif"
CLICK = f"{BASE}/t/c/RECIPIENT-CLICK-TOKEN"
NAME = "RECIPIENT-NAME"

# Text that looks like a slot marker, in every form a renderer might use or an attacker guess.
MARKER_LOOKALIKES = [
    "__DSLOT_UNSUB__",
    "__DSLOT_GREETING__",
    "__DSLOT_PIXEL__",
    "__DLINK_0__",
    "__DLINK_1__",
    "__DLINK_99999__",
    "__DSLOT_0123456789abcdef01234567_UNSUB__",
    "__DLINK_0123456789abcdef01234567_0__",
    "{{ unsubscribe_url }}",
    "{unsubscribe_url}",
    "%(name)s",
    "$name",
    "*|UNSUB|*",
    "[[name]]",
    "\\x00",
]


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    return load_settings(env={}).replace(secret_key="hostile-key", public_base_url=BASE)


def _issue_with(tmp_path: Path, replace: dict[str, str], name: str = "issue") -> Path:
    folder = tmp_path / name
    shutil.copytree(FIXTURE, folder)
    source = folder / "issue.md"
    text = source.read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    source.write_text(text, encoding="utf-8")
    return folder


def _personalize(rendered) -> tuple[str, str]:
    return rendered.personalize(
        RecipientSlots(NAME, UNSUB, open_url=OPEN, click_urls=[CLICK] * rendered.link_count)
    )


@pytest.mark.parametrize("tracking", [True, False])
@pytest.mark.parametrize("marker", MARKER_LOOKALIKES)
def test_editor_text_never_becomes_a_recipient_value(tmp_path, plain_settings, marker, tracking):
    clean = render_email(parse_issue(FIXTURE), plain_settings, tracking=tracking)
    clean_html, clean_text = _personalize(clean)
    payload = f"前{marker}后"
    places = {
        "第一段正文": f"第一段正文{payload}",
        "title: 工作简报": f"title: 工作简报{payload}",
        "## 第二篇文章": f"## 第二篇文章{payload}",
        "专栏里的段落。": f"专栏里的段落{payload}。",
    }
    if "[" not in marker:  # brackets would end the link's text (Markdown, not a slot)
        places["[一个链接]"] = f"[一个链接{payload}]"
    folder = _issue_with(tmp_path, places)
    email_render.clear_cache()
    rendered = render_email(parse_issue(folder), plain_settings, tracking=tracking)
    page, text = _personalize(rendered)
    for value in (UNSUB, OPEN, CLICK, NAME):  # recipient values appear exactly as often
        assert page.count(value) == clean_html.count(value), value
        assert text.count(value) == clean_text.count(value), value
    escaped = marker.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert page.count(escaped) >= 4 and text.count(marker) >= 4  # the editor's text, verbatim


def test_marker_lookalikes_publish_and_every_recipient_renders(tmp_path, session, settings):
    folder = _issue_with(tmp_path, {"第一段正文": "第一段正文" + " ".join(MARKER_LOOKALIKES)})
    issue = publish_source(session, folder, settings=settings)
    assert issue.id is not None
    rendered = render_email(parse_issue(folder), settings, tracking=True)
    for i in range(3):
        page, _ = rendered.personalize(
            RecipientSlots(f"读者{i}", f"{UNSUB}{i}", OPEN, [f"{CLICK}{i}"] * rendered.link_count)
        )
        assert f"{UNSUB}{i}" in page and "__DLINK_99999__" in page


# -- the whole-message size budget ----------------------------------------------------------


def _many_articles(tmp_path: Path, n: int, chars: int, name: str = "big") -> Path:
    """An issue of n articles of about `chars` characters of body each, every one with a link."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copytree(FIXTURE / "images", folder / "images")
    lines = [
        "---",
        "title: 长简报",
        "number: 9",
        "period_from: 2023-02-01",
        "period_to: 2023-02-28",
        "publisher: 质研院",
        "preheader: 很多文章",
        "---",
        "",
        "# 要闻",
        "",
    ]
    sentence = "质量发展研究院发布了新的报告，内容涉及标准、认证与检验检测。"
    for i in range(n):
        body = (sentence * (chars // len(sentence) + 1))[:chars]
        lines += [
            f"## 第{i + 1}篇：标准化工作新进展",
            "source: 中国政府网",
            f"source_url: https://www.gov.cn/a/{i}",
            "date: 2023-02-06",
            "",
            f"{body[: chars // 2]}[详情](https://www.samr.gov.cn/n/{i})。",
            "",
            body[chars // 2 :],
            "",
        ]
    (folder / "issue.md").write_text("\n".join(lines), encoding="utf-8")
    return folder


def test_whole_message_budget_cuts_the_last_articles_to_title_and_link(tmp_path, plain_settings):
    budget = 60_000
    tight = plain_settings.replace(email_size_budget=budget)
    doc = parse_issue(_many_articles(tmp_path, 40, 400))
    rendered = render_email(doc, tight, tracking=True)
    page, text = rendered.personalize(
        RecipientSlots(
            "名" * 200,
            UNSUB + "x" * 100,
            OPEN + "x" * 100,
            [CLICK + "x" * 100] * rendered.link_count,
        )
    )
    size = len(page.encode("utf-8"))
    assert size <= budget  # the WHOLE message, with long personal values
    head = page.encode("utf-8")[:budget].decode("utf-8", "ignore")
    assert UNSUB in head and OPEN in head  # footer and pixel sit before the clip
    titles = [a.title for a in doc.articles]
    assert all(t in page for t in titles)  # every article is still there, at least its title
    first_body = "质量发展研究院发布了新的报告"
    parts = page.split("第40篇")
    assert first_body not in parts[-1].split("退订")[0]  # the last one: title and link only
    assert first_body in page.split("第1篇")[2][:3000]  # the first one keeps its text
    assert "阅读全文" in parts[-1]
    assert len(rendered.shortened) == 40


def test_issue_that_cannot_fit_is_refused_at_publish(tmp_path, session, settings):
    tight = settings.replace(email_size_budget=20_000)
    folder = _many_articles(tmp_path, 80, 120, name="huge")
    with pytest.raises(EmailTooLarge, match="split the issue"):
        render_email(parse_issue(folder), tight, tracking=True)
    with pytest.raises(IssueSourceError, match=r"issue\.md:1: email: .*over the 20,000-byte"):
        publish_source(session, folder, settings=tight)
    assert session.scalar(select(func.count()).select_from(Issue)) == 0  # nothing stored


def test_a_render_crash_is_refused_at_publish_not_at_send(tmp_path, session, settings):
    folder = _issue_with(tmp_path, {"第一段正文": "第一段正文"})
    broken = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, broken)
    (broken / "email" / "issue.html").write_text(
        "{% extends 'email/base.html' %}{% block body %}{{ no_such_value }}{% endblock %}",
        encoding="utf-8",
    )
    with pytest.raises(IssueSourceError, match="email cannot be rendered"):
        publish_source(session, folder, settings=settings.replace(templates_dir=broken))
    assert session.scalar(select(func.count()).select_from(Issue)) == 0


# -- images by content ----------------------------------------------------------------------


def _png(size=(8, 8)) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", size, "red").save(out, "PNG")
    return out.getvalue()


def _jpeg() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), "blue").save(out, "JPEG")
    return out.getvalue()


NOT_IMAGES = {
    "html": b"<html><script>alert(document.cookie)</script></html>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>',
    "empty": b"",
    "text": "这不是图片".encode(),
    "png_magic_only": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
    "truncated_png": _png((64, 64))[:60],
    "jpeg_named_png": _jpeg(),
    "zip": b"PK\x03\x04" + b"\x00" * 60,
}


@pytest.mark.parametrize("kind", sorted(NOT_IMAGES))
def test_file_with_image_name_but_other_content_is_refused(tmp_path, session, settings, kind):
    folder = _issue_with(tmp_path, {"第一段正文": "第一段正文"})
    (folder / "images" / "photo.png").write_bytes(NOT_IMAGES[kind])
    with pytest.raises(
        IssueSourceError, match=r"issue\.md:\d+: images/photo\.png is not a valid PNG"
    ):
        parse_issue(folder)
    with pytest.raises(IssueSourceError):
        publish_source(session, folder, settings=settings)
    assert session.scalar(select(func.count()).select_from(Issue)) == 0


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    folder = _issue_with(tmp_path, {"第一段正文": "第一段正文"})
    (folder / "images" / "photo.png").write_bytes(_png((300, 300)))
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10_000)  # 300x300 is then a "bomb"
    with pytest.raises(IssueSourceError, match="too many pixels"):
        parse_issue(folder)


def test_real_images_of_each_format_pass(tmp_path):
    folder = _issue_with(tmp_path, {"images/photo.png": "images/photo.jpg"})
    (folder / "images" / "photo.jpg").write_bytes(_jpeg())
    assert any(img.src == "images/photo.jpg" for img in parse_issue(folder).images())


# -- control characters ---------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x0b", "\x1b", "\x7f", "\x85", "\x9b", "\ufffe"])
def test_control_characters_are_refused_with_their_line(tmp_path, char):
    folder = _issue_with(tmp_path, {"第一段正文": f"第一段{char}正文"})
    with pytest.raises(IssueSourceError) as caught:
        parse_issue(folder)
    code = f"U+{ord(char):04X}"
    assert re.search(
        rf"issue\.md:\d+: invisible control character {re.escape(code)} at column 4",
        str(caught.value),
    )
