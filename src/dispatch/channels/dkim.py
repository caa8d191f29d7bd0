"""Optional DKIM signing (dkimpy) of the finished message bytes.

Why an explicit header list: dkimpy's default list of signed headers leaves out
List-Unsubscribe-Post, and RFC 8058 asks that both List-Unsubscribe and List-Unsubscribe-Post
be covered by the signature (otherwise a forwarder could add a one-click POST target).
From and List-Unsubscribe* are over-signed (listed once more than they occur) so a header of
that name cannot be added later without breaking the signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dkim

from dispatch.config import Settings
from dispatch.errors import DispatchError

SIGNED_HEADERS: tuple[bytes, ...] = (
    b"From",
    b"To",
    b"Subject",
    b"Date",
    b"Message-ID",
    b"Reply-To",
    b"MIME-Version",
    b"Content-Type",
    b"List-Id",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)
OVERSIGNED_HEADERS: tuple[bytes, ...] = (
    b"From",
    b"Subject",
    b"List-Unsubscribe",
    b"List-Unsubscribe-Post",
)


class DkimConfigError(DispatchError):
    """DKIM is half-configured or its key cannot be read; the message names the setting."""


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    private_key: bytes  # PEM; never logged

    def __repr__(self) -> str:  # keep the key out of tracebacks and logs
        return f"DkimSigner(selector={self.selector!r}, domain={self.domain!r})"

    def signature_header(self, message: bytes) -> bytes:
        """The `DKIM-Signature: …` header (CRLF-terminated) for these message bytes."""
        signer = dkim.DKIM(message, linesep=b"\r\n")
        return signer.sign(
            self.selector.encode("ascii"),
            self.domain.encode("ascii"),
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=[*SIGNED_HEADERS, *OVERSIGNED_HEADERS],
            signature_algorithm=b"rsa-sha256",
        )

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header prepended."""
        return self.signature_header(message) + message


def signer_from_settings(settings: Settings) -> DkimSigner | None:
    """A signer when dkim_key_file, dkim_selector and dkim_domain are all set; else None."""
    values = {
        "dkim_key_file": settings.dkim_key_file,
        "dkim_selector": settings.dkim_selector,
        "dkim_domain": settings.dkim_domain,
    }
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise DkimConfigError(
            f"DKIM is half-configured: set {', '.join(missing)} as well (or none of them)"
        )
    path = Path(settings.dkim_key_file)
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise DkimConfigError(
            f"dkim_key_file {path}: cannot read the private key ({exc.strerror})"
        ) from None
    if b"PRIVATE KEY-----" not in key:
        raise DkimConfigError(f"dkim_key_file {path}: not a PEM private key")
    return DkimSigner(selector=settings.dkim_selector, domain=settings.dkim_domain, private_key=key)
