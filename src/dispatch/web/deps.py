"""Request-scoped dependencies: settings and a database session that commits or rolls back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from pydantic import Field
from sqlalchemy.orm import Session

from dispatch.db import committing


def get_db(request: Request) -> Iterator[Session]:
    """One session per request: committed when the route returns, rolled back on any error."""
    with committing(request.app.state.session_factory()) as session:
        yield session


# scope="function": commit when the route returns, before the response goes out, so a client
# that follows a redirect (or reads back what it just created) always sees the change
DbSession = Annotated[Session, Depends(get_db, scope="function")]
# database ids in paths: bounded so a huge number is a 422, never an integer overflow in SQL
RowId = Annotated[int, Path(ge=1, le=2**31 - 1)]
# the same bound for ids inside request bodies and forms
BodyId = Annotated[int, Field(ge=1, le=2**31 - 1)]
