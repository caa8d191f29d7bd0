"""`dispatch bench render`: time one cold render of the sample issue and the per-recipient fill.

Targets (docs/architecture.md, issue 2): render under 1 s; per-recipient fill under 50 µs.
Issue 19: the sample bulletin as a Word document (built with python-docx, not timed) imported
into an issue folder in under 2 s (`docx_import_s`: read, convert, write, check it parses).
The fill is measured with tracking on: signed click URLs for every link (the sample plus an
extra article holding more links, so the table has 20+ entries), an open pixel and a name.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import click

from dispatch.cli.common import emit, json_option
from dispatch.config import Settings, load_settings
from dispatch.content.model import IssueDoc
from dispatch.content.parse import parse_issue
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.render import email as email_render
from dispatch.render.slots import RecipientSlots
from dispatch.render.wechat import render_wechat

EXTRA_LINKS = 24


def _with_extra_links(sample: Path, workdir: Path) -> IssueDoc:
    """The sample plus one article linking EXTRA_LINKS more pages (a link-heavy issue)."""
    target = workdir / "issue"
    shutil.copytree(sample, target)
    links = "\n".join(
        f"- [参考链接 {i} / Reference {i}](https://www.example.org/reference/{i}?utm_source=bulletin)"
        for i in range(EXTRA_LINKS)
    )
    extra = (
        "\n\n## 延伸阅读 / Further reading\nsource: 示例 / Example\n"
        "source_url: https://www.example.org/\ndate: 2023-02-28\n\n"
        f"本期相关资料汇总。\n\n{links}\n"
    )
    with (target / "issue.md").open("a", encoding="utf-8") as fh:
        fh.write(extra)
    return parse_issue(target)


def _slots(settings: Settings, n_links: int, count: int) -> list[RecipientSlots]:
    try:
        from dispatch.tokens import tracking_slots
    except ImportError:  # the tokens module is another area's; fall back to same-length URLs
        tracking_slots = None
    out = []
    for i in range(count):
        delivery = 1_000_000 + i
        if tracking_slots is not None:
            out.append(
                tracking_slots(
                    settings,
                    delivery_id=delivery,
                    subscriber_id=500_000 + i,
                    list_id=3,
                    name=f"读者{i} <reader>",
                    n_links=n_links,
                    tracking=True,
                )
            )
        else:
            base = settings.public_base_url
            out.append(
                RecipientSlots(
                    name=f"读者{i} <reader>",
                    unsubscribe_url=f"{base}/u/{delivery}.{'x' * 43}",
                    open_url=f"{base}/t/o/{delivery}.{'x' * 43}.gif",
                    click_urls=[f"{base}/t/c/{delivery}.{k}.{'x' * 43}" for k in range(n_links)],
                )
            )
    return out


def _median_fill_us(
    rendered: email_render.RenderedEmail, slots: list[RecipientSlots], rounds: int
) -> float:
    timings: list[int] = []
    clock = time.perf_counter_ns
    for r in range(rounds):
        s = slots[r % len(slots)]
        t0 = clock()
        rendered.personalize(s)
        timings.append(clock() - t0)
    return statistics.median(timings) / 1000


def _docx_import_figures(settings: Settings) -> dict:
    """Time `import_docx` of the sample bulletin's .docx (None without python-docx)."""
    from dispatch.content.docx_import import import_docx

    try:
        from dispatch.dev.docx_builder import build_issue_docx

        with tempfile.TemporaryDirectory() as tmp:
            source = build_issue_docx(SAMPLE_ISSUE_DIR, Path(tmp) / "sample.docx")
            t0 = time.perf_counter()
            result = import_docx(source, Path(tmp) / "first", settings)
            first_s = time.perf_counter() - t0
            t0, c0 = time.perf_counter(), time.process_time()
            import_docx(source, Path(tmp) / "again", settings)
            again_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
            size = source.stat().st_size
    except SystemExit:  # python-docx (the test extra) is not installed
        return {"docx_import_s": None, "docx_import_cpu_s": None}
    return {
        "docx_import_s": round(again_s, 4),
        "docx_import_cpu_s": round(cpu_s, 4),
        "docx_import_first_in_process_s": round(first_s, 4),
        "docx_bytes": size,
        "docx_articles": result.report.kept.get("articles", 0),
        "docx_images": len(result.images),
    }


@click.command("render")
@json_option
@click.option("--rounds", default=20_000, show_default=True, help="Recipients to fill / 填充次数")
def command(as_json: bool, rounds: int) -> None:
    """Time the sample issue's render and the per-recipient fill / 渲染与逐人填充耗时."""
    settings = load_settings().replace(public_base_url="https://bulletin.example.org")
    doc = parse_issue(SAMPLE_ISSUE_DIR)

    email_render.clear_cache(templates=True)
    t0 = time.perf_counter()
    email_render.render_email(doc, settings, tracking=True)
    first_in_process_s = time.perf_counter() - t0  # + template compile, CSS parse, imports
    email_render.clear_cache()
    t0 = time.perf_counter()
    rendered = email_render.render_email(doc, settings, tracking=True)
    render_email_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    render_wechat(doc, settings)
    render_wechat_s = time.perf_counter() - t0

    fill_sample_us = _median_fill_us(rendered, _slots(settings, len(doc.links), 500), rounds)
    html, _ = rendered.personalize(_slots(settings, len(doc.links), 1)[0])

    with tempfile.TemporaryDirectory() as tmp:
        heavy = _with_extra_links(SAMPLE_ISSUE_DIR, Path(tmp))
        heavy_rendered = email_render.render_email(heavy, settings, tracking=True)
        fill_heavy_us = _median_fill_us(
            heavy_rendered, _slots(settings, len(heavy.links), 500), rounds
        )
        heavy_html, _ = heavy_rendered.personalize(_slots(settings, len(heavy.links), 1)[0])

    figures = {
        "render_email_cold_s": round(render_email_s, 4),
        "render_email_first_in_process_s": round(first_in_process_s, 4),
        "render_wechat_s": round(render_wechat_s, 4),
        "fill_median_us": round(fill_sample_us, 2),
        "sample_links": len(doc.links),
        "sample_slots": len(rendered.html_layout.slot_ids),
        "sample_html_bytes": len(html.encode("utf-8")),
        "fill_median_us_link_heavy": round(fill_heavy_us, 2),
        "link_heavy_links": len(heavy.links),
        "link_heavy_html_bytes": len(heavy_html.encode("utf-8")),
        "rounds": rounds,
        **_docx_import_figures(settings),
        "targets": {"render_email_cold_s": 1.0, "fill_median_us": 50.0, "docx_import_s": 2.0},
    }

    def human(f: dict) -> None:
        click.echo(
            f"render email, issue not cached / 邮件渲染: {f['render_email_cold_s'] * 1000:.1f} ms "
            f"(target < 1000 ms; first in a fresh process, with template compile: "
            f"{f['render_email_first_in_process_s'] * 1000:.1f} ms)"
        )
        click.echo(f"render wechat / 微信渲染: {f['render_wechat_s'] * 1000:.1f} ms")
        click.echo(
            f"fill one recipient / 逐人填充 (median of {f['rounds']}): {f['fill_median_us']:.1f} "
            f"µs "
            f"({f['sample_links']} links, {f['sample_slots']} slots; target < 50 µs)"
        )
        click.echo(
            f"fill, link-heavy issue / 多链接 ({f['link_heavy_links']} links): "
            f"{f['fill_median_us_link_heavy']:.1f} µs"
        )
        click.echo(
            f"HTML after fill / 填充后大小: {f['sample_html_bytes']:,} bytes "
            f"(link-heavy {f['link_heavy_html_bytes']:,}; Gmail clips at 102,400)"
        )

        if f["docx_import_s"] is None:
            click.echo(
                "Word import / Word 导入: skipped (pip install -e '.[test]' for python-docx)"
            )
        else:
            click.echo(
                f"Word import of the sample / Word 导入: {f['docx_import_s'] * 1000:.0f} ms, "
                f"CPU {f['docx_import_cpu_s'] * 1000:.0f} ms (target < 2000 ms; first in "
                f"process {f['docx_import_first_in_process_s'] * 1000:.0f} ms; "
                f"{f['docx_bytes']:,}-byte .docx, {f['docx_articles']} articles, "
                f"{f['docx_images']} pictures)"
            )

    emit(figures, as_json, human)
