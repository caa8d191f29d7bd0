"""Which article and section each link of an issue belongs to, in link-table order.

The link table (IssueDoc.links, what click tokens index) lists each distinct URL once, in
reading order: an article's source link, then the links in its body. A URL named by two
articles belongs to the first, as its index does.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatch.content.model import Block, IssueDoc, Link, ListBlock, Paragraph, Sidebar, Video


@dataclass(frozen=True)
class LinkOwner:
    index: int
    url: str
    section: str
    article: str
    anchor: str


def _urls(blocks: tuple[Block, ...]) -> list[str]:
    found: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            found += [i.url for i in block.inlines if isinstance(i, Link)]
        elif isinstance(block, ListBlock):
            found += [i.url for item in block.items for i in item if isinstance(i, Link)]
        elif isinstance(block, Video):
            found.append(block.url)
        elif isinstance(block, Sidebar):
            found += _urls(block.blocks)
    return found


def link_owners(doc: IssueDoc) -> list[LinkOwner]:
    """One LinkOwner per entry of doc.links (a link no article names gets empty names)."""
    owner: dict[str, tuple[str, str, str]] = {}
    for section in doc.sections:
        for article in section.articles:
            for url in [article.source_url, *_urls(article.blocks)]:
                owner.setdefault(url, (section.title, article.title, article.anchor))
    return [LinkOwner(i, url, *owner.get(url, ("", "", ""))) for i, url in enumerate(doc.links)]
