"""What can be wrong with an issue source, said in both languages with its file and line.

Kept apart from the parser so the browser editor (issue 19 item 3) and the Word importer can
show the same messages for the same mistakes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dispatch.errors import DispatchError
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "not_found": ("找不到简报源文件", "issue source not found"),
        "not_utf8": ("文件不是 UTF-8 编码", "file is not valid UTF-8"),
        "no_front_matter": (
            "文件须以 --- 开头的头部信息开始",
            "the file must start with a front matter block opened by ---",
        ),
        "unclosed_front_matter": ("头部信息缺少结束的 ---", "front matter is not closed by ---"),
        "bad_front_line": (
            "头部信息每行须为 key: value",
            "front matter lines must be 'key: value'",
        ),
        "unknown_key": ("未知的头部字段 {name!r}", "unknown front-matter key {name!r}"),
        "duplicate_key": ("重复的字段 {name!r}", "duplicate key {name!r}"),
        "missing_key": ("缺少必填的头部字段 {name!r}", "missing front-matter key {name!r}"),
        "empty_value": ("字段 {name!r} 的值为空", "front-matter key {name!r} has an empty value"),
        "bad_date": (
            "{name!r} 不是有效日期 YYYY-MM-DD：{value!r}",
            "{name!r} is not a valid date YYYY-MM-DD: {value!r}",
        ),
        "bad_number": (
            "number 须为正整数：{value!r}",
            "number must be a positive integer: {value!r}",
        ),
        "period_order": (
            "period_to 早于 period_from",
            "period_to is before period_from",
        ),
        "bad_locale": (
            "locale 须为 zh-CN 或 en：{value!r}",
            "locale must be zh-CN or en: {value!r}",
        ),
        "bad_slug": (
            "slug 只能含小写字母、数字、点、横线和下划线：{value!r}",
            "slug may only hold lowercase letters, digits, '.', '-' and '_': {value!r}",
        ),
        "text_before_section": (
            "第一个栏目（# 标题）之前不能有正文",
            "text before the first section (# heading)",
        ),
        "text_outside_article": (
            "栏目内、文章（## 标题）之前不能有正文",
            "text inside a section but before its first article (## heading)",
        ),
        "empty_section_title": ("栏目标题为空", "section heading has no title"),
        "empty_section": ("栏目 {title!r} 没有文章", "section {title!r} has no article"),
        "empty_article_title": ("文章标题为空", "article heading has no title"),
        "empty_article": ("文章 {title!r} 没有正文", "article {title!r} has no body"),
        "missing_article_key": (
            "文章 {title!r} 缺少 {name}",
            "article {title!r} has no {name}",
        ),
        "unknown_article_key": (
            "未知的文章字段 {name!r}（可用：source, source_url, date, author）",
            "unknown article metadata key {name!r} (known: source, source_url, date, author)",
        ),
        "bad_meta_line": (
            "标题后到空行前须为 key: value 元数据行",
            "lines after an article heading up to the first blank line must be 'key: value' "
            "metadata",
        ),
        "bad_heading_level": (
            "文章内只能用 ### 或 #### 小标题",
            "only ### and #### headings are allowed inside an article",
        ),
        "empty_heading": ("小标题为空", "heading has no text"),
        "empty_alt": ("图片缺少替代文字（alt）", "image has empty alt text"),
        "image_missing": ("图片文件不存在：{src}", "image file not found: {src}"),
        "image_outside": (
            "图片路径须在简报目录之内：{src}",
            "image path must stay inside the issue folder: {src}",
        ),
        "image_not_file": (
            "图片须为 .png/.jpg/.jpeg/.gif 文件：{src}",
            "image must be a .png/.jpg/.jpeg/.gif file: {src}",
        ),
        "image_not_decodable": (
            "{src} 不是有效的 {expected} 图片（{why}）",
            "{src} is not a valid {expected} image ({why})",
        ),
        "bad_image_syntax": (
            '图片写法应为 ![替代文字](路径 "说明")',
            'image must be written ![alt](path "caption")',
        ),
        "bad_url": ("链接须为 http(s) 地址：{url!r}", "link is not an http(s) URL: {url!r}"),
        "bad_source_url": (
            "source_url 须为 http(s) 地址：{url!r}",
            "source_url is not an http(s) URL: {url!r}",
        ),
        "unclosed_block": ("::: {kind} 块没有以 ::: 结束", "::: {kind} block is not closed by :::"),
        "stray_close": ("多余的 :::（没有打开的块）", "stray ::: with no open block"),
        "nested_block": ("专栏内不能再开 ::: 块", "::: blocks cannot be nested"),
        "control_char": (
            "第 {col} 列有不可见的控制字符 {char}（常见于从 PDF 或 Word 复制），请删除",
            "invisible control character {char} at column {col} (often pasted from a PDF or Word);"
            " remove it",
        ),
        "unknown_block": (
            "未知的 ::: 块类型 {kind!r}（可用：sidebar, video）",
            "unknown ::: block {kind!r} (known: sidebar, video)",
        ),
        "bad_video": (
            "视频写法应为 ::: video 标签 | https://…",
            "video must be written '::: video label | https://…'",
        ),
        "empty_sidebar": ("专栏 {title!r} 没有内容", "sidebar {title!r} is empty"),
        "no_sections": ("简报没有任何栏目", "the issue has no section"),
        "bad_yaml": (
            "头部信息不是有效的 YAML（{why}）；含“: ”或“ #”的值请加引号",
            "front matter is not valid YAML ({why}); quote a value that holds ': ' or ' #'",
        ),
        "not_scalar": (
            "头部字段 {name!r} 须为单个值，不能是列表或映射",
            "front-matter key {name!r} must be a single value, not a list or mapping",
        ),
        "heading_space": (
            "标题的 # 后须有空格，例如 “# 质量要闻”",
            "a heading needs a space after its #, e.g. '# 质量要闻'",
        ),
        "image_inline": (
            "图片须单独成段（不能夹在文字、列表项文字或表格单元格中）",
            "an image must be a paragraph of its own (not inside text or a table cell)",
        ),
        "undefined_footnote": (
            "脚注 [^{label}] 没有定义（请加一行 [^{label}]: 注释文字）",
            "footnote [^{label}] is not defined (add a line '[^{label}]: the note')",
        ),
        "unused_footnote": (
            "脚注 [^{label}] 已定义但正文中没有引用",
            "footnote [^{label}] is defined but never referenced",
        ),
        "duplicate_footnote": ("脚注 [^{label}] 重复定义", "footnote [^{label}] is defined twice"),
    }
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the source: where it is and what to fix."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class IssueSourceError(DispatchError):
    """The source has problems; `.problems` lists every one of them."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _msg(message_key: str, **kwargs: object) -> str:
    """English first (greppable, stable for tests), then zh-CN."""
    en = MESSAGES.get(message_key, "en", **kwargs)
    return en + " / " + MESSAGES.get(message_key, "zh-CN", **kwargs)


class Problems:
    """Collects the problems of one source file while it is read."""

    def __init__(self, label: str):
        self.label = label
        self.items: list[Problem] = []

    def add(self, line: int, message_key: str, **kwargs: object) -> None:
        self.items.append(Problem(self.label, line, _msg(message_key, **kwargs)))

    @staticmethod
    def message(message_key: str, **kwargs: object) -> str:
        return _msg(message_key, **kwargs)

    def sorted(self) -> list[Problem]:
        return sorted(self.items, key=lambda p: p.line)
