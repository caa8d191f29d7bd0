"""Admin API: issues (upload or publish a source) and previews of each channel (editor)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from dispatch import branding
from dispatch.content.store import list_issues
from dispatch.models.issue import Issue
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import EditorUser, Principal, require_editor
from dispatch.web.deps import DbSession, RowId
from dispatch.web.issue_upload import (
    allowed_source_dir,
    publish_folder,
    publish_upload,
    store_upload,
)
from dispatch.web.issuedocs import issue_doc

router = APIRouter(prefix="/api/issues", tags=["issues"], dependencies=[Depends(require_editor)])

PREVIEW_CSP = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox"


class PublishPath(BaseModel):
    path: str = Field(
        min_length=1,
        max_length=500,
        description="folder of issue.md, under examples/ or the data dir",
    )


def issue_out(issue: Issue) -> dict[str, Any]:
    return {
        "id": issue.id,
        "slug": issue.slug,
        "title": issue.title,
        "number": issue.number,
        "period_from": issue.period_from,
        "period_to": issue.period_to,
        "publisher": issue.publisher,
        "locale": issue.locale,
        "status": issue.status,
        "content_hash": issue.content_hash,
        "published_at": issue.published_at,
        "article_count": (issue.summary or {}).get("article_count", 0),
        "summary": issue.summary,
    }


def get_issue_or_404(session: Session, issue_id: RowId) -> Issue:
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise HTTPException(status_code=404, detail=f"issue {issue_id} not found")
    return issue


def preview_email(
    request: Request,
    issue: Issue,
    principal: Principal | None = None,
    brand: branding.Branding | None = None,
) -> dict[str, Any]:
    """The issue's email as a recipient without tracking would get it (rendered once, cached),
    in the stored branding or, for the settings page's preview, in `brand` before it is saved."""
    from dispatch.render.email import render_email
    from dispatch.render.slots import RecipientSlots

    settings = request.app.state.settings
    if brand is None:
        with request.app.state.session_factory() as session:
            brand = branding.load(session)
    settings = settings.replace(postal_address=brand.postal_address_for(settings))
    rendered = render_email(issue_doc(issue), settings, tracking=False, branding=brand)
    unsubscribe = settings.public_base_url.rstrip("/") + "/u/preview"
    html, text = rendered.personalize(RecipientSlots(name="", unsubscribe_url=unsubscribe))
    return {
        "subject": rendered.subject,
        "preheader": rendered.preheader,
        "html": html,
        "text": text,
        "html_bytes": len(html.encode()),
        "shortened": list(rendered.shortened),
        "links": list(rendered.links),
    }


def preview_wechat(request: Request, issue: Issue) -> list[dict[str, Any]]:
    """The WeChat articles of the issue (≤ 8 per message; the renderer splits)."""
    try:
        from dispatch.render.wechat import render_wechat
    except ImportError:
        raise HTTPException(
            status_code=503, detail="the WeChat renderer is not available"
        ) from None
    from html import escape

    from dispatch.web.routes_archive import image_files

    doc = issue_doc(issue)
    articles = render_wechat(doc, request.app.state.settings)
    # the renderer's img src is the image's path on this server's disk (publishing uploads it
    # from there); a browser gets it from the issue's published files instead, never the disk
    served = {str(path): f"/issues/{issue.slug}/{name}" for name, path in image_files(doc).items()}
    out = []
    for article in articles:
        data = article.to_json()
        for disk, url in served.items():
            data["content"] = data["content"].replace(f'src="{escape(disk)}"', f'src="{url}"')
        data["thumb_url"] = served.get(str(article.thumb_image))
        data.pop("images", None)  # disk paths stay on the server
        data["thumb_image"] = data["thumb_url"]
        out.append(data)
    return out


@router.get("", summary="Every stored issue, newest first")
def issues_index(session: DbSession) -> list[dict]:
    return [issue_out(i) for i in list_issues(session)]


@router.post("", status_code=201, summary="Upload issue.md and its images, then publish")
async def issues_upload(
    request: Request,
    principal: EditorUser,
    files: Annotated[list[UploadFile], File()],
    session: DbSession,
) -> dict:
    payload = [(f.filename or "", await f.read()) for f in files]
    settings = request.app.state.settings
    folder = store_upload(settings, payload)
    actor = request_actor(request, principal)
    return issue_out(publish_upload(session, folder, settings, actor))


@router.post("/publish", status_code=201, summary="Publish a source folder on the server")
def issues_publish_path(
    body: PublishPath, request: Request, principal: EditorUser, session: DbSession
) -> dict:
    settings = request.app.state.settings
    folder = allowed_source_dir(settings, body.path)
    return issue_out(publish_folder(session, folder, settings, request_actor(request, principal)))


@router.get("/{issue_id}", summary="One issue")
def issues_show(issue_id: RowId, session: DbSession) -> dict:
    return issue_out(get_issue_or_404(session, issue_id))


@router.get("/{issue_id}/preview/email", summary="Email preview: subject, HTML, text and size")
def issues_preview_email(issue_id: RowId, request: Request, session: DbSession) -> dict:
    return preview_email(request, get_issue_or_404(session, issue_id))


@router.get(
    "/{issue_id}/preview/email.html", response_class=HTMLResponse, summary="Email preview as HTML"
)
def issues_preview_email_html(
    issue_id: RowId, request: Request, session: DbSession
) -> HTMLResponse:
    preview = preview_email(request, get_issue_or_404(session, issue_id))
    return HTMLResponse(preview["html"], headers={"Content-Security-Policy": PREVIEW_CSP})


@router.get(
    "/{issue_id}/preview/email.txt",
    response_class=PlainTextResponse,
    summary="Email preview as text",
)
def issues_preview_email_text(
    issue_id: RowId, request: Request, session: DbSession
) -> PlainTextResponse:
    return PlainTextResponse(preview_email(request, get_issue_or_404(session, issue_id))["text"])


@router.get("/{issue_id}/preview/wechat", summary="WeChat articles preview (JSON)")
def issues_preview_wechat(issue_id: RowId, request: Request, session: DbSession) -> list[dict]:
    return preview_wechat(request, get_issue_or_404(session, issue_id))
