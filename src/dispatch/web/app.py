"""The HTTP application (FastAPI on uvicorn): public tracking, unsubscribe and archive pages,
the admin REST API under /api/ (OpenAPI at /openapi.json), the admin pages under /admin/ and
the WeChat callback. `create_app(settings)` builds one; `dispatch web` serves it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from dispatch import __version__
from dispatch.config import Settings, get_settings
from dispatch.db import get_engine, session_factory
from dispatch.web import (
    api_audit,
    api_campaigns,
    api_docs,
    api_docx,
    api_editorial,
    api_issues,
    api_lists,
    api_reports,
    api_subscribers,
    api_suppressions,
    pages,
    pages_audit,
    pages_auth,
    pages_bounces,
    pages_deliverability,
    pages_docx,
    pages_editorial,
    pages_reports,
    pages_schedule,
    pages_settings,
    pages_subscribers,
    pages_users,
    routes_archive,
    routes_preferences,
    routes_subscribe,
    routes_unsubscribe,
    routes_webhooks,
    routes_wechat,
)
from dispatch.web.auth import optional_principal
from dispatch.web.errors import install_error_handlers
from dispatch.web.hits import HitRecorder
from dispatch.web.linktable import LinkTableCache
from dispatch.web.request_guard import RequestGuard
from dispatch.web.routes_subscribe import SignupRunner, SubscribeShortcut
from dispatch.web.routes_tracking import TrackingApp, TrackingShortcut
from dispatch.web.security_headers import SecurityHeaders
from dispatch.web.templating import make_environment, render_page

PUBLIC_PATH_PREFIXES = (
    "/t/",
    "/u/",
    "/confirm/",
    "/subscribe",
    "/p/",
    "/issues",
    "/wechat/",
    "/admin/login",
    "/healthz",
    "/webhooks/",  # provider webhooks: authenticated by their signatures, not by a login
    "/openapi.json",
    "/api/docs",
    "/lang/",
    "/static/",
    "/brand/",  # the uploaded logo, fetched by mail clients
)
STATIC_DIR = Path(__file__).parent / "static"


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith("/admin") or (
        not request.url.path.startswith("/api/")
        and "text/html" in request.headers.get("accept", "")
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application for these settings (the engine is shared per database URL)."""
    settings = settings or get_settings()
    engine = get_engine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.hits.close()
        app.state.signup_runner.close()

    app = FastAPI(
        lifespan=lifespan,
        title="dispatch",
        version=__version__,
        description="Admin API of the dispatch newsletter service / 简报投递管理接口",
        openapi_url="/openapi.json",
        docs_url=None,  # served by web.api_docs from the package (no CDN, no inline script)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory(engine)
    app.state.jinja = make_environment(settings)
    app.state.link_tables = LinkTableCache()
    app.state.hits = HitRecorder(engine)
    app.state.signup_runner = SignupRunner(
        sqlite=engine.dialect.name == "sqlite", smtp=bool(settings.smtp_url)
    )
    _install_middleware(app, settings)
    _install_routes(app)
    install_error_handlers(app)
    _install_http_error_pages(app)
    return app


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Tracking and subscribe shortcuts, request guard and security headers (the last added
    is outermost)."""
    # the subscription form's url-encoded post bypasses the framework (see routes_subscribe),
    # and so, looked at first, does the tracking hot path (see routes_tracking)
    app.add_middleware(SubscribeShortcut)
    app.add_middleware(
        TrackingShortcut, tracking=TrackingApp(settings, app.state.hits, app.state.link_tables)
    )
    # body caps and authentication before any body is read; then, outermost, the security
    # headers on every response (the tracking shortcut's and the guard's refusals too)
    app.add_middleware(RequestGuard, settings=settings)
    app.add_middleware(SecurityHeaders, settings=settings)


def _install_routes(app: FastAPI) -> None:
    """Static files, the API docs, every router, the health check and the root redirect."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    api_docs.install(app)
    for module in (
        routes_subscribe,
        routes_preferences,
        routes_unsubscribe,
        routes_archive,
        routes_wechat,
        api_lists,
        api_subscribers,
        api_docx,
        api_issues,
        api_editorial,
        api_campaigns,
        api_reports,
        api_suppressions,
        api_audit,
        pages_auth,
        pages_subscribers,
        pages,
        pages_editorial,
        pages_schedule,
        pages_deliverability,
        pages_reports,
        pages_bounces,
        pages_audit,
        pages_users,
        pages_settings,
        pages_docx,
        routes_webhooks,
    ):
        app.include_router(module.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/issues/", status_code=302)


def _install_http_error_pages(app: FastAPI) -> None:
    """HTTP errors as a page for a browser (the login page for /admin's 401), JSON for the
    API; validation errors as JSON without the raw input."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_html(request):
            if exc.status_code == 401 and request.url.path.startswith("/admin"):
                return pages_auth.login_page(request, status_code=401, message_key="login_required")
            key = {403: "forbidden", 404: "not_found"}.get(exc.status_code, "error_title")
            if exc.status_code == 403 and "CSRF" in str(exc.detail):
                key = "csrf_failed"
            if request.url.path.startswith("/admin") and exc.status_code == 404:
                # no route matched, so no guard ran: find the signed-in user ourselves, so the
                # page keeps the admin navigation instead of stranding them
                await run_in_threadpool(optional_principal, request)
            return render_page(
                request,
                "error.html",
                {"message_key": key, "status": exc.status_code},
                status_code=exc.status_code,
                headers=getattr(exc, "headers", None),
            )
        return JSONResponse(
            {"detail": exc.detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": _jsonable_errors(exc.errors())}, status_code=422)


def _jsonable_errors(errors: object) -> object:
    """Validation errors without the raw input objects (which may be bytes or files)."""
    out = []
    for err in errors if isinstance(errors, list | tuple) else []:
        item = {k: v for k, v in dict(err).items() if k in ("loc", "msg", "type")}
        item["loc"] = [str(part) for part in item.get("loc", ())]
        out.append(item)
    return out


__all__ = ["create_app", "HTTPException", "PUBLIC_PATH_PREFIXES"]
