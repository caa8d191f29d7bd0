"""The walked structure as issue.md: front matter, sections, articles with their metadata.

Why the guesses are made here: only with the whole document walked can the period come from
the article dates, or a section title tell a contents line from text. Every value the
document did not state is reported with the paragraph it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from dispatch.content.docx_import import derive
from dispatch.content.docx_import.report import ImportReport
from dispatch.content.docx_import.walk import Art, Box, FrontLine, Img, Walked, is_toc_line

PUBLISHER_RE = re.compile(r"(研究院|研究所|大学|学院|中心|委员会|协会|学会|总局|办公室|公司|集团)$")


@dataclass(frozen=True)
class ImportOptions:
    """What the editor may say that the document does not (CLI options, admin form fields)."""

    number: int | None = None
    slug: str | None = None
    source_url: str | None = None
    title: str | None = None
    publisher: str | None = None

    def __post_init__(self) -> None:
        """One line each: a newline in an option would add a key to the front matter."""
        for name in ("slug", "source_url", "title", "publisher"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, " ".join(str(value).split()) or None)


@dataclass
class Front:
    title: str = ""
    publisher: str = ""
    period: tuple[date, date] | None = None
    number: int | None = None
    slug: str = ""


def _front_lines(walked: Walked, report: ImportReport) -> Front:
    """Title, publisher, period and number from the lines before the first section; the
    hand-typed contents list is recognised and left out (it is generated)."""
    front = Front()
    sections = {s.title for s in walked.sections}
    toc: list[FrontLine] = []
    rest: list[FrontLine] = []
    for line in walked.front:
        if line.kind == "title" and not front.title:
            front.title = line.text
        elif front.period is None and (period := derive.find_period(line.text)):
            front.period = period
            start, end = period
            report.guess("period_guess", line.paragraph, line.text, start=start, end=end)
            front.number = front.number or derive.find_number(line.text)
        elif is_toc_line(line.text, sections):
            toc.append(line)
        else:
            rest.append(line)
    if toc:
        report.drop("toc_dropped", toc[0].paragraph, toc[0].text, n=len(toc))
    publisher = next((x for x in rest if PUBLISHER_RE.search(x.text)), None)
    if publisher is not None:
        rest.remove(publisher)
    if not front.title and rest:
        line = next((x for x in rest if x.kind in ("title", "heading")), None) or (
            rest[1] if len(rest) > 1 and publisher is None else rest[0]
        )
        front.title = line.text
        rest.remove(line)
        report.guess("title_guess", line.paragraph, line.text)
    if publisher is None and rest:
        publisher = rest.pop(0)
    if publisher is not None:
        front.publisher = publisher.text
        report.guess("publisher_guess", publisher.paragraph, publisher.text)
    for line in rest:
        if front.number is None and derive.find_number(line.text):
            front.number = derive.find_number(line.text)
        else:
            report.drop("before_section", line.paragraph, line.text)
    return front


def _period_from_dates(walked: Walked, report: ImportReport) -> tuple[date, date] | None:
    dates = [derive.parse_date(a.meta.get("date", "")) for s in walked.sections for a in s.articles]
    found = sorted(d for d in dates if d)
    if not found:
        return None
    start = found[0].replace(day=1)
    period = derive.find_period(f"{found[-1].year}年{found[-1].month}月")
    end = period[1] if period else found[-1]
    report.guess("period_from_dates", None, start=start, end=end)
    return start, end


def resolve_front(walked: Walked, options: ImportOptions, report: ImportReport) -> Front:
    front = _front_lines(walked, report)
    front.title = options.title or front.title or "工作简报"
    front.publisher = options.publisher or front.publisher
    if not front.publisher:
        report.drop("publisher_missing")
    if front.period is None:
        front.period = _period_from_dates(walked, report)
    if options.number:
        front.number = options.number
    elif front.number is None and front.period is not None:
        front.number = front.period[0].month
        report.guess("number_guess", None, number=front.number)
    if options.slug:
        front.slug = options.slug
    elif front.period is not None:
        front.slug = front.period[0].strftime("%Y-%m")
        report.guess("slug_guess", None, slug=front.slug)
    return front


def _source_url(art: Art, options: ImportOptions, report: ImportReport) -> str:
    if art.meta_links:
        return art.meta_links[0]
    source = art.meta.get("source", "")
    known = derive.known_site(source) if source else None
    if known:
        report.guess("source_url_known", art.meta_paragraph, source, source=source, url=known)
        return known
    first_text = " ".join(str(b) for b in art.blocks[:2] if isinstance(b, str))
    found = derive.domain_in(source + " " + first_text)
    if found:
        report.guess("source_url_text", art.meta_paragraph or art.paragraph, source, url=found)
        return found
    if options.source_url:
        report.guess("source_url_option", art.paragraph, art.title, url=options.source_url)
        return options.source_url
    report.drop("source_url_missing", art.paragraph, art.title, title=art.title)
    return ""


def article_meta(art: Art, front: Front, options: ImportOptions, report: ImportReport) -> list[str]:
    source = art.meta.get("source", "")
    if not source:
        source = front.publisher or "本刊"
        report.guess("source_missing", art.paragraph, art.title, title=art.title, source=source)
    lines = [f"source: {source}"]
    url = _source_url(art, options, report)
    if url:
        lines.append(f"source_url: {url}")
    when = derive.parse_date(art.meta.get("date", ""))
    if when is None and front.period is not None:
        when = front.period[1]
        report.guess("date_from_period", art.paragraph, art.title, title=art.title, date=when)
    if when is not None:
        lines.append(f"date: {when.isoformat()}")
    if art.meta.get("author"):
        lines.append(f"author: {art.meta['author']}")
    return lines


def _image(img: Img, report: ImportReport) -> str:
    alt = img.alt
    if not alt and img.caption:
        alt = img.caption
        report.guess("alt_from_caption", img.paragraph, img.caption)
    if not alt:
        alt = f"图片 {img.src.rsplit('-', 1)[-1].split('.')[0]}"
        report.guess("alt_missing", img.paragraph, alt=alt)
    alt = alt.replace("[", "【").replace("]", "】")
    caption = img.caption.replace('"', "”")
    return f'![{alt}]({img.src} "{caption}")' if caption else f"![{alt}]({img.src})"


def blocks_text(blocks: list[Any], report: ImportReport) -> list[str]:
    out = []
    for block in blocks:
        if isinstance(block, Img):
            out.append(_image(block, report))
            report.count("images")
        elif isinstance(block, Box):
            inner = "\n\n".join(blocks_text(block.blocks, report))
            out.append(f"::: sidebar {block.title}\n\n{inner}\n\n:::")
            report.count("sidebars")
        else:
            out.append(str(block))
            report.count("paragraphs")
    return out


def notes_text(art: Art, walked: Walked, footnotes_ok: bool) -> list[str]:
    out = []
    for number in dict.fromkeys(art.notes):
        text = walked.footnotes.get(number, "")
        out.append(f"[^{number}]: {text}" if footnotes_ok else f"[{number}] {text}")
    return out
