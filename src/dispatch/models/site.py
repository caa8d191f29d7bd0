"""Settings an administrator changes from the web (branding), and the uploaded logo.

Why a table and not the TOML file: the people who choose the bulletin's colours and footer
are not the ones who deploy it, and every web process and worker must see the same values at
once. Only what is not a secret lives here; passwords and keys stay in the environment.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models.base import Base, utcnow

__all__ = ["SiteSetting", "BrandAsset"]


class SiteSetting(Base):
    """One group of settings (e.g. "branding") as a JSON object, read into a typed class."""

    __tablename__ = "site_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(254), default="")


class BrandAsset(Base):
    """An uploaded image (the logo), named by its SHA-256 so a URL never changes meaning."""

    __tablename__ = "brand_assets"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(32))
    width: Mapped[int]
    height: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
