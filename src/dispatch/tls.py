"""The one way dispatch builds a client TLS context (SMTP relays, bounce mailboxes).

Why one place: certificate checking is on unless a setting says otherwise, and that rule
must read the same for every connection dispatch opens.
"""

from __future__ import annotations

import ssl


def client_context(cafile: str | None = None, verify: bool = True) -> ssl.SSLContext:
    """A default client context; `verify=False` only where an explicit setting allows it."""
    ctx = ssl.create_default_context(cafile=cafile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx
