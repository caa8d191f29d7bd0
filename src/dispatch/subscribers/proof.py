"""Proof-of-work for the public form: a small hashcash that needs no third-party service.

Why hashcash and not a captcha: Google's reCAPTCHA is unreachable in China and any hosted
captcha is a dependency at run time. The form carries a signed challenge (random nonce, the
time it was shown, the difficulty); the browser finds a counter such that
sha256("{challenge}:{email}:{counter}") starts with `bits` zero bits (about 2**bits hashes,
well under a second), the server checks it with one hash. A challenge is accepted once (the
ledger), so a script must pay the work again for every post and for every address.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from typing import Protocol

from dispatch.config import Settings
from dispatch.tokens import TokenError, make_signup_challenge, verify_signup_challenge

CHALLENGE_TTL_SECONDS = 3600  # a form left open for an hour still works
MIN_FORM_SECONDS = 1  # a person cannot type an address faster than this


def new_challenge(settings: Settings, *, now: float | None = None) -> str:
    return make_signup_challenge(settings, secrets.token_hex(8), settings.signup_pow_bits, now=now)


def work_input(challenge: str, email: str, counter: str | int) -> bytes:
    """What is hashed: the address is part of it, so one solution serves one address only."""
    return f"{challenge}:{email.strip().lower()}:{counter}".encode()


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def solve(challenge: str, email: str, bits: int) -> int:
    """The counter a browser would find (used by tests and the benchmark's client)."""
    counter = 0
    while leading_zero_bits(hashlib.sha256(work_input(challenge, email, counter)).digest()) < bits:
        counter += 1
    return counter


class Ledger(Protocol):
    def use_once(self, nonce: str, ttl_seconds: int) -> bool:
        """True the first time a nonce is presented, False ever after (within the TTL)."""


class LocalLedger:
    """One process's memory (the embedded default without Redis)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def use_once(self, nonce: str, ttl_seconds: int) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) > 100_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            if self._seen.get(nonce, 0) > now:
                return False
            self._seen[nonce] = now + ttl_seconds
            return True


class RedisLedger:
    """Shared by every web worker: SET NX with the challenge's remaining lifetime."""

    def __init__(self, client, prefix: str = "") -> None:
        self._client = client
        self._prefix = prefix

    def use_once(self, nonce: str, ttl_seconds: int) -> bool:
        return bool(
            self._client.set(
                f"{self._prefix}signup:pow:{nonce}", 1, nx=True, ex=max(ttl_seconds, 1)
            )
        )


def check(
    settings: Settings,
    ledger: Ledger,
    challenge: str,
    email: str,
    counter: str,
    *,
    now: float | None = None,
) -> str | None:
    """None when the work is valid and fresh; else why not (a key of the signup catalog)."""
    try:
        claim = verify_signup_challenge(settings, challenge)
    except TokenError:
        return "pow_invalid"
    now = time.time() if now is None else now
    age = now - claim.issued_at
    if age > CHALLENGE_TTL_SECONDS:
        return "pow_expired"
    if age < MIN_FORM_SECONDS or claim.bits < settings.signup_pow_bits:
        return "pow_invalid"
    if not counter.isascii() or not counter.isdigit() or len(counter) > 12:
        return "pow_invalid"
    digest = hashlib.sha256(work_input(challenge, email, counter)).digest()
    if leading_zero_bits(digest) < claim.bits:
        return "pow_invalid"
    if not ledger.use_once(claim.nonce, int(CHALLENGE_TTL_SECONDS - age) + 1):
        return "pow_reused"
    return None
