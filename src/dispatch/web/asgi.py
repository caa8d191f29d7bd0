"""The ASGI app built from the process's settings: for `uvicorn dispatch.web.asgi:app` and
`dispatch web --workers N` (each worker process imports this and builds its own app)."""

import os

from dispatch.log import configure_logging
from dispatch.web.app import create_app

configure_logging(os.environ.get("DISPATCH_LOG_LEVEL", "INFO"))
app = create_app()
