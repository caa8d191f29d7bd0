"""Signed tokens for unsubscribe, confirmation, open and click links, and VERP bounce addresses.

Why hand-rolled HMAC and not itsdangerous: open and click tokens are minted for every
recipient and every link of every email, so they must cost about a microsecond. A token is
its payload fields joined by "." and a truncated HMAC-SHA256 (96 bits) over them, with a key
derived per purpose from `settings.signing_key()` so a token made for one purpose is refused
for any other. Verification compares in constant time and raises `TokenError` for anything
forged, altered, expired, of the wrong purpose or signed with another key.

This module only makes and checks tokens; acting on one (unsubscribing, confirming) is the
subscriber service's job (`dispatch.subscribers.service.unsubscribe_by_token`), which imports
this module and never the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from dispatch.config import Settings
from dispatch.errors import DispatchError, ErrorKind
from dispatch.i18n import Catalog

if TYPE_CHECKING:  # pragma: no cover
    from dispatch.render.slots import RecipientSlots

SIG_CHARS = 16  # base64url chars of the HMAC kept: 96 bits
CONFIRM_TTL_SECONDS = 7 * 24 * 3600
PURPOSES = (
    "unsubscribe",
    "confirm",
    "open",
    "click",
    "bounce",
    "optin",
    "prefs",
    "email-change",
    "signup",
)
BOUNCE_SIG_CHARS = 16  # hex chars of the HMAC in a VERP address: 64 bits, case-insensitive
PREFS_TTL_SECONDS = 400 * 24 * 3600  # a preference link in an old issue works for over a year
EMAIL_CHANGE_TTL_SECONDS = 2 * 24 * 3600
_NONE = "-"  # list id "None" (unsubscribe from everything)

MESSAGES = Catalog(
    {
        "malformed": ("链接无效（格式错误）", "invalid link (malformed token)"),
        "bad_signature": ("链接无效（签名不符）", "invalid link (bad signature)"),
        "expired": ("链接已过期", "link expired"),
        "unknown": ("链接指向的订阅者或列表不存在", "the link names no known subscriber or list"),
    }
)


class TokenError(DispatchError):
    """A token was forged, altered, expired, made for another purpose or with another key."""

    kind = ErrorKind.NOT_FOUND  # a bad link names nothing we can show

    def __init__(self, reason: str):
        self.reason = reason  # malformed | bad_signature | expired | unknown
        super().__init__(MESSAGES.both(reason))


class Unsubscribe(NamedTuple):
    subscriber_id: int
    list_id: int | None


class Confirmation(NamedTuple):
    subscriber_id: int
    list_id: int
    expires_at: int  # unix seconds


class Click(NamedTuple):
    delivery_id: int
    link_index: int


class BounceClaim(NamedTuple):
    """What a VERP envelope sender names: a campaign delivery ("c") or transactional mail ("t")."""

    kind: str
    campaign_id: int  # 0 for transactional mail
    ref_id: int  # delivery id ("c"), subscriber id or 0 ("t")


_Hash = Any  # hashlib's sha256 object (no public type)


@lru_cache(maxsize=64)
def _purpose_key(secret: str, purpose: str) -> tuple[_Hash, _Hash]:
    """HMAC-SHA256 with the key derived for this purpose, its inner and outer pads already
    hashed: signing then costs two hash-state copies (about 3x cheaper than hmac.digest,
    which re-derives the pads on every call). The result is plain HMAC-SHA256."""
    key = hmac.digest(secret.encode(), b"dispatch-token-v1:" + purpose.encode(), "sha256")
    block = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


_generated_secrets: dict[str, str] = {}


def _secret(settings: Settings) -> str:
    """The configured key, or the one generated into data_dir (read once per process)."""
    if settings.secret_key:
        return settings.secret_key
    where = str(settings.data_dir)  # no resolve(): that costs syscalls on every token
    if where not in _generated_secrets:
        _generated_secrets[where] = settings.signing_key()
    return _generated_secrets[where]


def _key(settings: Settings, purpose: str) -> tuple[_Hash, _Hash]:
    return _purpose_key(_secret(settings), purpose)


def _sign(key: tuple[_Hash, _Hash], payload: str) -> str:
    inner = key[0].copy()
    inner.update(payload.encode())
    outer = key[1].copy()
    outer.update(inner.digest())
    return base64.urlsafe_b64encode(outer.digest())[:SIG_CHARS].decode()


def _make(settings: Settings, purpose: str, *fields: object) -> str:
    payload = ".".join(str(f) for f in fields)
    return f"{payload}.{_sign(_key(settings, purpose), payload)}"


def _open(settings: Settings, purpose: str, token: str, n_fields: int) -> list[str]:
    """Check the signature and return the payload fields (still strings)."""
    if not isinstance(token, str) or len(token) > 600:
        raise TokenError("malformed")
    payload, dot, sig = token.rpartition(".")
    fields = payload.split(".")
    if not dot or len(fields) != n_fields or len(sig) != SIG_CHARS:
        raise TokenError("malformed")
    expected = _sign(_key(settings, purpose), payload)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise TokenError("bad_signature")
    return fields


def _int(value: str) -> int:
    if not value.isascii() or not value.isdigit():
        raise TokenError("malformed")
    return int(value)


# -- unsubscribe (no expiry: old emails' links must keep working) --------------------------


def make_unsubscribe_token(settings: Settings, subscriber_id: int, list_id: int | None) -> str:
    return _make(
        settings, "unsubscribe", int(subscriber_id), _NONE if list_id is None else int(list_id)
    )


def verify_unsubscribe_token(settings: Settings, token: str) -> Unsubscribe:
    sub, lst = _open(settings, "unsubscribe", token, 2)
    return Unsubscribe(_int(sub), None if lst == _NONE else _int(lst))


# -- confirmation (double opt-in; expiring) ------------------------------------------------


def make_confirmation_token(
    settings: Settings,
    subscriber_id: int,
    list_id: int,
    *,
    ttl_seconds: int = CONFIRM_TTL_SECONDS,
    now: float | None = None,
) -> str:
    expires = int((time.time() if now is None else now) + ttl_seconds)
    return _make(settings, "confirm", int(subscriber_id), int(list_id), expires)


def verify_confirmation_token(
    settings: Settings, token: str, *, now: float | None = None
) -> Confirmation:
    sub, lst, expires = _open(settings, "confirm", token, 3)
    result = Confirmation(_int(sub), _int(lst), _int(expires))
    if (time.time() if now is None else now) > result.expires_at:
        raise TokenError("expired")
    return result


# -- tracking (hot path: one per recipient and per link) -----------------------------------


def make_open_token(settings: Settings, delivery_id: int) -> str:
    return _make(settings, "open", int(delivery_id))


def verify_open_token(settings: Settings, token: str) -> int:
    (delivery,) = _open(settings, "open", token, 1)
    return _int(delivery)


def make_click_token(settings: Settings, delivery_id: int, link_index: int) -> str:
    return _make(settings, "click", int(delivery_id), int(link_index))


def verify_click_token(settings: Settings, token: str) -> Click:
    delivery, index = _open(settings, "click", token, 2)
    return Click(_int(delivery), _int(index))


# -- opt-in for several lists at once (the public form: one email, one button) -----------


class OptIn(NamedTuple):
    subscriber_id: int
    list_ids: tuple[int, ...]
    expires_at: int


def make_optin_token(
    settings: Settings,
    subscriber_id: int,
    list_ids: Sequence[int],
    *,
    ttl_seconds: int = CONFIRM_TTL_SECONDS,
    now: float | None = None,
) -> str:
    expires = int((time.time() if now is None else now) + ttl_seconds)
    lists = "-".join(str(int(i)) for i in sorted(set(list_ids)))
    return _make(settings, "optin", int(subscriber_id), lists, expires)


def verify_optin_token(settings: Settings, token: str, *, now: float | None = None) -> OptIn:
    sub, lists, expires = _open(settings, "optin", token, 3)
    ids = tuple(_int(part) for part in lists.split("-")) if lists else ()
    result = OptIn(_int(sub), ids, _int(expires))
    if not ids:
        raise TokenError("malformed")
    if (time.time() if now is None else now) > result.expires_at:
        raise TokenError("expired")
    return result


# -- preference centre (long-lived: it sits in every email's footer) ----------------------


def make_prefs_token(settings: Settings, subscriber_id: int, *, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + PREFS_TTL_SECONDS)
    return _make(settings, "prefs", int(subscriber_id), expires)


def verify_prefs_token(settings: Settings, token: str, *, now: float | None = None) -> int:
    sub, expires = _open(settings, "prefs", token, 2)
    if (time.time() if now is None else now) > _int(expires):
        raise TokenError("expired")
    return _int(sub)


def prefs_url(settings: Settings, subscriber_id: int) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/p/{make_prefs_token(settings, subscriber_id)}"


# -- a new email address, confirmed at that address before it replaces the old one --------


class EmailChange(NamedTuple):
    subscriber_id: int
    new_email: str


def make_email_change_token(
    settings: Settings, subscriber_id: int, new_email: str, *, now: float | None = None
) -> str:
    expires = int((time.time() if now is None else now) + EMAIL_CHANGE_TTL_SECONDS)
    encoded = base64.urlsafe_b64encode(new_email.encode()).decode().rstrip("=")
    return _make(settings, "email-change", int(subscriber_id), encoded, expires)


def verify_email_change_token(
    settings: Settings, token: str, *, now: float | None = None
) -> EmailChange:
    sub, encoded, expires = _open(settings, "email-change", token, 3)
    if (time.time() if now is None else now) > _int(expires):
        raise TokenError("expired")
    try:
        email = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise TokenError("malformed") from None
    return EmailChange(_int(sub), email)


# -- the public form's challenge (proof-of-work seed and the time the form was shown) ------


class SignupChallenge(NamedTuple):
    nonce: str
    issued_at: int
    bits: int


def make_signup_challenge(
    settings: Settings, nonce: str, bits: int, *, now: float | None = None
) -> str:
    issued = int(time.time() if now is None else now)
    return _make(settings, "signup", nonce, issued, int(bits))


def verify_signup_challenge(settings: Settings, token: str) -> SignupChallenge:
    nonce, issued, bits = _open(settings, "signup", token, 3)
    if not nonce.isalnum():
        raise TokenError("malformed")
    return SignupChallenge(nonce, _int(issued), _int(bits))


def unsubscribe_url(settings: Settings, subscriber_id: int, list_id: int | None) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/u/{make_unsubscribe_token(settings, subscriber_id, list_id)}"


def confirmation_url(settings: Settings, subscriber_id: int, list_id: int) -> str:
    base = settings.public_base_url.rstrip("/")
    return f"{base}/confirm/{make_confirmation_token(settings, subscriber_id, list_id)}"


def tracking_slots(
    settings: Settings,
    *,
    delivery_id: int,
    subscriber_id: int,
    list_id: int | None,
    name: str,
    n_links: int,
    tracking: bool,
    locale: str | None = None,
) -> RecipientSlots:
    """The per-recipient values the renderer fills into an already-rendered email."""
    from dispatch.render.slots import RecipientSlots

    base = settings.public_base_url.rstrip("/")
    unsub_list = _NONE if list_id is None else list_id
    unsub = f"{base}/u/{_make(settings, 'unsubscribe', subscriber_id, unsub_list)}"
    if not tracking:
        return RecipientSlots(
            name=name, unsubscribe_url=unsub, open_url=None, click_urls=None, locale=locale
        )
    open_url = f"{base}/t/o/{_make(settings, 'open', delivery_id)}.gif"
    click_key = _key(settings, "click")
    click_urls = []
    for index in range(n_links):
        payload = f"{delivery_id}.{index}"
        click_urls.append(f"{base}/t/c/{payload}.{_sign(click_key, payload)}")
    return RecipientSlots(
        name=name, unsubscribe_url=unsub, open_url=open_url, click_urls=click_urls, locale=locale
    )


# -- VERP envelope sender (bounces come back to an address that names the delivery) ----------
#
# `bounces+c12-3456-0123456789abcdef@bounce.example.org`: kind and campaign id, delivery id,
# and 64 bits of HMAC in lower-case hex. Hex (not base64) because some MTAs fold the local
# part to lower case on the way back; the token is only digits, letters a-f, "c"/"t" and "-".

BOUNCE_KINDS = ("c", "t")


def _bounce_sig(settings: Settings, payload: str) -> str:
    key = _key(settings, "bounce")
    inner = key[0].copy()
    inner.update(payload.encode())
    outer = key[1].copy()
    outer.update(inner.digest())
    return outer.hexdigest()[:BOUNCE_SIG_CHARS]


def make_bounce_token(settings: Settings, kind: str, campaign_id: int, ref_id: int) -> str:
    if kind not in BOUNCE_KINDS:
        raise ValueError(f"unknown bounce token kind {kind!r}")
    payload = f"{kind}{int(campaign_id)}-{int(ref_id)}"
    return f"{payload}-{_bounce_sig(settings, payload)}"


def verify_bounce_token(settings: Settings, token: str) -> BounceClaim:
    """The delivery a VERP token names; TokenError if it is forged, altered or malformed."""
    if not isinstance(token, str) or len(token) > 80:
        raise TokenError("malformed")
    token = token.lower()
    payload, dash, sig = token.rpartition("-")
    head, dash2, ref = payload.partition("-")
    if not dash or not dash2 or len(sig) != BOUNCE_SIG_CHARS or head[:1] not in BOUNCE_KINDS:
        raise TokenError("malformed")
    campaign, ref_id = _int(head[1:]), _int(ref)
    expected = _bounce_sig(settings, payload)
    if not hmac.compare_digest(expected.encode(), sig.encode("utf-8", "replace")):
        raise TokenError("bad_signature")
    return BounceClaim(head[0], campaign, ref_id)


def verp_address(settings: Settings, kind: str, campaign_id: int, ref_id: int) -> str:
    """`local+token@domain` from settings.bounce_address (which must be set)."""
    local, _, domain = settings.bounce_address.rpartition("@")
    return f"{local}+{make_bounce_token(settings, kind, campaign_id, ref_id)}@{domain}"


def bounce_token_in(settings: Settings, address: str) -> str | None:
    """The token of an address of the form `<bounce local>+<token>@<bounce domain>`, else None.

    Matching is case-insensitive; an address at another domain or local part is not ours.
    """
    if not settings.bounce_address or not address:
        return None
    address = address.strip().strip("<>").lower()
    local, _, domain = settings.bounce_address.lower().rpartition("@")
    at_local, at, at_domain = address.rpartition("@")
    if not at or at_domain != domain:
        return None
    base, plus, token = at_local.partition("+")
    if not plus or base != local or not token:
        return None
    return token
