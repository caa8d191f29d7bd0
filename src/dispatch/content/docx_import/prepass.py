"""A small pass over word/document.xml before the converter, for what mammoth does not keep.

Why: mammoth turns a document into clean HTML but forgets three things the bulletin needs:
where each paragraph was (the report names paragraphs), which text sat in a box (a text box,
a one-cell table or a 专栏 paragraph style all become the format's sidebar) and which embedded
objects it skipped. So this pass, with a hardened XML parser (no entities, no network):
- moves each text box's content after the paragraph that anchors it, and unwraps one-cell
  tables, each between two marker paragraphs the HTML walker turns into `::: sidebar`;
- wraps runs of paragraphs whose style is named like 专栏/sidebar/box in the same markers;
- removes embedded OLE objects, ActiveX controls and charts, reporting each;
- numbers every paragraph with a bookmark `dpara-N`, which mammoth keeps as `<a id>`.
The conversion itself (styles, runs, lists, links, tables, images, notes) stays mammoth's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from dispatch.content.docx_import.errors import DocxImportError

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
MC = "http://schemas.openxmlformats.org/markup-compatibility/2006"
O_NS = "urn:schemas-microsoft-com:office:office"
A_NS = "http://schemas.openxmlformats.org/drawingml/2006/main"
CHART_URI = "http://schemas.openxmlformats.org/drawingml/2006/chart"
MARK = "\u2063dispatch-box:"
BOOKMARK = "dpara-"
BOX_STYLE_WORDS = ("专栏", "sidebar", "box", "文本框", "方框", "边框")
BOX_CONTAINERS = (f"{{{MC}}}AlternateContent", f"{{{W}}}pict", f"{{{W}}}drawing", f"{{{W}}}object")


def w(tag: str) -> str:
    return f"{{{W}}}{tag}"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_xml(data: bytes, file: str, part: str) -> Any:
    try:
        return etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise DocxImportError("bad_xml", file=file, part=part, why=str(exc)[:120]) from None


@dataclass
class Prepared:
    """document.xml after the pass, and what it found (codes with the element they name)."""

    xml: bytes
    paragraphs: int
    findings: list[tuple[str, int | None, str, dict[str, str]]] = field(default_factory=list)


def style_names(styles_xml: bytes | None, file: str) -> dict[str, str]:
    """styleId -> display name, from word/styles.xml (empty when the part is missing)."""
    if not styles_xml:
        return {}
    root = parse_xml(styles_xml, file, "word/styles.xml")
    out = {}
    for style in root.iter(w("style")):
        name = style.find(w("name"))
        if name is not None:
            out[style.get(w("styleId"), "")] = name.get(w("val"), "")
    return out


STYLE_REFS = ("pStyle", "rStyle", "tblStyle", "numStyleLink", "styleLink", "basedOn", "link")


def used_styles(styles_xml: bytes | None, referencing: list[bytes], file: str) -> bytes | None:
    """styles.xml with only the styles the document uses (and those they are based on).

    Why: Word's and python-docx's templates define hundreds of styles (350 KB of XML for a
    page of text), and mammoth reads the whole part with minidom; the unused ones cost most
    of the import's time and change nothing in the result."""
    if not styles_xml:
        return styles_xml
    root = parse_xml(styles_xml, file, "word/styles.xml")
    by_id = {st.get(w("styleId"), ""): st for st in root.iter(w("style"))}
    wanted = {
        ref.get(w("val"), "")
        for data in referencing
        for ref in parse_xml(data, file, "word").iter(*(w(t) for t in STYLE_REFS))
    }
    wanted |= {sid for sid, st in by_id.items() if st.get(w("default")) in ("1", "true")}
    todo = list(wanted)
    while todo:
        style = by_id.get(todo.pop())
        for ref in style.iter(*(w(t) for t in STYLE_REFS)) if style is not None else ():
            if ref.get(w("val"), "") not in wanted:
                wanted.add(ref.get(w("val"), ""))
                todo.append(ref.get(w("val"), ""))
    for sid, style in by_id.items():
        if sid not in wanted:
            style.getparent().remove(style)
    for latent in root.findall(w("latentStyles")):
        root.remove(latent)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)


def _marker(kind: str) -> Any:
    p = etree.Element(w("p"))
    etree.SubElement(etree.SubElement(p, w("r")), w("t")).text = MARK + kind
    return p


def _text(el: Any) -> str:
    return "".join(t.text or "" for t in el.iter(w("t")))


def _container(box: Any) -> Any:
    """The outermost text-box wrapper inside the host paragraph (AlternateContent, pict…)."""
    found, node = None, box.getparent()
    while node is not None and node.tag != w("p"):
        if node.tag in BOX_CONTAINERS:
            found = node
        node = node.getparent()
    return found if found is not None else box


def _host_paragraph(el: Any) -> Any:
    node = el.getparent()
    while node is not None and node.tag != w("p"):
        node = node.getparent()
    return node


class _Pass:
    def __init__(self, root: Any, styles: dict[str, str]):
        self.root = root
        self.styles = styles
        self.marks: list[tuple[str, Any, dict[str, str]]] = []  # code, element, args

    def text_boxes(self) -> None:
        for box in list(self.root.iter(w("txbxContent"))):
            container = _container(box)
            host = _host_paragraph(container)
            if host is None or container.getparent() is None:
                continue  # the fallback copy of a box already moved (its wrapper is gone)
            content = [c for c in box if c.tag in (w("p"), w("tbl"))]
            container.getparent().remove(container)
            self._wrap_after(host, content, "textbox")

    def _wrap_after(self, anchor: Any, content: list[Any], kind: str) -> None:
        begin, end = _marker("begin:" + kind), _marker("end")
        anchor.addnext(begin)
        last = begin
        for el in content:
            last.addnext(el)
            last = el
        last.addnext(end)
        first = content[0] if content else end
        self.marks.append((f"box_{kind}", first, {}))

    def one_cell_tables(self) -> None:
        for tbl in list(self.root.iter(w("tbl"))):
            rows = tbl.findall(w("tr"))
            cells = [tc for tr in rows for tc in tr.findall(w("tc"))]
            if len(rows) != 1 or len(cells) != 1 or tbl.getparent() is None:
                continue
            content = [c for c in cells[0] if c.tag in (w("p"), w("tbl"))]
            tbl.addprevious(etree.Element(w("p")))  # an anchor to insert after
            anchor = tbl.getprevious()
            tbl.getparent().remove(tbl)
            self._wrap_after(anchor, content, "table")
            anchor.getparent().remove(anchor)

    def _box_style(self, p: Any) -> str:
        ref = p.find(f"{w('pPr')}/{w('pStyle')}")
        if ref is None:
            return ""
        name = self.styles.get(ref.get(w("val"), ""), ref.get(w("val"), ""))
        return name if any(word in name.lower() for word in BOX_STYLE_WORDS) else ""

    def style_boxes(self) -> None:
        body = self.root.find(w("body"))
        run: list[Any] = []
        for el in list(body) if body is not None else []:
            style = self._box_style(el) if el.tag == w("p") else ""
            if style and (not run or self._box_style(run[0]) == style):
                run.append(el)
                continue
            self._close_style_run(run)
            run = [el] if style else []
        self._close_style_run(run)

    def _close_style_run(self, run: list[Any]) -> None:
        if not run:
            return
        style = self._box_style(run[0])
        run[0].addprevious(_marker("begin:style"))
        run[-1].addnext(_marker("end"))
        self.marks.append(("box_style", run[0], {"style": style}))

    def objects(self) -> None:
        for obj in list(self.root.iter(w("object"), w("control"))):
            ole = next(obj.iter(f"{{{O_NS}}}OLEObject"), None)
            what = ole.get("ProgID", "OLE") if ole is not None else obj.tag.split("}")[1]
            self._remove_reported(obj, what)
        for data in list(self.root.iter(f"{{{A_NS}}}graphicData")):
            if data.get("uri") == CHART_URI:
                drawing = next((a for a in data.iterancestors(w("drawing"))), None)
                if drawing is not None:
                    self._remove_reported(drawing, "chart")

    def _remove_reported(self, el: Any, what: str) -> None:
        host = _host_paragraph(el)
        self.marks.append(("ole_object", host if host is not None else el, {"what": what}))
        if el.getparent() is not None:
            el.getparent().remove(el)

    def number(self) -> int:
        """Bookmark every paragraph in document order (`dpara-N`); returns the count."""
        n = 0
        for p in self.root.iter(w("p")):
            if _text(p).startswith(MARK):
                continue
            n += 1
            mark = etree.Element(w("bookmarkStart"))
            mark.set(w("id"), str(900000 + n))
            mark.set(w("name"), f"{BOOKMARK}{n}")
            ppr = p.find(w("pPr"))
            if ppr is not None:
                ppr.addnext(mark)
            else:
                p.insert(0, mark)
        return n


def paragraph_number(p: Any) -> int | None:
    mark = p.find(w("bookmarkStart")) if p is not None else None
    name = mark.get(w("name"), "") if mark is not None else ""
    return int(name[len(BOOKMARK) :]) if name.startswith(BOOKMARK) else None


def prepare(document_xml: bytes, styles_xml: bytes | None, file: str) -> Prepared:
    root = parse_xml(document_xml, file, "word/document.xml")
    work = _Pass(root, style_names(styles_xml, file))
    work.objects()
    work.text_boxes()
    work.one_cell_tables()
    work.style_boxes()
    count = work.number()
    findings = []
    for code, el, args in work.marks:
        paragraph = el if el.tag == w("p") else next(el.iter(w("p")), None)
        text = _text(paragraph) if paragraph is not None else ""
        findings.append((code, paragraph_number(paragraph), text, args))
    xml = etree.tostring(root, xml_declaration=True, encoding="UTF-8", standalone=True)
    return Prepared(xml, count, findings)
