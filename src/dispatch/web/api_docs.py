"""The browsable API documentation at /api/docs, served from the package, not a CDN.

Why not FastAPI's default page: it loads Swagger UI from a CDN (unreachable for users in
China, and against the project's rule) and starts it with an inline script, which the
pages' Content-Security-Policy forbids. Here Swagger UI comes from the swagger-ui-bundle
package under /api/docs/assets/ and is started by /static/swagger-init.js.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dispatch API / 简报投递接口</title>
<link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
</head><body><div id="swagger-ui"></div>
<script src="/api/docs/assets/swagger-ui-bundle.js"></script>
<script src="/static/swagger-init.js" data-openapi-url="/openapi.json"></script>
</body></html>
"""


@router.get("/api/docs")
def api_docs() -> HTMLResponse:
    return HTMLResponse(PAGE)


def install(app: FastAPI) -> None:
    """The docs page and its assets (call with FastAPI(docs_url=None))."""
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/api/docs/assets", StaticFiles(directory=swagger_ui_path), name="swagger-ui")
    app.include_router(router)
