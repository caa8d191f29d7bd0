"""The issue source format: the sample parses as the bulletin; every mistake is named by
file:line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dispatch.content.model import (
    Heading,
    Image,
    Link,
    ListBlock,
    Paragraph,
    Sidebar,
    Strong,
    Video,
)
from dispatch.content.parse import IssueSourceError, join_lines, parse_issue, parse_issue_text
from dispatch.paths import SAMPLE_ISSUE_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "issues"

# The bulletin's own table of contents (shared/seed/bulletin-2023-02.txt, lines 9-30).
BULLETIN_TOC = {
    "质量要闻": [
        "中共中央 国务院印发《质量强国建设纲要》",
        "国家标准化管理委员会关于印发《2023年国家标准立项指南》的通知",
        "安徽：18条优环境措施助推制造业高质量发展",
        "河北保定：高新技术产业聚集 助推经济高质量发展",
        "吉林：推动汽车产业高质量发展 汽车产业集群“上台阶”项目集中开工",
        "湖南：超大力度支持新能源汽车高质量发展",
    ],
    "权威观点": [
        "质研院客座研究员林雪萍：CCTV 财经频道《对话》“解码隐形冠军”栏目",
        "企业要当好质量强国建设的主力军",
    ],
    "质量热点": ["中消协：2022年汽车及零部件投诉4.38万件 汽车消费领域不公平格式条款问题频发"],
    "工作简讯": [
        "上海市市场监督管理局与质量监督检验技术研究院来我院调研交流",
        "《全国装备制造企业数字化质量管理调查报告》发布",
    ],
}

# fixture folder -> (line, words the message must hold)
INVALID = {
    "missing_front_key": (1, "missing front-matter key 'publisher'"),
    "unknown_front_key": (7, "unknown front-matter key 'editor'"),
    "bad_date": (5, "'period_to' is not a valid date"),
    "empty_section": (34, "section '权威观点' has no article"),
    "article_without_title": (36, "article heading has no title"),
    "article_without_body": (36, "article '第二篇文章' has no body"),
    "article_without_source_url": (36, "article '第二篇文章' has no source_url"),
    "article_without_date": (36, "article '第二篇文章' has no date"),
    "image_empty_alt": (23, "image has empty alt text"),
    "image_missing_file": (23, "image file not found: images/nope.png"),
    "image_outside_folder": (23, "image path must stay inside the issue folder"),
    "link_not_http": (18, "link is not an http(s) URL: 'javascript:alert(1)'"),
    "source_url_not_http": (15, "source_url is not an http(s) URL: 'ftp://www.gov.cn/'"),
    "unclosed_block": (28, "::: sidebar block is not closed by :::"),
    "text_before_section": (11, "text before the first section"),
}


@pytest.fixture(scope="module")
def sample():
    return parse_issue(SAMPLE_ISSUE_DIR)


def test_sample_has_the_bulletins_sections_and_articles(sample):
    assert [s.title for s in sample.sections] == list(BULLETIN_TOC)
    assert len(sample.articles) == 11
    for section in sample.sections:
        assert [a.title for a in section.articles] == BULLETIN_TOC[section.title]


def test_sample_meta_anchors_and_numbering(sample):
    m = sample.meta
    assert (m.title, m.number, m.slug, m.locale) == ("工作简报", 2, "2023-02", "zh-CN")
    assert (m.period_from.isoformat(), m.period_to.isoformat()) == ("2023-02-01", "2023-02-28")
    assert m.publisher == "上海交通大学中国质量发展研究院"
    assert [a.anchor for a in sample.articles] == [f"a{i}" for i in range(1, 12)]
    assert [a.toc_label for a in sample.sections[0].articles] == list("①②③④⑤⑥")
    assert [a.toc_label for a in sample.sections[1].articles] == list("①②")


def test_sample_has_sidebars_video_images_and_link_table(sample):
    policy = sample.articles[0]
    sidebars = [b for b in policy.blocks if isinstance(b, Sidebar)]
    assert [s.title.split()[0] for s in sidebars] == [f"专栏{i}" for i in range(1, 8)]
    videos = [b for a in sample.articles for b in a.blocks if isinstance(b, Video)]
    assert len(videos) == 1 and videos[0].url.startswith("https://tv.cctv.com/")
    images = sample.images()
    assert images and all(img.path.is_file() and img.alt for img in images)
    links = sample.links
    assert len(links) == len(set(links)) and all(
        u.startswith(("http://", "https://")) for u in links
    )
    assert links[0] == policy.source_url
    assert videos[0].url in links


def test_valid_fixture_blocks_and_inlines():
    doc = parse_issue(
        FIXTURES / "valid" / "issue.md"
    )  # the file itself works as well as its folder
    first = doc.sections[0].articles[0]
    kinds = [type(b) for b in first.blocks]
    assert kinds == [Paragraph, Heading, Image, ListBlock, Sidebar, Video]
    para = first.blocks[0]
    assert isinstance(para, Paragraph)
    assert Strong("加粗") in para.inlines
    assert Link("一个链接", "https://www.samr.gov.cn/") in para.inlines
    assert "".join(i.text for i in para.inlines).endswith("。第二行与第一行合成一段。")
    image = first.blocks[2]
    assert (
        isinstance(image, Image) and image.caption == "说明文字" and image.src == "images/photo.png"
    )
    second = doc.sections[1].articles[0]
    assert second.author == "记者 张三" and second.number == 1 and second.anchor == "a2"
    assert isinstance(second.blocks[0], ListBlock) and second.blocks[0].ordered
    # the link table: distinct, in reading order (gov.cn appears twice, listed once)
    assert doc.links == (
        "https://www.gov.cn/",
        "https://www.samr.gov.cn/",
        "https://tv.cctv.com/v/1.shtml",
        "https://iqd.sjtu.edu.cn/",
    )


def test_join_lines_keeps_cjk_tight_and_latin_spaced():
    assert join_lines(["质量发展基础还不够", "坚实。"]) == "质量发展基础还不够坚实。"
    assert join_lines(["quality", "matters"]) == "quality matters"


@pytest.mark.parametrize("folder", sorted(INVALID))
def test_each_invalid_source_names_file_and_line(folder):
    line, words = INVALID[folder]
    with pytest.raises(IssueSourceError) as info:
        parse_issue(FIXTURES / folder)
    problems = info.value.problems
    assert len(problems) == 1, str(info.value)
    p = problems[0]
    assert p.file.endswith(f"{folder}/issue.md")
    assert p.line == line
    assert words in p.message
    assert str(info.value) == f"{p.file}:{line}: {p.message}"


def test_every_problem_is_reported_at_once():
    with pytest.raises(IssueSourceError) as info:
        parse_issue(FIXTURES / "many_problems")
    lines = [str(p).split(":", 2)[1] for p in info.value.problems]
    assert lines == ["3", "7", "19", "24"]
    text = str(info.value)
    assert len(text.splitlines()) == 4
    assert "number must be a positive integer" in text and "mailto:a@b.c" in text
    assert "图片缺少替代文字" in text  # zh-CN alongside the English


def test_missing_source_and_no_front_matter(tmp_path):
    with pytest.raises(IssueSourceError, match="issue source not found"):
        parse_issue(tmp_path)
    with pytest.raises(IssueSourceError) as info:
        parse_issue_text("# 质量要闻\n", tmp_path, "x.md")
    assert str(info.value.problems[0]).startswith("x.md:1: the file must start with a front matter")


def test_content_hash_covers_text_and_image_bytes(tmp_path):
    copy = tmp_path / "issue"
    shutil.copytree(FIXTURES / "valid", copy)
    before = parse_issue(copy).content_hash
    assert parse_issue(copy).content_hash == before
    with (copy / "images" / "photo.png").open("ab") as fh:
        fh.write(b"\0")
    assert parse_issue(copy).content_hash != before


def test_ordered_list_keeps_its_start_number(tmp_path):
    """A list that continues after other blocks ("3. …") keeps its number in every channel."""
    from dispatch.content.model import ListBlock
    from dispatch.content.parse import parse_issue
    from dispatch.paths import SAMPLE_ISSUE_DIR

    doc = parse_issue(SAMPLE_ISSUE_DIR)
    starts = [
        b.start for a in doc.articles for b in a.blocks if isinstance(b, ListBlock) and b.ordered
    ]
    assert 1 in starts and any(s > 1 for s in starts), starts
