"""Models for the subscriber area (filled in by the issue that owns it)."""

from __future__ import annotations
