"""Models for the wechat area (filled in by the issue that owns it)."""

from __future__ import annotations
