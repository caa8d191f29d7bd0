"""Email normalisation and syntax checks shared by the service and the CSV import.

Why a cache per domain: email-validator spends two thirds of its time on the domain (IDNA
rules), and an import of 100,000 rows has a handful of distinct domains. The verdict is still
email-validator's: the local part goes through its own local-part check and anything unusual
(quotes, display names, non-ASCII) through the full `validate_email`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.syntax import validate_email_local_part

from dispatch.canonical import canonical_email

__all__ = ["InvalidEmail", "canonical_email", "check_email", "normalise_email"]

_SIMPLE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$")


class InvalidEmail(ValueError):
    """The address fails email-validator's syntax check; the message says why."""


def normalise_email(raw: str) -> str:
    """The address as stored and sent to: trimmed, domain lower-cased, local part as given.

    Identity never compares this form: see `canonical_email`."""
    value = raw.strip()
    local, at, domain = value.rpartition("@")
    if not at:
        return value
    return f"{local}@{domain.lower()}"


@lru_cache(maxsize=4096)
def _domain_error(domain: str) -> str | None:
    try:
        validate_email(f"postmaster@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


def _full_check(address: str) -> None:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None


def check_email(raw: str) -> str:
    """Return the normalised address or raise InvalidEmail."""
    address = normalise_email(raw)
    if not address:
        raise InvalidEmail("empty address")
    local, _, domain = address.rpartition("@")
    if len(address) > 254 or len(local) > 64 or not _SIMPLE.match(address):
        _full_check(address)  # unusual form or length: let the library decide (and explain)
        return address
    if _domain_error(domain) is not None:
        raise InvalidEmail(_domain_error(domain) or "invalid domain")
    try:
        validate_email_local_part(
            local, allow_smtputf8=False, allow_empty_local=False, quoted_local_part=False
        )
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None
    return address
