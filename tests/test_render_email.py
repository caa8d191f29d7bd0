"""The email rendering of the sample issue: content, size, structure, escaping, cheap fill."""

from __future__ import annotations

import html
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import premailer
import pytest
from click.testing import CliRunner

from dispatch.cli import main
from dispatch.config import Settings, load_settings
from dispatch.content.model import Paragraph
from dispatch.content.parse import parse_issue
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.render import email as email_render
from dispatch.render.email import GMAIL_CLIP_BYTES, RenderedEmail, render_email
from dispatch.render.slots import RecipientSlots
from dispatch.tokens import tracking_slots

FIXTURES = Path(__file__).parent / "fixtures" / "issues"
BASE = "https://bulletin.example.org"
# Rules allowed to stay in a <style> block: client-specific resets (they target clients'
# own markup or need to win over it) and everything inside @media.
CLIENT_RESET_SELECTORS = (
    ":root",
    "html",
    "body",
    "table",
    "td",
    "img",
    "a[x-apple-data-detectors]",
    "u + #body",
    "#MessageViewBody",
    ".ExternalClass",
    "[data-ogsc]",
)


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    """Settings without a database (rendering needs none)."""
    return load_settings(env={}).replace(secret_key="render-test-key", public_base_url=BASE)


@pytest.fixture(scope="module")
def doc():
    return parse_issue(SAMPLE_ISSUE_DIR)


@pytest.fixture(scope="module")
def tracked(doc, plain_settings) -> RenderedEmail:
    return render_email(doc, plain_settings, tracking=True)


def long_slots(n_links: int, name: str = "读者") -> RecipientSlots:
    """Pessimistic tracking URLs, longer than any signed token the service makes."""
    tail = "x" * 150
    return RecipientSlots(
        name=name,
        unsubscribe_url=f"{BASE}/u/{tail}",
        open_url=f"{BASE}/t/o/{tail}.gif",
        click_urls=[f"{BASE}/t/c/{i}.{tail}" for i in range(n_links)],
    )


class _Collect(HTMLParser):
    """Tags with attributes, style texts and visible text of an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.styles: list[str] = []
        self.text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        (self.styles if self._in_style else self.text).append(data)


def collect(markup: str) -> _Collect:
    c = _Collect()
    c.feed(markup)
    return c


def top_level_rules(css: str) -> list[tuple[str, str]]:
    """(prelude, body) of each top-level rule; @media bodies are not looked into."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    rules, depth, start, prelude = [], 0, 0, ""
    for i, ch in enumerate(css):
        if ch == "{":
            if depth == 0:
                prelude, start = css[:i].rsplit("}", 1)[-1].strip(), i + 1
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                rules.append((prelude, css[start:i]))
    return rules


def test_subject_and_link_count(doc, tracked):
    assert tracked.subject == "工作简报 2023年第2期（2023年2月1日-2月28日）"
    assert tracked.link_count == len(doc.links) > 0


def test_html_holds_every_title_and_stays_under_gmail_clip(doc, tracked, plain_settings):
    realistic = tracking_slots(
        plain_settings,
        delivery_id=987_654_321,
        subscriber_id=123_456_789,
        list_id=42,
        name="张三丰",
        n_links=tracked.link_count,
        tracking=True,
    )
    for slots in (realistic, long_slots(tracked.link_count, name="名" * 100)):
        page, _ = tracked.personalize(slots)
        assert len(page.encode("utf-8")) < GMAIL_CLIP_BYTES
        for article in doc.articles:
            assert html.escape(article.title, quote=False) in page
        for section in doc.sections:
            assert section.title in page


def test_long_articles_become_a_lead_with_read_more(doc, tracked):
    page, _ = tracked.personalize(long_slots(tracked.link_count))
    assert "a1" in tracked.shortened  # the long policy text
    assert f'href="{BASE}/issues/2023-02#a1"' in page
    assert "阅读全文 / Read more" in page
    policy = doc.articles[0]
    last_paragraph = [b for b in policy.blocks if isinstance(b, Paragraph)][-1]
    assert "".join(i.text for i in last_paragraph.inlines) not in page
    short = doc.articles[3]  # a short article is shown whole
    assert short.anchor not in tracked.shortened


def test_structure_for_clients(tracked):
    page, _ = tracked.personalize(long_slots(tracked.link_count))
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta name="color-scheme" content="light dark">' in page
    assert '<meta name="supported-color-schemes" content="light dark">' in page
    assert "<!--[if mso]>" in page and "<![endif]-->" in page  # Outlook ghost table
    assert "max-width:600px" in page.replace(": ", ":")
    assert "PingFang SC" in page and "Microsoft YaHei" in page
    c = collect(page)
    preheader = [a for t, a in c.tags if t == "div" and "preheader" in (a.get("class") or "")]
    assert preheader and "display:none" in preheader[0]["style"].replace(" ", "")
    assert tracked.preheader and tracked.preheader in page


def test_every_image_has_alt_and_an_absolute_url(tracked):
    slots = long_slots(tracked.link_count)
    page, _ = tracked.personalize(slots)
    images = [a for t, a in collect(page).tags if t == "img"]
    content_images = [a for a in images if a.get("src") != slots.open_url]
    assert len(content_images) >= 8
    for attrs in content_images:
        assert (attrs.get("alt") or "").strip(), attrs
        assert attrs["src"].startswith(f"{BASE}/issues/2023-02/images/")
    assert len(images) == len(content_images) + 1  # the open pixel


def test_premailer_left_only_media_queries_and_client_resets(tracked):
    page, _ = tracked.personalize(long_slots(tracked.link_count))
    c = collect(page)
    assert c.styles, "the <style> block with media queries is kept"
    media = 0
    for css in c.styles:
        for prelude, _body in top_level_rules(css):
            if prelude.startswith("@media"):
                media += 1
                continue
            for selector in (s.strip() for s in prelude.split(",")):
                assert selector.startswith(CLIENT_RESET_SELECTORS), (
                    f"inlinable rule left: {selector}"
                )
    assert media >= 2  # small screens and dark mode
    # the stylesheet's rules went into style attributes
    titles = [a for t, a in c.tags if t == "p" and a.get("class") == "article-title"]
    assert titles and all("font-weight:bold" in a["style"].replace(" ", "") for a in titles)


def test_text_part_has_titles_toc_links_and_unsubscribe(doc, tracked):
    slots = long_slots(tracked.link_count)
    _, text = tracked.personalize(slots)
    for article in doc.articles:
        assert text.count(article.title) >= 2  # table of contents and the article
    assert "本期目录 / Contents" in text
    assert slots.unsubscribe_url in text
    shown = [i for i in range(tracked.link_count) if f"__DLINK_{i}__" in tracked.html_template]
    assert len(shown) >= 4  # links inside the cut part of a shortened article are not shown
    for i in shown:
        assert (slots.click_urls or [])[i] in text
    assert f"{BASE}/issues/2023-02#a1" in text
    assert "<p" not in text and "</" not in text


def test_tracking_replaces_every_link_and_adds_the_pixel(doc, tracked):
    slots = long_slots(tracked.link_count)
    page, _ = tracked.personalize(slots)
    hrefs = [a["href"] for t, a in collect(page).tags if t == "a" and a.get("href")]
    for url in doc.links:
        assert url not in hrefs
    for i, url in enumerate(slots.click_urls or ()):
        assert (url in hrefs) == (f"__DLINK_{i}__" in tracked.html_template)
    assert slots.open_url in page
    assert all(h.startswith((BASE, "#")) for h in hrefs)
    without_pixel, _ = tracked.personalize(
        RecipientSlots("读者", f"{BASE}/u/1", None, slots.click_urls)
    )
    assert "/t/o/" not in without_pixel
    with pytest.raises(ValueError):
        tracked.personalize(RecipientSlots("读者", f"{BASE}/u/1", None, ["https://x.example/"]))


def test_untracked_email_keeps_original_links_and_no_pixel(doc, plain_settings, tracked):
    rendered = render_email(doc, plain_settings, tracking=False)
    page, text = rendered.personalize(long_slots(rendered.link_count))
    hrefs = [a["href"] for t, a in collect(page).tags if t == "a" and a.get("href")]
    for i, url in enumerate(doc.links):
        if f"__DLINK_{i}__" in tracked.html_template:
            assert url in hrefs and url in text
    assert "__DLINK_" not in rendered.html_template  # links are baked in, not slots
    assert "/t/o/" not in page and "/t/c/" not in page and "/t/c/" not in text


def test_subscriber_name_is_escaped(tracked):
    evil = '<script>alert("x")</script> & Co'
    page, text = tracked.personalize(long_slots(tracked.link_count, name=evil))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co，您好！" in page
    assert f"{evil}，您好！" in text
    anonymous, _ = tracked.personalize(long_slots(tracked.link_count, name=""))
    assert "您好！" in anonymous and "，您好" not in anonymous


def test_premailer_runs_once_per_issue_and_never_per_recipient(doc, plain_settings, monkeypatch):
    calls = []
    original = premailer.Premailer.transform

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(premailer.Premailer, "transform", counting)
    email_render.clear_cache()
    rendered = render_email(doc, plain_settings, tracking=True)
    assert len(calls) == 1
    for i in range(200):
        rendered.personalize(long_slots(rendered.link_count, name=f"读者{i}"))
    assert render_email(doc, plain_settings, tracking=True) is rendered  # cached by content hash
    assert len(calls) == 1


def test_a_smaller_size_budget_shortens_more(doc, plain_settings):
    tight = plain_settings.replace(email_size_budget=45_000)
    rendered = render_email(doc, tight, tracking=True)
    page, _ = rendered.personalize(long_slots(rendered.link_count))
    assert len(page.encode("utf-8")) <= 45_000
    default = render_email(doc, plain_settings, tracking=True)
    assert len(rendered.shortened) > len(default.shortened)


def test_english_issue(tmp_path, plain_settings):
    copy = tmp_path / "issue"
    shutil.copytree(FIXTURES / "valid", copy)
    source = copy / "issue.md"
    source.write_text(
        source.read_text(encoding="utf-8").replace("cover:", "locale: en\ncover:"), encoding="utf-8"
    )
    rendered = render_email(parse_issue(copy), plain_settings, tracking=False)
    page, text = rendered.personalize(RecipientSlots("Ann", f"{BASE}/u/1"))
    assert rendered.subject == "工作简报 No. 2, 2023 (1 Feb – 28 Feb 2023)"
    assert "Hello Ann," in page and "Hello Ann," in text
    assert "Unsubscribe" in page and "退订" not in page


def test_cli_render_writes_three_files(tmp_path, settings):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["render", str(SAMPLE_ISSUE_DIR), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("email.html", "email.txt", "wechat.json"):
        path = out / name
        assert path.stat().st_size > 0
        assert f"{path} ({path.stat().st_size:,} bytes)" in result.output
    page = (out / "email.html").read_text(encoding="utf-8")
    assert "读者，您好！" in page and len(page.encode()) < GMAIL_CLIP_BYTES


def test_cli_render_invalid_source_writes_nothing(tmp_path, settings):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["render", str(FIXTURES / "many_problems"), "--out", str(out)]
    )
    assert result.exit_code != 0
    assert "many_problems/issue.md:3: number must be a positive integer" in result.output
    assert "many_problems/issue.md:24: image has empty alt text" in result.output
    assert not out.exists()
