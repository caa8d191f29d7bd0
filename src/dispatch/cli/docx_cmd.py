"""`dispatch issues import-docx FILE.docx --out DIR`: a Word bulletin to an issue folder.

Why a folder and not a publish: the importer guesses (titles marked only by bold, source
addresses, the issue number), so the editor reads the report, checks issue.md, previews it
with `dispatch render` and then publishes it with `dispatch issues publish DIR`.
"""

from __future__ import annotations

from pathlib import Path

import click

from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.content.docx_import import DocxImportError, ImportOptions, import_docx
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "wrote": (
            "已写入 {path}（issue.md 与 {n} 张图片）",
            "wrote {path} (issue.md and {n} pictures)",
        ),
        "next": (
            "核对上面的推测后：dispatch render {path} --out 预览目录；"
            "dispatch issues publish {path}",
            "after checking the guesses above: dispatch render {path} --out PREVIEW; "
            "dispatch issues publish {path}",
        ),
        "problems": (
            "发布前还须修改 issue.md 的 {n} 处：",
            "{n} thing(s) to fix in issue.md before it can be published:",
        ),
        "not_found": ("找不到文件 {path}", "no such file: {path}"),
    }
)


def _human(data: dict) -> None:
    for line in data["report_lines"]:
        click.echo(line)
    click.echo(MESSAGES.both("wrote", path=data["folder"], n=data["images"]))
    if data["problems"]:
        click.echo("warning: " + MESSAGES.both("problems", n=len(data["problems"])), err=True)
        for problem in data["problems"]:
            click.echo(f"  {data['folder']}/{problem}", err=True)
    click.echo(MESSAGES.both("next", path=data["folder"]))


@click.command("import-docx")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="New (or empty) folder for issue.md and images / 输出目录（新建或为空）",
)
@click.option("--number", type=click.IntRange(min=1), help="Issue number / 期号")
@click.option("--slug", help="URL name, default YYYY-MM of the period / 网址名")
@click.option("--source-url", help="Source URL for articles that name none / 缺省来源网址")
@click.option("--publisher", help="Publisher when the document names none / 发布单位")
@json_option
def import_docx_cmd(
    file: Path,
    out_dir: Path,
    number: int | None,
    slug: str | None,
    source_url: str | None,
    publisher: str | None,
    as_json: bool,
) -> None:
    """Import a Word bulletin (.docx) as an issue folder / 从 Word 文档导入简报."""
    settings = settings_or_exit()
    if not file.is_file():
        fail(MESSAGES.both("not_found", path=file))
    options = ImportOptions(number=number, slug=slug, source_url=source_url, publisher=publisher)
    try:
        result = import_docx(file, out_dir, settings, options)
    except DocxImportError as exc:
        if exc.report is not None and not as_json:
            for line in exc.report.lines():
                click.echo(line, err=True)
        fail(str(exc))
        return
    data = {
        "folder": str(out_dir),
        "images": len(result.images),
        "problems": result.problems,
        "report": result.report.as_dict(),
        "report_lines": result.report.lines(),
    }
    emit(data, as_json, _human)


def register(main: click.Group) -> None:
    """Add `import-docx` to the `issues` group (made by dispatch.cli.render_cmd)."""
    issues = main.commands.get("issues")
    if isinstance(issues, click.Group):
        issues.add_command(import_docx_cmd)


__all__ = ["register", "import_docx_cmd"]
