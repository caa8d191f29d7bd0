"""The delivery engine: campaigns, fan-out, claiming, retry and rate limits.

Plain Python over the database (no Celery in here): dispatch.tasks wires these functions to
the queue, and tests drive them directly. See docs/architecture.md for the seams.
"""
