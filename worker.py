"""The Celery app, for `celery -A worker worker` and `celery -A worker beat`.

The app itself lives in dispatch.tasks (tasks stay thin over dispatch.delivery); this file
is the conventional entry point the design card names. Settings come from DISPATCH_* env.
"""

from dispatch.tasks import app  # noqa: F401

celery = app
