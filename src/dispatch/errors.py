"""The service's refusals: every domain error is a DispatchError with a message and a kind.

Why a kind: callers (the web's one status table in dispatch.web.errors, the CLI) decide what
to do from what kind of problem it is (not found, conflict, invalid, forbidden, unavailable),
never from the exception's class name or its message text. The message stays the clear,
bilingual one the raising area writes. DispatchError is a ValueError, as these were before.
"""

from __future__ import annotations

from dispatch.vocabulary import ErrorKind

__all__ = ["DispatchError", "ErrorKind"]


class DispatchError(ValueError):
    """A request the service refuses; `kind` says what kind of problem it is."""

    kind: ErrorKind = ErrorKind.INVALID  # a subclass sets its usual kind; a raise may override

    def __init__(self, *args: object, kind: ErrorKind | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind
