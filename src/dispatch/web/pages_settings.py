"""The branding settings page (administrators): name, logo, colours, footer text, postal
address, Reply-To and the email design, previewed on the newest issue before saving; and
the public route that serves the uploaded logo to mail clients.

Preview and save are two buttons of one form: "preview" renders the email with the values
as typed (nothing saved; an uploaded logo is kept by its hash and carried in the form), "save"
stores them with an audit row naming what changed.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from dispatch import branding
from dispatch.db import committing
from dispatch.models.issue import Issue
from dispatch.models.site import BrandAsset
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import AdminUser
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form(max_length=1000)]


def _preview_html(request: Request, brand: branding.Branding) -> str:
    from dispatch.web.api_issues import preview_email

    with request.app.state.session_factory() as session:
        issue = session.scalars(select(Issue).order_by(Issue.id.desc()).limit(1)).first()
    if issue is None:
        return ""
    return str(preview_email(request, issue, brand=brand)["html"])


def _page(
    request: Request, brand: branding.Branding, extra: dict[str, Any] | None = None, **kw: Any
) -> Response:
    context: dict[str, Any] = {
        "brand": brand,
        "designs": branding.DESIGNS,
        "preview_html": _preview_html(request, brand),
        "settings_reply_to": request.app.state.settings.reply_to,
        "settings_postal": request.app.state.settings.postal_address,
    }
    if request.query_params.get("msg") == "saved":
        context.update(flash=TEXTS.get("brand_saved", request_locale(request)), flash_kind="ok")
    context.update(extra or {})
    return render_page(request, "admin/settings.html", context, **kw)


@router.get("/admin/settings")
def settings_page(request: Request, principal: AdminUser) -> Response:
    with request.app.state.session_factory() as session:
        brand = branding.load(session)
    return _page(request, brand)


@router.post("/admin/settings")
async def settings_submit(
    request: Request,
    principal: AdminUser,
    name: Text = "",
    primary_colour: Text = "",
    accent_colour: Text = "",
    footer_text: Text = "",
    postal_address: Text = "",
    reply_to: Text = "",
    design: Text = "classic",
    logo: Text = "",
    logo_width: Annotated[int, Form(ge=0, le=200)] = 0,
    logo_remove: Text = "",
    action: Text = "preview",
    logo_file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    values = {
        "name": name,
        "primary_colour": primary_colour,
        "accent_colour": accent_colour,
        "footer_text": footer_text,
        "postal_address": postal_address,
        "reply_to": reply_to,
        "design": design,
        "logo": "" if logo_remove else logo,
        "logo_width": 0 if logo_remove else logo_width,
    }
    upload = await logo_file.read(branding.LOGO_MAX_BYTES + 1) if logo_file else b""
    try:
        with committing(request.app.state.session_factory()) as session:
            if upload:
                values["logo"], values["logo_width"] = branding.store_logo(session, upload)
            elif values["logo"]:  # kept from a preview: it must be a stored asset
                asset = session.get(BrandAsset, values["logo"])
                values["logo_width"] = min(asset.width, 200) if asset else 0
                values["logo"] = values["logo"] if asset else ""
            brand = branding.validate(values)
            if action == "save":
                branding.save(session, brand, request_actor(request, principal))
    except branding.BrandingError as exc:
        shown = branding.Branding(design=design if design in branding.DESIGNS else "classic")
        return _page(request, shown, {"flash": str(exc), "form": values}, status_code=422)
    if action == "save":
        return RedirectResponse("/admin/settings?msg=saved", status_code=303)
    flash = TEXTS.get("brand_previewing", request_locale(request))
    return _page(request, brand, {"flash": flash})


@router.get("/brand/logo/{sha256}")
def brand_logo(request: Request, sha256: str) -> Response:
    """The uploaded logo, as mail clients fetch it (public; named by its hash, so cached
    for good)."""
    if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise HTTPException(status_code=404, detail="no such logo")
    with request.app.state.session_factory() as session:
        asset = session.get(BrandAsset, sha256)
        if asset is None:
            raise HTTPException(status_code=404, detail="no such logo")
        return Response(
            asset.data,
            media_type=asset.content_type,
            headers={"Cache-Control": "public, max-age=31536000, immutable"},
        )
