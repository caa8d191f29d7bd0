"""The institution's branding, set by an administrator on the web settings page: its name,
logo, colours, footer text, postal address, reply-to address and the email design.

Why in the database (site_settings, one JSON object read into a typed, frozen `Branding`):
the people who choose them are not the ones who deploy the service, and every web process
and worker must render the same email. Nothing here is a secret. A value left empty falls
back to the deployment's setting (postal_address, reply_to) or the issue's own publisher.
A `Branding` is hashable: the email renderer keys its cache on it, so a changed colour or
logo renders anew instead of serving the email cached for the old branding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.config import Settings
from dispatch.errors import DispatchError
from dispatch.i18n import Catalog
from dispatch.models.base import utcnow
from dispatch.models.site import BrandAsset, SiteSetting
from dispatch.vocabulary import AuditAction, AuditTarget

__all__ = ["Branding", "BrandingError", "DESIGNS", "load", "save", "store_logo", "validate"]

KEY = "branding"
DESIGNS = ("classic", "letter")  # templates/email/issue.html, templates/email/issue_letter.html
DEFAULT_PRIMARY, DEFAULT_ACCENT = "#123a6b", "#d9a441"  # the classic design's own colours
LOGO_MAX_BYTES = 300_000
LOGO_MAX_SIDE = 2000
LOGO_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif"}
COLOUR_RE = re.compile(r"^#[0-9a-fA-F]{6}$")
LIMITS = {"name": 100, "footer_text": 500, "postal_address": 300}

MESSAGES = Catalog(
    {
        "too_long": ("{field}：最多 {n} 个字符", "{field}: at most {n} characters"),
        "bad_colour": (
            "{field}：应为 #RRGGBB 形式的颜色，实际为 {value!r}",
            "{field}: a colour like #1a4d8f, got {value!r}",
        ),
        "bad_design": ("design：应为 {designs} 之一", "design: one of {designs}"),
        "bad_reply_to": ("reply_to：不是有效的邮箱地址", "reply_to: not a valid email address"),
        "logo_big": (
            "logo：文件有 {size} 字节，上限 {limit} 字节",
            "logo: the file has {size} bytes, the limit is {limit}",
        ),
        "logo_type": (
            "logo：只接受 PNG、JPEG 或 GIF 图片（{found}）",
            "logo: only PNG, JPEG or GIF images ({found})",
        ),
        "logo_side": (
            "logo：图片最大 {limit}×{limit} 像素，实际 {w}×{h}",
            "logo: at most {limit}×{limit} pixels, got {w}×{h}",
        ),
    }
)


class BrandingError(DispatchError):
    """A branding value that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Branding:
    name: str = ""  # the institution's name; empty: the publisher
    logo: str = ""  # sha256 of the uploaded logo (brand_assets), empty: none
    logo_width: int = 0  # as shown in the email (at most 200 px wide)
    primary_colour: str = DEFAULT_PRIMARY  # masthead, headings, buttons
    accent_colour: str = DEFAULT_ACCENT  # rules, section markers
    footer_text: str = ""  # a line of the institution's own under every email
    postal_address: str = ""  # empty: the postal_address setting
    reply_to: str = ""  # empty: the reply_to setting
    design: str = "classic"  # one of DESIGNS

    def reply_to_for(self, settings: Settings) -> str:
        return self.reply_to or settings.reply_to

    def postal_address_for(self, settings: Settings) -> str:
        return self.postal_address or settings.postal_address

    def logo_url(self, settings: Settings) -> str:
        if not self.logo:
            return ""
        return f"{settings.public_base_url.rstrip('/')}/brand/logo/{self.logo}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _text(values: dict[str, Any], field: str) -> str:
    value = (
        " ".join(str(values.get(field) or "").split())
        if field != "footer_text"
        else (str(values.get(field) or "").strip().replace("\r\n", "\n"))
    )
    limit = LIMITS.get(field)
    if limit and len(value) > limit:
        raise BrandingError(MESSAGES.both("too_long", field=field, n=limit))
    return value


def _colour(values: dict[str, Any], field: str, default: str) -> str:
    value = str(values.get(field) or default).strip()
    if not COLOUR_RE.match(value):
        raise BrandingError(MESSAGES.both("bad_colour", field=field, value=value[:20]))
    return value.lower()


def validate(values: dict[str, Any], current: Branding | None = None) -> Branding:
    """A Branding from form or JSON values; the first bad field raises BrandingError."""
    current = current or Branding()
    design = str(values.get("design") or current.design)
    if design not in DESIGNS:
        raise BrandingError(MESSAGES.both("bad_design", designs=", ".join(DESIGNS)))
    reply_to = str(values.get("reply_to") or "").strip()
    if reply_to:
        from email_validator import EmailNotValidError, validate_email

        try:
            reply_to = validate_email(reply_to, check_deliverability=False).normalized
        except EmailNotValidError:
            raise BrandingError(MESSAGES.both("bad_reply_to")) from None
    return Branding(
        name=_text(values, "name"),
        logo=str(values.get("logo", current.logo) or ""),
        logo_width=int(values.get("logo_width", current.logo_width) or 0),
        primary_colour=_colour(values, "primary_colour", DEFAULT_PRIMARY),
        accent_colour=_colour(values, "accent_colour", DEFAULT_ACCENT),
        footer_text=_text(values, "footer_text"),
        postal_address=_text(values, "postal_address"),
        reply_to=reply_to,
        design=design,
    )


def load(session: Session) -> Branding:
    """The stored branding (defaults when none was saved, or a stored field is unknown)."""
    row = session.get(SiteSetting, KEY)
    if row is None:
        return Branding()
    known = {f.name for f in dataclasses.fields(Branding)}
    try:
        return Branding(**{k: v for k, v in (row.value or {}).items() if k in known})
    except TypeError:
        return Branding()


def save(session: Session, brand: Branding, actor: audit.Actor) -> None:
    """Store the branding and its audit row (what changed, before and after)."""
    before = load(session).as_dict()
    row = session.get(SiteSetting, KEY)
    if row is None:
        row = SiteSetting(key=KEY, value={})
        session.add(row)
    row.value, row.updated_at, row.updated_by = brand.as_dict(), utcnow(), actor.name
    old, new = audit.changes(before, brand.as_dict())
    if old or new:
        audit.record(
            session,
            actor,
            AuditAction.CHANGE_SETTING,
            AuditTarget.SETTING,
            KEY,
            before=old,
            after=new,
        )


def store_logo(session: Session, data: bytes) -> tuple[str, int]:
    """Check an uploaded logo (size, real type, dimensions) and store it once by its hash;
    returns (sha256, the width to show it at). SVG is refused: it can carry script."""
    if len(data) > LOGO_MAX_BYTES:
        raise BrandingError(MESSAGES.both("logo_big", size=len(data), limit=LOGO_MAX_BYTES))
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format or "?", image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise BrandingError(MESSAGES.both("logo_type", found="?")) from None
    if kind not in LOGO_TYPES:
        raise BrandingError(MESSAGES.both("logo_type", found=kind))
    if max(width, height) > LOGO_MAX_SIDE:
        raise BrandingError(MESSAGES.both("logo_side", limit=LOGO_MAX_SIDE, w=width, h=height))
    digest = hashlib.sha256(data).hexdigest()
    if session.get(BrandAsset, digest) is None:
        session.add(
            BrandAsset(
                sha256=digest, content_type=LOGO_TYPES[kind], width=width, height=height, data=data
            )
        )
    return digest, min(width, 200)


def css(brand: Branding) -> str:
    """Rules appended to the design's stylesheet for the chosen colours (none by default,
    so the default branding renders exactly the design as shipped)."""
    rules = []
    p, a = brand.primary_colour, brand.accent_colour
    if p != DEFAULT_PRIMARY:
        rules += [
            f".masthead {{ background-color: {p}; }}",
            f".section-title, .toc-heading, .toc-num, .h3 {{ color: {p}; }}",
            f".button-cell {{ background-color: {p}; }}",
            f".button-secondary-cell {{ border-color: {p}; }}",
            f".button-secondary, .letter-name {{ color: {p}; }}",
            f".letter-head {{ border-top-color: {p}; }}",
        ]
    if a != DEFAULT_ACCENT:
        rules += [
            f".masthead-rule {{ border-top-color: {a}; }}",
            f".section-title, .sidebar {{ border-left-color: {a}; }}",
            f".letter-rule {{ border-top-color: {a}; }}",
        ]
    return "\n".join(rules)
