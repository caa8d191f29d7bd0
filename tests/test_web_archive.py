"""The public archive: published issues, every article in full under its anchor, safe images."""

from __future__ import annotations

from sqlalchemy.orm import Session

from dispatch.content.parse import parse_issue
from dispatch.paths import SAMPLE_ISSUE_DIR
from test_web_support import seed

pytest_plugins = ["test_web_support"]


def test_archive_lists_and_shows_every_article_in_full(client, engine, settings):
    s = seed(engine, settings)
    doc = parse_issue(SAMPLE_ISSUE_DIR)
    index = client.get("/issues/")
    assert index.status_code == 200 and f"/issues/{s.issue_slug}" in index.text
    page = client.get(f"/issues/{s.issue_slug}")
    assert page.status_code == 200
    for n, article in enumerate(doc.articles, start=1):
        assert f'id="a{n}"' in page.text and article.anchor == f"a{n}"
        assert article.title in page.text
    last_paragraph = [b for b in doc.articles[-1].blocks if type(b).__name__ == "Paragraph"][-1]
    assert last_paragraph.inlines[0].text[:20] in page.text  # full text, not a lead


def test_archive_serves_only_the_issues_images(client, engine, settings):
    s = seed(engine, settings)
    doc = parse_issue(SAMPLE_ISSUE_DIR)
    image = doc.images()[0]
    r = client.get(f"/issues/{s.issue_slug}/{image.src}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
    assert r.content == image.path.read_bytes()
    for bad in (
        "images/../issue.md",
        "issue.md",
        "../../../etc/passwd",
        "images/%2e%2e/issue.md",
        "images/nope.png",
    ):
        assert client.get(f"/issues/{s.issue_slug}/{bad}").status_code == 404, bad
    assert client.get("/issues/no-such-issue").status_code == 404


def test_draft_issue_is_not_in_the_archive(client, engine, settings):
    s = seed(engine, settings)
    from dispatch.models.issue import Issue

    with Session(engine) as session, session.begin():
        session.get(Issue, s.issue_id).status = "draft"
    assert client.get(f"/issues/{s.issue_slug}").status_code == 404
    assert f"/issues/{s.issue_slug}" not in client.get("/issues/").text
