"""Problems of the grown source format, each named by line, all at once (issue 19 item 2):
YAML front matter, footnotes, tables, headings, and `check_source` for the browser editor."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dispatch.config import load_settings
from dispatch.content.model import Paragraph, Rule
from dispatch.content.parse import IssueSourceError, check_source, parse_issue, parse_issue_text
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.render.email import render_email
from dispatch.render.slots import RecipientSlots

FRONT = """---
title: 工作简报
number: 2
period_from: 2023-02-01
period_to: 2023-02-28
publisher: 质研院
---
"""
ARTICLE = """
# 要闻

## 文章
source: 政府网
source_url: https://www.gov.cn/
date: 2023-02-06

"""


def problems_of(text: str, folder: Path | None = None) -> list[tuple[int, str]]:
    return [(p.line, p.message) for p in check_source(text, folder, "issue.md")]


def test_front_matter_yaml_errors_name_every_bad_line_and_keep_the_rest():
    text = FRONT.replace("publisher: 质研院", "publisher: 质研院: 院\ntitle2: [x\neditor: 某人")
    found = problems_of(text + ARTICLE + "正文。\n")
    lines = [line for line, _ in found]
    assert lines == [6, 7, 8], found  # two bad lines and an unknown key, all at once
    assert "front matter is not valid YAML (mapping values are not allowed here)" in found[0][1]
    assert "quote a value that holds ': '" in found[0][1] and "请加引号" in found[0][1]
    assert "unknown front-matter key 'editor'" in found[2][1]


def test_front_matter_values_are_text_lists_are_refused_and_tags_never_run(tmp_path):
    marker = tmp_path / "ran"
    text = FRONT.replace("title: 工作简报", "title: yes").replace(
        "publisher: 质研院", f'publisher: !!python/object/apply:os.system ["touch {marker}"]'
    )
    found = problems_of(text + ARTICLE + "正文。\n")
    assert found == [(6, found[0][1])] and "must be a single value" in found[0][1]
    assert not marker.exists()  # composed, never constructed: nothing executed
    doc = parse_issue_text(
        FRONT.replace("title: 工作简报", "title: yes") + ARTICLE + "正文。\n", "."
    )
    assert doc.meta.title == "yes"  # not True


def test_unclosed_front_matter_and_leading_blank_lines():
    found = problems_of(FRONT.rsplit("---", 1)[0] + ARTICLE)
    assert len(found) == 1 and found[0][0] == 1 and "not closed by ---" in found[0][1]
    doc = parse_issue_text("\n\n" + FRONT + ARTICLE + "正文。\n", ".")
    assert doc.articles[0].blocks[0].line == 18  # lines count from the file's first line


def test_footnote_problems_are_named_at_their_lines():
    body = "正文[^a]和[^missing]。\n\n[^a]: 注释一。\n[^a]: 又一次。\n[^spare]: 没人引用。\n"
    found = problems_of(FRONT + ARTICLE + body)
    messages = {line: message for line, message in found}
    assert sorted(messages) == [16, 19, 20], found
    assert "footnote [^missing] is not defined" in messages[16]
    assert "footnote [^a] is defined twice" in messages[19]
    assert "footnote [^spare] is defined but never referenced" in messages[20]


def test_table_cells_are_checked_by_row_line(tmp_path):
    body = "| 甲 | 乙 |\n|---|---|\n| [坏](javascript:alert(1)) | 好 |\n"
    body += "| ![图](images/photo.png) | x |\n"
    found = problems_of(FRONT + ARTICLE + body)
    assert [line for line, _ in found] == [18, 19], found
    assert "link is not an http(s) URL: 'javascript:alert(1)'" in found[0][1]
    assert "an image must be a paragraph of its own" in found[1][1]


def test_heading_without_space_and_setext_underline():
    found = problems_of(FRONT + ARTICLE + "#质量要闻\n\n正文。\n")
    assert found == [(16, found[0][1])] and "needs a space after its #" in found[0][1]
    doc = parse_issue_text(FRONT + ARTICLE + "一段文字\n---\n", ".")
    blocks = doc.articles[0].blocks
    assert [type(b) for b in blocks] == [Paragraph, Rule] and len(doc.articles) == 1


def test_check_source_lists_everything_and_nothing_for_a_good_source(tmp_path):
    sample = (SAMPLE_ISSUE_DIR / "issue.md").read_text(encoding="utf-8")
    assert check_source(sample, SAMPLE_ISSUE_DIR) == []
    assert check_source(sample) == []  # text only: images are not looked at
    broken = sample.replace("date: 2023-02-06", "date: 2023-02-30", 1).replace(
        "](https://www.gov.cn/)", "](ftp://x)", 1
    )
    problems = check_source(broken, SAMPLE_ISSUE_DIR)
    assert len(problems) >= 1 and all(p.line > 0 and p.file == "issue.md" for p in problems)
    assert any("not a valid date" in p.message for p in problems)
    missing = FRONT + ARTICLE + "![图](images/nope.png)\n"
    assert problems_of(missing) == []  # no folder: the file is not looked for
    assert any("image file not found" in m for _, m in problems_of(missing, tmp_path))


def test_raw_html_is_text_and_escaped_in_the_email(tmp_path):
    folder = tmp_path / "issue"
    shutil.copytree(SAMPLE_ISSUE_DIR, folder)
    source = folder / "issue.md"
    text = source.read_text(encoding="utf-8")
    payload = '<script>alert(1)</script><img src=x onerror="alert(2)">&amp;'
    source.write_text(text.replace("制定本纲要。", "制定本纲要。" + payload, 1), encoding="utf-8")
    doc = parse_issue(folder)
    settings = load_settings(env={}).replace(secret_key="k", public_base_url="https://b.example")
    page, _ = render_email(doc, settings, tracking=False).personalize(
        RecipientSlots("读者", "https://b.example/u/x")
    )
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&amp;amp;" in page


@pytest.mark.parametrize(
    "body, words",
    [
        ("::: sidebar 专栏\n::: sidebar 内层\n文字\n:::\n", "::: blocks cannot be nested"),
        ("文字\n\n:::\n", "stray ::: with no open block"),
        ("::: chart x\n", "unknown ::: block 'chart'"),
        ("##### 五级标题\n", "only ### and #### headings"),
    ],
)
def test_block_marker_problems_keep_their_messages(body, words):
    found = problems_of(FRONT + ARTICLE + "正文。\n\n" + body)
    assert any(words in message and line >= 17 for line, message in found), found


def test_a_problem_reports_through_parse_issue_as_before(tmp_path):
    (tmp_path / "issue.md").write_text(FRONT + ARTICLE + "[x](mailto:a@b.c)\n", encoding="utf-8")
    with pytest.raises(IssueSourceError) as info:
        parse_issue(tmp_path)
    assert str(info.value).endswith(
        "issue.md:16: link is not an http(s) URL: 'mailto:a@b.c' / "
        "链接须为 http(s) 地址：'mailto:a@b.c'"
    )
