"""What Word documents hold, through the source format into email and WeChat: italics, block
quotes, nested lists, GFM tables, footnotes, a horizontal rule (issue 19 item 2).

The Word importer writes these; an editor may too. The fixture is
tests/fixtures/sources/word_features/issue.md.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dispatch.config import Settings, load_settings
from dispatch.content.model import (
    Emphasis,
    FootnoteRef,
    Footnotes,
    IssueDoc,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Sidebar,
    Strong,
    Table,
    Text,
)
from dispatch.content.parse import parse_issue
from dispatch.render.email import render_email
from dispatch.render.slots import RecipientSlots
from dispatch.render.wechat import FORBIDDEN_TAGS, render_wechat

FIXTURE = Path(__file__).parent / "fixtures" / "sources" / "word_features"
BASE = "https://bulletin.example.org"
CHROMIUM = "/usr/bin/chromium"

pytest_plugins = ["test_web_support"]


@pytest.fixture(scope="module")
def doc() -> IssueDoc:
    return parse_issue(FIXTURE)


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    return load_settings(env={}).replace(secret_key="k", public_base_url=BASE)


def test_front_matter_is_yaml_quoted_values_keep_colons_and_hashes(doc):
    assert doc.meta.publisher == "上海交通大学中国质量发展研究院"  # quotes are YAML's
    assert doc.meta.preheader == "3月要闻: 质量强国 #1"


def test_inline_italics_bold_links_and_footnote_refs(doc):
    first = doc.articles[0].blocks[0]
    assert isinstance(first, Paragraph)
    assert Emphasis("斜体文字") in first.inlines and Strong("加粗文字") in first.inlines
    assert FootnoteRef(1, "1") in first.inlines


def test_quote_nested_list_table_rule_and_sidebar_table(doc):
    blocks = doc.articles[0].blocks
    kinds = [type(b) for b in blocks]
    assert kinds == [Paragraph, Quote, ListBlock, Table, Rule, Table, Sidebar, Footnotes]
    quote = blocks[1]
    assert isinstance(quote, Quote) and len(quote.blocks) == 2
    listing = blocks[2]
    assert isinstance(listing, ListBlock) and listing.ordered
    assert [len(listing.blocks_of(i)) for i in range(3)] == [1, 1, 0]
    nested = listing.blocks_of(0)[0]
    assert isinstance(nested, ListBlock) and not nested.ordered and len(nested.items) == 2
    assert Emphasis("斜体") in nested.items[1]
    assert isinstance(listing.blocks_of(1)[0], Paragraph)  # the item's second paragraph
    table = blocks[3]
    assert isinstance(table, Table) and table.has_header
    assert table.align == ("left", "center", "right")
    assert [len(row) for row in table.rows] == [3, 3, 3]
    assert table.rows[2][2][0].text == "详情"  # a link inside a cell
    sidebar = blocks[6]
    assert isinstance(sidebar, Sidebar) and isinstance(sidebar.blocks[0], Table)


def test_footnotes_are_numbered_per_article_and_listed_at_its_end(doc):
    first, second = doc.articles
    notes = first.blocks[-1]
    assert isinstance(notes, Footnotes)
    assert [(n.number, n.label) for n in notes.notes] == [(1, "1"), (2, "note")]
    assert notes.notes[0].inlines[1].text == "中国政府网"
    again = second.blocks[-1]
    assert isinstance(again, Footnotes) and [n.number for n in again.notes] == [1]
    assert "https://www.gov.cn/zhengce/" in doc.links  # a note's link is tracked too
    assert "https://www.jl.gov.cn/" in doc.links  # and a table cell's


def test_email_html_and_text_show_every_new_element(doc, plain_settings):
    rendered = render_email(doc, plain_settings, tracking=False)
    page, text = rendered.personalize(RecipientSlots("读者", f"{BASE}/u/x"))
    assert '<em class="em"' in page and "斜体文字</em>" in page
    assert "<blockquote" not in page and 'class="quote"' in page
    assert re.search(r'<sup class="fnref"[^>]*>\[1\]</sup>', page)
    assert 'class="dtable dtable-stack"' in page  # 3 columns: stacks on a phone
    assert 'class="dtable"' in page  # 2 columns: stays a table
    assert page.count('class="dlabel"') == 3 * 3 + 3  # each stacked cell names its column
    assert 'align="right"' in page and "table-layout:fixed" in page
    assert '<td class="rule"' in page and 'class="note"' in page
    assert "@media only screen and (max-width: 620px)" in page and ".dtable-stack" in page
    assert "> 引用的段落，来自《质量强国建设纲要》。" in text
    assert "地区 | 项目数 | 投资（亿元）" in text and "安徽 | 18 | 120.5" in text
    assert "   - 子项甲" in text and "   第二项的第二段。" in text
    assert "[1] 《质量强国建设纲要》，中国政府网 (https://www.gov.cn/zhengce/)" in text
    assert "----------" in text


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.update(name for name, _ in attrs)


def test_wechat_content_is_inline_styled_and_safe(doc, plain_settings):
    articles = render_wechat(doc, plain_settings)
    content = "".join(a.content for a in articles)
    parser = _Tags()
    parser.feed(content)
    assert not set(parser.tags) & FORBIDDEN_TAGS
    assert not {"class", "id"} & parser.attrs  # WeChat strips them: everything inline
    assert {"table", "th", "td", "em", "sup"} <= set(parser.tags)
    assert "table-layout:fixed" in content and "border-left:3px solid" in content
    assert "[1] 《质量强国建设纲要》" in content and "子项甲" in content


@pytest.mark.browser
def test_tables_and_nesting_read_at_375_px_without_sideways_scrolling(
    doc, plain_settings, artifacts_dir: Path
):
    sync_api = pytest.importorskip("playwright.sync_api")
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (scripts/test installs it)"
    rendered = render_email(doc, plain_settings, tracking=False)
    page_html, _ = rendered.personalize(RecipientSlots("读者", f"{BASE}/u/x"))
    wechat = "".join(a.content for a in render_wechat(doc, plain_settings))
    files = {
        "email-word-features.html": page_html,
        "wechat-word-features.html": '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f'<body style="margin:0;padding:0 12px;">{wechat}</body></html>',
    }
    found = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for name, html_text in files.items():
                path = artifacts_dir / name
                path.write_text(html_text, encoding="utf-8")
                page = browser.new_page(viewport={"width": 375, "height": 900})
                page.route(
                    "**/*",
                    lambda r: (
                        r.continue_()
                        if r.request.url.startswith("file:")
                        else r.fulfill(status=204, body=b"")
                    ),
                )
                page.goto(path.as_uri(), wait_until="load")
                found[name] = page.evaluate(
                    "[document.scrollingElement.scrollWidth,"
                    " getComputedStyle(document.querySelector('.dlabel') || document.body)"
                    ".display]"
                )
                page.screenshot(path=str(path.with_suffix(".png")), full_page=True)
                page.close()
        finally:
            browser.close()
    assert found["email-word-features.html"] == [375, "inline"]  # stacked, labelled
    assert found["wechat-word-features.html"][0] <= 375


def test_text_only_paragraph_kinds_stay_plain(doc):
    second = doc.articles[1].blocks[0]
    assert isinstance(second, Paragraph) and isinstance(second.inlines[0], Text)


def test_web_archive_page_shows_every_new_element(client, engine, settings):
    """The archive is where "Read more" leads: tables, quotes and notes must be there too."""
    from sqlalchemy.orm import Session

    from dispatch.content.store import publish_source

    with Session(engine) as session, session.begin():
        issue = publish_source(session, FIXTURE, settings=settings)
        slug = issue.slug
    page = client.get(f"/issues/{slug}").text
    assert "<em>斜体文字</em>" in page and "<blockquote>" in page and "<sup>[1]</sup>" in page
    assert '<table class="issue-table">' in page and '<th style="text-align:right">' in page
    assert "<li>子项甲</li>" in page and "<hr>" in page and '<ol class="footnotes">' in page


HEAD = (
    "---\ntitle: t\nnumber: 1\nperiod_from: 2023-02-01\nperiod_to: 2023-02-28\npublisher: p\n"
    "---\n\n# s\n\n## a\nsource_url: https://example.org/\ndate: 2023-02-01\n\n"
)


@pytest.mark.parametrize(
    "source, pieces",
    [
        ("中共中央**《纲要》**印发", [Text("中共中央"), Strong("《纲要》"), Text("印发")]),
        ("产业集群**“上台阶”**项目", [Text("产业集群"), Strong("“上台阶”"), Text("项目")]),
        ("中文*斜体*中文", [Text("中文"), Emphasis("斜体"), Text("中文")]),
        ("价格*数量", [Text("价格*数量")]),
        ("file_name 与 __DLINK_0__ 照写", [Text("file_name 与 __DLINK_0__ 照写")]),
    ],
)
def test_bold_and_italics_work_next_to_chinese_punctuation(source, pieces):
    """CommonMark alone would leave `**《纲要》**印发` unbolded; Chinese bulletins write
    it that way (the old parser bolded it). Underscores never mean emphasis."""
    from dispatch.content.parse import parse_issue_text

    block = parse_issue_text(HEAD + source + "\n", ".").articles[0].blocks[0]
    assert isinstance(block, Paragraph) and list(block.inlines) == pieces
