"""The Word import's refusals: one bilingual message naming the file, plus the report so far.

Why the report travels with the error: "what was kept and what was not" is the editor's next
step (which pictures to re-save, which headings to mark), so a refusal carries it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dispatch.errors import DispatchError
from dispatch.i18n import Catalog

if TYPE_CHECKING:
    from dispatch.content.docx_import.report import ImportReport

MESSAGES = Catalog(
    {
        "too_large": (
            "{file}：文档 {size}，超过上限 {limit}（设置 docx_max_bytes）；未保留任何内容",
            "{file}: the document is {size}, over the {limit} limit (setting docx_max_bytes); "
            "nothing kept",
        ),
        "not_zip": (
            "{file}：不是 Word 文档（.docx 应为 zip 文件）；未保留任何内容",
            "{file}: not a Word document (a .docx is a zip file); nothing kept",
        ),
        "legacy_doc": (
            "{file}：这是旧版 .doc 文件，请在 Word 中另存为 .docx 后再导入；未保留任何内容",
            "{file}: this is an old .doc file; save it as .docx in Word and import that; "
            "nothing kept",
        ),
        "too_many_parts": (
            "{file}：zip 内有 {n} 个部件，超过 {limit}；未保留任何内容",
            "{file}: the zip holds {n} parts, over {limit}; nothing kept",
        ),
        "zip_bomb": (
            "{file}：解压后过大（{part}：{size}，上限 {limit}，设置 docx_max_unpacked_bytes），"
            "疑似 zip 炸弹，未解压；未保留任何内容",
            "{file}: unpacks too large ({part}: {size}, limit {limit}, setting "
            "docx_max_unpacked_bytes), refused as a zip bomb before unpacking; nothing kept",
        ),
        "no_document": (
            "{file}：zip 中没有 word/document.xml，不是 Word 文档；未保留任何内容",
            "{file}: no word/document.xml in the zip, so not a Word document; nothing kept",
        ),
        "bad_xml": (
            "{file}：{part} 不是有效的 XML（{why}）；未保留任何内容",
            "{file}: {part} is not valid XML ({why}); nothing kept",
        ),
        "no_headings": (
            "{file}：找不到栏目或文章标题（共 {paragraphs} 段、{images} 张图片，均未保留）。"
            "请把栏目标题设为“标题 1”或写成【栏目】，文章标题设为“标题 2”或加粗",
            "{file}: no section or article heading found ({paragraphs} paragraphs and "
            "{images} pictures, none kept). Mark section titles with Heading 1 or 【…】 and "
            "article titles with Heading 2 or bold",
        ),
        "out_exists": (
            "{path} 已存在且不为空；请换一个目录",
            "{path} exists and is not empty; choose another folder",
        ),
        "converter_failed": (
            "{file}：Word 转换失败（{why}）；未保留任何内容",
            "{file}: the Word conversion failed ({why}); nothing kept",
        ),
    }
)


class DocxImportError(DispatchError):
    """A document the importer refuses; `report` says what it had kept and left out so far."""

    def __init__(self, key: str, report: ImportReport | None = None, **args: Any) -> None:
        self.key = key
        self.args_ = args
        self.report = report
        super().__init__(MESSAGES.both(key, **args))

    def text(self, locale: str | None = None) -> str:
        return MESSAGES.get(self.key, locale, **self.args_)
