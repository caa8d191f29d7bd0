"""Throttle log-ins and API tokens: a growing wait after repeated failures, never a lock.

Why it looks like this: any number of wrong passwords used to be answered at full speed, and
the right one then worked at once. Now every failure is recorded (`AuthAttempt`) and answered
after a short pause, and past a few failures within a window the client must WAIT before the
next attempt is even checked (the right password included, or guessing would go on):

- per account and client address: after `login_free_failures_account` failures,
- per client address (any account): after `login_free_failures_client`,
- per account from every address (a distributed attack): after `login_free_failures_global`.

The wait doubles with each further failure, from one second up to `login_max_delay_seconds`,
counted from the last failure, and failures older than `login_window_seconds` no longer
count. So an attacker cannot lock the owner out for good: at worst the owner waits a few
minutes, and a success on their own address and account clears that pair's count. API bearer
tokens are throttled the same way per client address (a token names no account).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.log import get_logger
from dispatch.models import utcnow
from dispatch.models.security import AuthAttempt

log = get_logger(__name__)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # seconds until the next attempt will be checked


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _wait(settings: Settings, failures: int, free: int) -> float:
    if failures < free:
        return 0.0
    return float(min(2 ** (failures - free), settings.login_max_delay_seconds))


def _scope_retry(
    session: Session, settings: Settings, where, free: int, since: datetime, now: datetime
) -> float:
    """Seconds this scope (a WHERE clause over failures) must still wait."""
    count, last = session.execute(
        select(func.count(), func.max(AuthAttempt.occurred_at)).where(
            where, AuthAttempt.ok.is_(False), AuthAttempt.occurred_at > since
        )
    ).one()
    if not count or last is None:
        return 0.0
    ready = _as_utc(last) + timedelta(seconds=_wait(settings, count, free))
    return max(0.0, (ready - now).total_seconds())


def check(
    session: Session,
    settings: Settings,
    *,
    kind: str,
    client: str,
    account: str | None = None,
    now: datetime | None = None,
) -> Verdict:
    """May this client try to authenticate now (as `account`, for a password log-in)?"""
    now = now or utcnow()
    since = now - timedelta(seconds=settings.login_window_seconds)
    same_kind = AuthAttempt.kind == kind
    waits = [
        _scope_retry(
            session,
            settings,
            and_(same_kind, AuthAttempt.client == client),
            settings.login_free_failures_client,
            since,
            now,
        )
    ]
    if account is not None:
        last_ok = session.scalar(
            select(func.max(AuthAttempt.occurred_at)).where(
                same_kind,
                AuthAttempt.account == account,
                AuthAttempt.client == client,
                AuthAttempt.ok.is_(True),
            )
        )
        pair_since = max(since, _as_utc(last_ok)) if last_ok is not None else since
        waits.append(
            _scope_retry(
                session,
                settings,
                and_(same_kind, AuthAttempt.account == account, AuthAttempt.client == client),
                settings.login_free_failures_account,
                pair_since,
                now,
            )
        )
        waits.append(
            _scope_retry(
                session,
                settings,
                and_(same_kind, AuthAttempt.account == account),
                settings.login_free_failures_global,
                since,
                now,
            )
        )
    wait = max(waits)
    if wait <= 0:
        return Verdict(True)
    return Verdict(False, max(1, math.ceil(wait)))


def record(
    session: Session,
    *,
    kind: str,
    client: str,
    ok: bool,
    account: str | None = None,
) -> None:
    """Record an attempt (the caller commits); failures are also logged, without secrets."""
    session.add(AuthAttempt(kind=kind, client=client[:64], account=account, ok=ok))
    if not ok:
        log.warning("auth.failed", kind=kind, client=client, account=account)


def client_address(request) -> str:
    """The client's address as the server sees it (uvicorn applies trusted proxy headers)."""
    return request.client.host if request.client else "unknown"


def account_key(email: str) -> str:
    return email.strip().lower()[:254]
