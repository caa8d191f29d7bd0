"""Which batch queue the web app hands to the delivery engine when it starts a campaign.

The Celery queue of dispatch.tasks in a deployment; tests put their own (e.g. ListQueue) on
`app.state.batch_queue`.
"""

from __future__ import annotations

from fastapi import Request


def batch_queue(request: Request):
    queue = getattr(request.app.state, "batch_queue", None)
    if queue is not None:
        return queue
    from dispatch.tasks import CeleryQueue

    queue = request.app.state.batch_queue = CeleryQueue()
    return queue
