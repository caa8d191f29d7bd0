"""Models of the editor's desk: every saved version of an issue's source, and the reviews of
those versions (approvals and requests for changes).

Why a version table beside `issues`: the issue row is what campaigns send (its source text
and content hash); a version is one saved state of that text with who wrote it, kept for good
so it can be compared and restored, and it is what reviewers approve. An approval names the
version's content hash, so the send guard can tell that what is about to go out is exactly
what was approved (dispatch.editorial.guard).

Why `approval_key` is unique: one reviewer approves one submission of a version once. It holds
"<version id>:<submitted at, µs>:<reviewer id>" on approvals and NULL on requests for changes
(NULLs never clash), which a unique index enforces the same way on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow
from dispatch.vocabulary import VersionStatus

__all__ = ["IssueVersion", "IssueReview"]


class IssueVersion(Base):
    """One saved state of an issue's source (immutable once written, except its status)."""

    __tablename__ = "issue_versions"
    __table_args__ = (UniqueConstraint("issue_id", "number", name="uq_issue_versions_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"), index=True)
    number: Mapped[int]  # 1, 2, 3 … within the issue
    source_text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))  # the parsed document's hash
    status: Mapped[str] = mapped_column(String(16), default=VersionStatus.DRAFT.value)
    author_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )  # who saved it; None: published from a folder (CLI, upload without a signed-in user)
    note: Mapped[str] = mapped_column(String(500), default="")  # e.g. "restored from v2"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    submitted_at: Mapped[datetime | None] = mapped_column(default=None)
    approved_at: Mapped[datetime | None] = mapped_column(default=None)
    # bumped by every review decision: the UPDATE that bumps it is the row lock that makes
    # two reviewers deciding at once take turns (on SQLite it takes the write lock)
    review_seq: Mapped[int] = mapped_column(default=0, server_default="0")


class IssueReview(Base):
    """One reviewer's decision on one version: an approval (naming the content hash it
    approved) or a request for changes with comments."""

    __tablename__ = "issue_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(
        ForeignKey("issue_versions.id", ondelete="CASCADE"), index=True
    )
    reviewer_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    reviewer_email: Mapped[str] = mapped_column(String(254), default="")  # kept if user goes
    verdict: Mapped[str] = mapped_column(String(24))  # vocabulary.ReviewVerdict
    content_hash: Mapped[str] = mapped_column(String(64))  # what exactly was reviewed
    comment: Mapped[str] = mapped_column(Text, default="")
    approval_key: Mapped[str | None] = mapped_column(String(48), unique=True, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
