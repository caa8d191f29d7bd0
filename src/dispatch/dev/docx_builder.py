"""Word documents built with python-docx for the Word-import tests and `dispatch bench render`.

Why in the package: the bench times the import of the sample bulletin's .docx, and the tests
round-trip the same document, so both build it here from examples/2023-02 rather than keeping a
binary in git. python-docx is a test extra (`pip install -e '.[test]'`); nothing the service
runs imports this module.

The documents look like an editor's: the publisher line, the title, the period in 【】, the
table of contents typed by hand (① … per section), then the sections and articles with a
来源：… 时间：… line, pictures with a caption paragraph under them, lists, links, and each
专栏 as a shaded one-cell table, a text box or a paragraph style (`box=`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dispatch.content import model
from dispatch.content.parse import parse_issue

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
HYPERLINK_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/hyperlink"
BOX_STYLE = "专栏"


def _docx() -> Any:
    try:
        import docx
    except ImportError as exc:  # pragma: no cover - the test extra is missing
        raise SystemExit(
            "python-docx is needed to build Word documents: pip install -e '.[test]'"
        ) from exc
    return docx


def add_hyperlink(paragraph: Any, text: str, url: str, bold: bool = False) -> None:
    """A real Word hyperlink (w:hyperlink with an external relationship), styled as Word does."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    rel_id = paragraph.part.relate_to(url, HYPERLINK_REL, is_external=True)
    link = OxmlElement("w:hyperlink")
    link.set(qn("r:id"), rel_id)
    run = OxmlElement("w:r")
    props = OxmlElement("w:rPr")
    style = OxmlElement("w:rStyle")
    style.set(qn("w:val"), "Hyperlink")
    props.append(style)
    if bold:
        props.append(OxmlElement("w:b"))
    run.append(props)
    text_el = OxmlElement("w:t")
    text_el.text = text
    text_el.set(qn("xml:space"), "preserve")
    run.append(text_el)
    link.append(run)
    paragraph._p.append(link)


def add_inlines(paragraph: Any, inlines: tuple[model.Inline, ...]) -> None:
    for inline in inlines:
        if isinstance(inline, model.Link):
            add_hyperlink(paragraph, inline.text, inline.url)
        elif isinstance(inline, model.Strong):
            paragraph.add_run(inline.text).bold = True
        else:
            paragraph.add_run(getattr(inline, "text", str(inline)))


def shade_cell(cell: Any, fill: str = "EAF1FB") -> None:
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    shd = OxmlElement("w:shd")
    shd.set(qn("w:val"), "clear")
    shd.set(qn("w:color"), "auto")
    shd.set(qn("w:fill"), fill)
    cell._tc.get_or_add_tcPr().append(shd)


def add_text_box(document: Any, paragraphs: list[tuple[str, bool]]) -> None:
    """A floating text box as Word 2010+ writes it: DrawingML (wps) with a VML fallback, both
    holding the same w:txbxContent; `paragraphs` are (text, bold) pairs."""
    from docx.oxml import parse_xml

    def content() -> str:
        out = []
        for text, bold in paragraphs:
            rpr = "<w:rPr><w:b/></w:rPr>" if bold else ""
            out.append(f'<w:p><w:r>{rpr}<w:t xml:space="preserve">{_xml(text)}</w:t></w:r></w:p>')
        return "<w:txbxContent>" + "".join(out) + "</w:txbxContent>"

    xml = (
        f'<w:p xmlns:w="{W_NS}" '
        'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
        'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
        'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
        'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" '
        'xmlns:v="urn:schemas-microsoft-com:vml"><w:r><mc:AlternateContent>'
        '<mc:Choice Requires="wps"><w:drawing><wp:anchor distT="0" distB="0" distL="0" '
        'distR="0" simplePos="0" relativeHeight="2" behindDoc="0" locked="0" layoutInCell="1" '
        'allowOverlap="1"><wp:simplePos x="0" y="0"/><wp:positionH relativeFrom="column">'
        '<wp:posOffset>0</wp:posOffset></wp:positionH><wp:positionV relativeFrom="paragraph">'
        '<wp:posOffset>0</wp:posOffset></wp:positionV><wp:extent cx="5400000" cy="1800000"/>'
        '<wp:wrapTopAndBottom/><wp:docPr id="900" name="Text Box 1"/><a:graphic><a:graphicData '
        'uri="http://schemas.microsoft.com/office/word/2010/wordprocessingShape"><wps:wsp>'
        f"<wps:txbx>{content()}</wps:txbx><wps:bodyPr/></wps:wsp></a:graphicData></a:graphic>"
        "</wp:anchor></w:drawing></mc:Choice><mc:Fallback><w:pict>"
        '<v:rect style="width:425pt;height:142pt"><v:textbox>'
        f"{content()}</v:textbox></v:rect></w:pict></mc:Fallback></mc:AlternateContent>"
        "</w:r></w:p>"
    )
    document.element.body.append(parse_xml(xml))
    # python-docx appends after sectPr; keep the section properties last, as Word requires
    body = document.element.body
    sect = body.find(f"{{{W_NS}}}sectPr")
    if sect is not None:
        body.remove(sect)
        body.append(sect)


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _box_style(document: Any) -> Any:
    from docx.enum.style import WD_STYLE_TYPE

    styles = document.styles
    if BOX_STYLE not in [s.name for s in styles]:
        styles.add_style(BOX_STYLE, WD_STYLE_TYPE.PARAGRAPH)
    return styles[BOX_STYLE]


class _Writer:
    def __init__(self, box: str):
        self.document = _docx().Document()
        self.box = box

    def blocks(self, container: Any, blocks: tuple[model.Block, ...]) -> None:
        for block in blocks:
            self.block(container, block)

    def block(self, container: Any, block: model.Block) -> None:
        if isinstance(block, model.Paragraph):
            add_inlines(container.add_paragraph(), block.inlines)
        elif isinstance(block, model.Heading):
            if container is self.document:
                self.document.add_heading(block.text, level=block.level)
            else:
                container.add_paragraph().add_run(block.text).bold = True
        elif isinstance(block, model.Image):
            self.image(container, block)
        elif isinstance(block, model.ListBlock):
            style = "List Number" if block.ordered else "List Bullet"
            for item in block.items:
                add_inlines(container.add_paragraph(style=style), item)
        elif isinstance(block, model.Video):
            p = container.add_paragraph(f"{block.label}：")
            add_hyperlink(p, block.url, block.url)
        elif isinstance(block, model.Sidebar):
            self.sidebar(block)

    def image(self, container: Any, block: model.Image) -> None:
        from docx.shared import Cm

        run = container.add_paragraph().add_run()
        shape = run.add_picture(str(block.path), width=Cm(12))
        shape._inline.docPr.set("descr", block.alt)
        if block.caption:
            container.add_paragraph(block.caption, style="Caption")

    def sidebar(self, block: model.Sidebar) -> None:
        if self.box == "table":
            cell = self.document.add_table(rows=1, cols=1).cell(0, 0)
            shade_cell(cell)
            cell.paragraphs[0].add_run(block.title).bold = True
            self.blocks(cell, block.blocks)
        elif self.box == "textbox":
            texts = [(block.title, True)] + [
                (model_text(b), False) for b in block.blocks if isinstance(b, model.Paragraph)
            ]
            add_text_box(self.document, texts)
        else:
            style = _box_style(self.document)
            self.document.add_paragraph(block.title, style=style).runs[0].bold = True
            for b in block.blocks:
                if isinstance(b, model.Paragraph):
                    add_inlines(self.document.add_paragraph(style=style), b.inlines)


def model_text(paragraph: model.Paragraph) -> str:
    return "".join(getattr(i, "text", "") for i in paragraph.inlines)


def _front(writer: _Writer, doc: model.IssueDoc) -> None:
    d, meta = writer.document, doc.meta
    d.add_paragraph(meta.publisher)
    d.add_paragraph(meta.title, style="Title")
    f, t = meta.period_from, meta.period_to
    d.add_paragraph(f"【{f.year}年{f.month}月{f.day}日-{t.year}年{t.month}月{t.day}日】")
    for section in doc.sections:  # the hand-typed table of contents of a real bulletin
        d.add_paragraph().add_run(section.title).bold = True
        for article in section.articles:
            d.add_paragraph(f"{article.toc_label} {article.title}")


def _article(writer: _Writer, article: model.Article) -> None:
    d = writer.document
    d.add_heading(article.title, level=2)
    line = d.add_paragraph("来源：")
    add_hyperlink(line, article.source, article.source_url)
    line.add_run(f"　时间：{article.date.isoformat()}")
    if article.author:
        line.add_run(f"　作者：{article.author}")
    writer.blocks(d, article.blocks)


def build_issue_docx(issue_dir: Path, out: Path, box: str = "table") -> Path:
    """Write the issue at `issue_dir` (the source format) as a Word document at `out`."""
    doc = parse_issue(issue_dir)
    writer = _Writer(box)
    _front(writer, doc)
    for section in doc.sections:
        writer.document.add_heading(section.title, level=1)
        for article in section.articles:
            _article(writer, article)
    writer.document.save(str(out))
    return out


def new_document() -> Any:
    """An empty python-docx Document (the tests write the small documents themselves)."""
    return _docx().Document()
