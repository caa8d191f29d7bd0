"""Thin Celery tasks over dispatch.delivery (filled in by the delivery issue)."""

from __future__ import annotations

from celery import Celery

app = Celery("dispatch")
