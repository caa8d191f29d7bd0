"""Word import, bad input: each refusal or omission says what was kept and what was not, and
nothing is written when the import fails (the folder appears whole or not at all)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from dispatch.config import load_settings
from dispatch.content.docx_import import DocxImportError, convert_docx, import_docx
from dispatch.dev import docx_builder
from dispatch.paths import SAMPLE_ISSUE_DIR

pytest.importorskip("docx")

PHOTO = SAMPLE_ISSUE_DIR / "images" / "cca-complaints-2022.png"
VBA = b'Attribute VB_Name = "AutoOpen"\r\nShell "calc.exe"\r\n' * 10


@pytest.fixture
def settings(tmp_path):
    return load_settings(env={}).replace(data_dir=tmp_path / "var")


def small_doc(path: Path, picture: bool = False) -> Path:
    d = docx_builder.new_document()
    d.add_paragraph("上海交通大学中国质量发展研究院")
    d.add_paragraph("工作简报 2023年6月", style="Title")
    d.add_heading("质量要闻", level=1)
    d.add_heading("一篇文章", level=2)
    d.add_paragraph("来源：中国政府网　时间：2023-06-01")
    d.add_paragraph("正文第一段。")
    if picture:
        d.add_paragraph().add_run().add_picture(str(PHOTO))
        d.add_paragraph("图为示意图。", style="Caption")
    d.save(str(path))
    return path


def rezip(source: Path, target: Path, replace: dict[str, bytes | None]) -> Path:
    """A copy of the .docx with parts replaced, added (name -> bytes) or removed (None)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for info in zin.infolist():
            if info.filename not in replace:
                z.writestr(info, zin.read(info))
        for name, data in replace.items():
            if data is not None:
                z.writestr(name, data)
    return target


def part(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as z:
        return z.read(name)


def refused(path: Path, out: Path, settings) -> DocxImportError:
    before = sorted(p.name for p in out.parent.iterdir())
    with pytest.raises(DocxImportError) as caught:
        import_docx(path, out, settings)
    assert not out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == before  # no temp folder left
    return caught.value


def test_not_a_zip_is_refused_by_name(tmp_path, settings):
    bad = tmp_path / "bulletin.docx"
    bad.write_text("<html>not a Word file</html>")
    error = refused(bad, tmp_path / "out", settings)
    assert error.key == "not_zip" and "bulletin.docx" in str(error) and "nothing kept" in str(error)


def test_an_old_doc_file_is_told_to_save_as_docx(tmp_path, settings):
    old = tmp_path / "old.docx"
    old.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1024)
    assert refused(old, tmp_path / "out", settings).key == "legacy_doc"


def test_a_50_mb_document_is_refused_before_reading(tmp_path, settings):
    big = tmp_path / "big.docx"
    with big.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: no 50 MB written to disk
    error = refused(big, tmp_path / "out", settings)
    assert error.key == "too_large" and "docx_max_bytes" in str(error) and "50.0 MB" in str(error)
    with pytest.raises(DocxImportError, match="docx_max_bytes"):  # the in-memory door too
        convert_docx(b"PK" + b"\0" * 2048, "x.docx", settings.replace(docx_max_bytes=1024))


def test_a_zip_bomb_is_refused_from_its_directory_before_inflating(tmp_path, settings):
    source = small_doc(tmp_path / "a.docx")
    bomb = rezip(source, tmp_path / "bomb.docx", {"word/media/zeros.bin": b"\0" * (4 << 20)})
    error = refused(bomb, tmp_path / "out", settings)
    assert error.key == "zip_bomb" and "word/media/zeros.bin" in str(error)
    # and by the total: the whole document may unpack to no more than the setting
    tight = settings.replace(docx_max_unpacked_bytes=20_000)
    error = refused(source, tmp_path / "out", tight)
    assert error.key == "zip_bomb" and "docx_max_unpacked_bytes" in str(error)


def test_macros_of_a_docm_are_dropped_and_never_reach_the_output(tmp_path, settings):
    source = small_doc(tmp_path / "a.docx")
    types = part(source, "[Content_Types].xml").replace(
        b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        b"application/vnd.ms-word.document.macroEnabled.main+xml",
    )
    docm = rezip(
        source,
        tmp_path / "a.docm",
        {"[Content_Types].xml": types, "word/vbaProject.bin": VBA},
    )
    result = import_docx(docm, tmp_path / "out", settings)
    macros = [e for e in result.report.dropped if e.code == "macros"]
    assert [e.args["part"] for e in macros] == ["word/vbaProject.bin"]
    assert "never run" in macros[0].text("en")
    written = [p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert written and not any(b"calc.exe" in data for data in written)
    assert result.problems == []


def test_embedded_ole_objects_are_left_out_and_named(tmp_path, settings):
    source = small_doc(tmp_path / "a.docx")
    xml = part(source, "word/document.xml")
    ole = (
        b'<w:p><w:r><w:object xmlns:o="urn:schemas-microsoft-com:office:office" '
        b'xmlns:v="urn:schemas-microsoft-com:vml"><v:shape id="s1"/>'
        b'<o:OLEObject Type="Embed" ProgID="Excel.Sheet.12" ShapeID="s1" r:id="rIdOle"/>'
        b"</w:object></w:r><w:r><w:t>" + "见附表".encode() + b"</w:t></w:r></w:p>"
    )
    xml = xml.replace(b"<w:sectPr", ole + b"<w:sectPr", 1)
    doc = rezip(
        source,
        tmp_path / "ole.docx",
        {"word/document.xml": xml, "word/embeddings/oleObject1.bin": b"OLE" * 100},
    )
    result = import_docx(doc, tmp_path / "out", settings)
    entry = next(e for e in result.report.dropped if e.code == "ole_object")
    assert entry.args["what"] == "Excel.Sheet.12" and entry.paragraph == 7
    assert "见附表" in (tmp_path / "out" / "issue.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "suffix,content_type,data,fmt",
    [
        ("emf", "image/x-emf", b"\x01\x00\x00\x00" + b"\0" * 36 + b" EMF" + b"\0" * 64, "EMF"),
        ("svg", "image/svg+xml", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "SVG"),
    ],
)
def test_vector_pictures_are_left_out_with_a_way_forward(
    tmp_path, settings, suffix, content_type, data, fmt
):
    source = small_doc(tmp_path / "a.docx", picture=True)
    with zipfile.ZipFile(source) as z:
        media = next(n for n in z.namelist() if n.startswith("word/media/"))
    name = media.rsplit(".", 1)[0] + "." + suffix
    rels = part(source, "word/_rels/document.xml.rels").replace(
        media.split("word/", 1)[1].encode(), name.split("word/", 1)[1].encode()
    )
    types = part(source, "[Content_Types].xml").replace(
        b"</Types>",
        f'<Default Extension="{suffix}" ContentType="{content_type}"/></Types>'.encode(),
    )
    doc = rezip(
        source,
        tmp_path / f"{suffix}.docx",
        {
            media: None,
            name: data,
            "word/_rels/document.xml.rels": rels,
            "[Content_Types].xml": types,
        },
    )
    result = import_docx(doc, tmp_path / "out", settings)
    entry = next(e for e in result.report.dropped if e.code == "image_format")
    assert entry.args["fmt"] == fmt and entry.paragraph == 7
    assert "PNG or JPEG" in entry.text("en")
    assert not (tmp_path / "out" / "images").exists()
    assert result.report.kept.get("images") is None


def test_a_document_without_headings_is_refused_with_what_it_held(tmp_path, settings):
    d = docx_builder.new_document()
    for n in range(5):
        d.add_paragraph(f"第{n}段普通文字，没有任何标题格式。")
    d.add_paragraph().add_run().add_picture(str(PHOTO))
    d.save(str(tmp_path / "flat.docx"))
    error = refused(tmp_path / "flat.docx", tmp_path / "out", settings)
    assert error.key == "no_headings"
    assert "6 paragraphs and 1 pictures, none kept" in str(error)
    assert "Heading 1" in str(error) and "标题 1" in str(error)


def test_malformed_xml_is_refused_naming_the_part(tmp_path, settings):
    source = small_doc(tmp_path / "a.docx")
    broken = rezip(source, tmp_path / "b.docx", {"word/document.xml": b"<w:document><oops"})
    error = refused(broken, tmp_path / "out", settings)
    assert error.key == "bad_xml" and "word/document.xml" in str(error)


def test_entities_in_the_xml_are_not_expanded(tmp_path, settings):
    source = small_doc(tmp_path / "a.docx")
    xml = part(source, "word/document.xml")
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    evil = xml.replace(
        b"?>",
        f'?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'.encode(),
        1,
    ).replace("正文第一段。".encode(), b"&x;", 1)
    doc = rezip(source, tmp_path / "xxe.docx", {"word/document.xml": evil})
    try:
        result = convert_docx(doc.read_bytes(), "xxe.docx", settings)
    except DocxImportError:
        return  # refused outright is fine too
    assert "TOP-SECRET" not in result.source_text


def test_nothing_is_left_behind_when_writing_fails(tmp_path, settings, monkeypatch):
    source = small_doc(tmp_path / "a.docx", picture=True)
    calls = {"n": 0}
    real = Path.write_bytes

    def failing(self, data):
        calls["n"] += 1
        if calls["n"] == 2:  # issue.md written, the picture fails (disk full)
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError):
        import_docx(source, tmp_path / "out", settings)
    monkeypatch.undo()
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["a.docx"]


def test_bytes_from_memory_work_like_a_file(settings, tmp_path):
    data = small_doc(tmp_path / "a.docx").read_bytes()
    result = convert_docx(io.BytesIO(data).getvalue(), "a.docx", settings)
    assert "## 一篇文章" in result.source_text


def test_options_cannot_add_front_matter_lines(tmp_path, settings):
    from dispatch.content.docx_import import ImportOptions

    options = ImportOptions(publisher="研究院\nnumber: 99", slug="2023-06\ncover: /etc/passwd")
    result = convert_docx(small_doc(tmp_path / "a.docx").read_bytes(), "a.docx", settings, options)
    front = result.source_text.split("---")[1]
    assert "\nnumber: 99" not in front and "\ncover:" not in front
    assert "publisher: 研究院 number: 99" in front
