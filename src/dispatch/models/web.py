"""Models for the web area (filled in by the issue that owns it)."""

from __future__ import annotations
