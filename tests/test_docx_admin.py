"""Word import in the admin (issue 19 item 1): the upload beside the issue-folder upload
publishes the issue and shows the report; a refused document stores nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.dev import docx_builder
from dispatch.models.audit import AuditEntry
from dispatch.models.issue import Issue
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.web.templating import LANG_COOKIE
from test_web_support import login, make_user

pytest_plugins = ["test_web_support"]
pytest.importorskip("docx")


def issue_count(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count(Issue.id))) or 0


def stored_folders(settings) -> list[str]:
    root = settings.data_dir / "issues"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def test_word_upload_publishes_and_reports_each_guess(client, engine, settings, tmp_path):
    make_user(engine, "editor")
    csrf = login(client, "editor@example.org")
    page = client.get("/admin/issues")
    assert 'action="/admin/issues/import"' in page.text and 'id="docx-import"' in page.text
    data = docx_builder.build_issue_docx(SAMPLE_ISSUE_DIR, tmp_path / "s.docx").read_bytes()
    response = client.post(
        "/admin/issues/import",
        data={"csrf_token": csrf, "number": "2"},
        files={"file": ("工作简报2023-02.docx", data, "application/octet-stream")},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/admin/issues/imported/")
    report = client.get(response.headers["location"], headers={"accept-language": "en"})
    assert report.status_code == 200
    assert "Imported from Word and published" in report.text
    assert "¶4" in report.text and "table of contents (15 lines)" in report.text
    assert "a one-cell table taken as a 专栏" in report.text
    with Session(engine) as session:
        issue = session.scalars(select(Issue)).one()
        assert (issue.slug, issue.number, issue.summary["article_count"]) == ("2023-02", 2, 11)
    assert f'href="/admin/issues/{issue.id}"' in report.text
    with Session(engine) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "import")).one()
        assert (entry.actor, entry.target_kind, entry.target_id) == (
            "editor@example.org",
            "issue",
            "2023-02",
        )
        assert entry.after["file"] == "工作简报2023-02.docx" and entry.after["articles"] == 11
    preview = client.get(f"/admin/issues/{issue.id}")
    assert preview.status_code == 200 and "中共中央 国务院印发《质量强国建设纲要》" in preview.text
    client.cookies.set(LANG_COOKIE, "zh-CN")
    zh = client.get(response.headers["location"])
    assert "手写目录（15 行）未保留" in zh.text and "hand-typed" not in zh.text


def test_a_refused_word_upload_stores_nothing_and_says_why(client, engine, settings):
    make_user(engine, "editor")
    csrf = login(client, "editor@example.org")
    response = client.post(
        "/admin/issues/import",
        data={"csrf_token": csrf},
        files={"file": ("bulletin.docx", b"not a zip at all", "application/octet-stream")},
        headers={"accept-language": "en"},
    )
    assert response.status_code == 422
    assert "bulletin.docx: not a Word document" in response.text
    assert issue_count(engine) == 0 and stored_folders(settings) == []


def test_a_word_upload_that_would_not_publish_leaves_no_folder(client, engine, settings, tmp_path):
    """No period, no publisher, no source address: imported, but the source would not
    publish; the page lists the problems and the report, and nothing is kept."""
    d = docx_builder.new_document()
    d.add_heading("质量要闻", level=1)
    d.add_heading("一篇没有来源的文章", level=2)
    d.add_paragraph("正文。")
    d.save(str(tmp_path / "thin.docx"))
    make_user(engine, "editor")
    csrf = login(client, "editor@example.org")
    response = client.post(
        "/admin/issues/import",
        data={"csrf_token": csrf},
        files={"file": ("thin.docx", (tmp_path / "thin.docx").read_bytes(), "application/x")},
        headers={"accept-language": "en"},
    )
    assert response.status_code == 422
    assert "missing front-matter key" in response.text and "Nothing was stored." in response.text
    assert "the document names no publisher" in response.text
    assert issue_count(engine) == 0 and stored_folders(settings) == []


def test_the_report_page_only_serves_stored_reports(client, engine, settings):
    make_user(engine, "editor")
    login(client, "editor@example.org")
    assert client.get("/admin/issues/imported/..%2F..%2Fetc").status_code == 404
    assert client.get("/admin/issues/imported/0123456789abcdef").status_code == 404


def test_the_api_imports_a_word_document_and_refuses_a_bad_one(client, engine, settings, tmp_path):
    from test_web_support import bearer

    token = make_user(engine, "editor")
    data = docx_builder.build_issue_docx(SAMPLE_ISSUE_DIR, tmp_path / "s.docx").read_bytes()
    response = client.post(
        "/api/issues/import",
        headers=bearer(token),
        data={"slug": "2023-02-word"},
        files={"file": ("s.docx", data, "application/octet-stream")},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["slug"], body["article_count"]) == ("2023-02-word", 11)
    codes = [e["code"] for e in body["report"]["not_kept"]]
    assert "toc_dropped" in codes and body["report"]["kept"]["articles"] == 11
    refused = client.post(
        "/api/issues/import",
        headers=bearer(token),
        files={"file": ("x.docx", b"PK\x03\x04 broken", "application/octet-stream")},
    )
    assert refused.status_code == 422 and "x.docx" in refused.json()["detail"]
    assert issue_count(engine) == 1
    anonymous = client.post("/api/issues/import", files={"file": ("s.docx", data, "x")})
    assert anonymous.status_code == 401
