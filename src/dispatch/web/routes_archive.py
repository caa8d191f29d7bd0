"""The public archive: the list of published issues and each issue's full web version.

The email's "阅读全文 / Read more" links land on /issues/{slug}#aN, so every article is
rendered in full here under its anchor. Images are served at /issues/{slug}/{src} (e.g.
/issues/2023-02/images/photo-1.png, the same URL the email uses) only if the issue names them.
"""

from __future__ import annotations

import mimetypes

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy import select

from dispatch.models.issue import Issue
from dispatch.vocabulary import IssueStatus
from dispatch.web.issuedocs import image_files, issue_doc
from dispatch.web.templating import render_page

router = APIRouter(include_in_schema=False)


def _published(request: Request, slug: str) -> Issue:
    with request.app.state.session_factory() as session:
        issue = session.scalar(
            select(Issue).where(Issue.slug == slug, Issue.status == IssueStatus.PUBLISHED)
        )
    if issue is None:
        raise HTTPException(status_code=404, detail="no such issue")
    return issue


@router.get("/issues/")
def archive_index(request: Request) -> Response:
    with request.app.state.session_factory() as session:
        issues = list(
            session.scalars(
                select(Issue)
                .where(Issue.status == IssueStatus.PUBLISHED)
                .order_by(Issue.period_from.desc(), Issue.id.desc())
            )
        )
    return render_page(request, "public/archive_index.html", {"issues": issues})


@router.get("/issues")
def archive_index_no_slash(request: Request) -> Response:
    return archive_index(request)


@router.get("/issues/{slug}")
def archive_issue(slug: str, request: Request) -> Response:
    issue = _published(request, slug)
    doc = issue_doc(issue)
    base = f"/issues/{issue.slug}/"

    def image_src(src: str) -> str:
        return base + src

    return render_page(
        request,
        "public/archive_issue.html",
        {"issue": issue, "doc": doc, "image_src": image_src},
        locale=doc.meta.locale,
    )


@router.get("/issues/{slug}/{name:path}")
def archive_image(slug: str, name: str, request: Request) -> Response:
    issue = _published(request, slug)
    path = image_files(issue_doc(issue)).get(name)
    if path is None:
        raise HTTPException(status_code=404, detail="no such image")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(
        path, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"}
    )
