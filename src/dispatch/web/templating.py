"""Jinja2 for the web pages: templates/web/** found through settings.templates_dir.

Every page gets `_` (the web catalog in the reader's locale), `locale`, the signed-in
`principal` and its `csrf_token`, so templates never compute access or language themselves.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from dispatch.config import Settings
from dispatch.i18n import LOCALES, normalise_locale
from dispatch.web.texts import TEXTS

LANG_COOKIE = "dispatch_lang"


def make_environment(settings: Settings) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(settings.templates_dir / "web")),
        autoescape=select_autoescape(["html", "xml", "svg"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["LOCALES"] = LOCALES
    env.filters["kind"] = lambda value: type(value).__name__
    return env


def request_locale(request: Request, fallback: str | None = None) -> str:
    """The reader's language: explicit cookie, then the user's setting, then Accept-Language."""
    chosen = normalise_locale(request.cookies.get(LANG_COOKIE))
    if chosen:
        return chosen
    principal = getattr(request.state, "principal", None)
    if principal is not None and normalise_locale(principal.locale):
        return normalise_locale(principal.locale) or "zh-CN"
    if fallback:
        return normalise_locale(fallback) or "zh-CN"
    accept = request.headers.get("accept-language", "")
    first = accept.split(",")[0].split(";")[0] if accept else ""
    return normalise_locale(first) or ("en" if first.lower().startswith("en") else "zh-CN")


def render_page(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    locale: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    env: Environment = request.app.state.jinja
    lang = locale or request_locale(request)
    principal = getattr(request.state, "principal", None)

    def _(key: str, **kwargs: object) -> str:
        return TEXTS.get(key, lang, **kwargs)

    def word(prefix: str, value: object) -> str:
        """A stored word (status, action, kind) in the reader's language, else as stored."""
        key = f"{prefix}{value}"
        return TEXTS.get(key, lang) if key in TEXTS.messages else str(value)

    ctx = {
        "request": request,
        "_": _,
        "st": lambda value: word("st_", value),
        "word": word,
        "locale": lang,
        "principal": principal,
        "csrf_token": principal.csrf if principal is not None else "",
        "path": request.url.path,
    }
    ctx.update(context or {})
    html = env.get_template(name).render(ctx)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def message_page(
    request: Request,
    title_key: str,
    message_key: str,
    *,
    status_code: int = 200,
    locale: str | None = None,
) -> HTMLResponse:
    """The public one-message page (a link that did not work, an action done)."""
    return render_page(
        request,
        "public/message.html",
        {"title_key": title_key, "message_key": message_key},
        status_code=status_code,
        locale=locale,
    )
