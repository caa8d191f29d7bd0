"""Stored issues: the parsed source, keyed by slug, with a content hash for render caching."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow
from dispatch.vocabulary import IssueStatus

ISSUE_STATUSES = tuple(s.value for s in IssueStatus)


class Issue(Base):
    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    number: Mapped[int]
    period_from: Mapped[date]
    period_to: Mapped[date]
    publisher: Mapped[str] = mapped_column(String(200))
    locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    status: Mapped[str] = mapped_column(String(16), default=IssueStatus.DRAFT.value)
    source_path: Mapped[str] = mapped_column(Text)  # folder holding issue.md and its images
    source_text: Mapped[str] = mapped_column(Text)  # the Markdown as published
    content_hash: Mapped[str] = mapped_column(String(64))  # sha256 of source text + image bytes
    summary: Mapped[dict] = mapped_column(JSON, default=dict)  # sections/articles outline
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(default=None)
    # 1 for an issue as first published; a changed source of an issue already sent becomes a
    # new row `<slug>-r<N>` with revision N pointing at the original (content_store docs)
    revision: Mapped[int] = mapped_column(default=1, server_default="1")
    revision_of_id: Mapped[int | None] = mapped_column(ForeignKey("issues.id"), default=None)

    publish_note = None  # not stored: publish_issue's warning (str), if any
