"""Storing issues on SQLite and PostgreSQL: upsert by slug, re-load, nothing stored when invalid."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dispatch.cli import main
from dispatch.content.parse import IssueSourceError, parse_issue
from dispatch.content.store import (
    get_issue,
    list_issues,
    load_issue_doc,
    publish_issue,
    publish_source,
)
from dispatch.models.issue import Issue
from dispatch.paths import SAMPLE_ISSUE_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "issues"
INVALID_FOLDERS = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name != "valid")


def _count(session) -> int:
    return session.scalar(select(func.count()).select_from(Issue))


def test_publish_sample_and_load_it_back(session):
    doc = parse_issue(SAMPLE_ISSUE_DIR)
    issue = publish_issue(session, doc)
    session.commit()
    assert issue.id and issue.status == "published" and issue.published_at is not None
    assert issue.slug == "2023-02" and issue.content_hash == doc.content_hash
    assert issue.summary["article_count"] == 11
    assert [s["title"] for s in issue.summary["sections"]] == [s.title for s in doc.sections]

    session.expire_all()
    stored = get_issue(session, "2023-02")
    assert stored is not None and get_issue(session, stored.id) is stored
    again = load_issue_doc(stored)
    assert again.content_hash == doc.content_hash
    assert [a.title for a in again.articles] == [a.title for a in doc.articles]
    assert again.links == doc.links


def test_publish_is_an_upsert_by_slug(session, tmp_path):
    copy = tmp_path / "issue"
    shutil.copytree(FIXTURES / "valid", copy)
    first = publish_source(session, copy)
    session.commit()
    source = copy / "issue.md"
    source.write_text(
        source.read_text(encoding="utf-8").replace("第二篇文章", "改过的标题"), encoding="utf-8"
    )
    second = publish_source(session, copy)
    session.commit()
    assert second.id == first.id
    assert _count(session) == 1
    assert "改过的标题" in second.source_text
    assert [i.slug for i in list_issues(session)] == ["2023-02"]


@pytest.mark.parametrize("folder", INVALID_FOLDERS)
def test_invalid_source_stores_nothing(session, folder):
    with pytest.raises(IssueSourceError) as info:
        publish_source(session, FIXTURES / folder)
    session.commit()
    assert info.value.problems and all(p.line > 0 for p in info.value.problems)
    assert _count(session) == 0


def test_cli_publish_and_list(settings, session):
    runner = CliRunner()
    bad = runner.invoke(main, ["issues", "publish", str(FIXTURES / "image_missing_file")])
    assert bad.exit_code != 0
    assert "image_missing_file/issue.md:23: image file not found" in bad.output
    assert _count(session) == 0

    ok = runner.invoke(main, ["issues", "publish", str(FIXTURES / "valid"), "--json"])
    assert ok.exit_code == 0, ok.output
    listed = runner.invoke(main, ["issues", "list"])
    assert listed.exit_code == 0 and "2023-02" in listed.output and "published" in listed.output
    assert _count(session) == 1
