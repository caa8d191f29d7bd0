"""The ASGI app built from the process's settings: for `uvicorn dispatch.web.asgi:app` and
`dispatch web --workers N` (each worker process imports this and builds its own app)."""

from dispatch.web.app import create_app

app = create_app()
