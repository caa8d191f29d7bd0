"""Admin users and API tokens: the service the CLI and the web app share.

Passwords are hashed with argon2id (argon2-cffi); API tokens are random strings shown once
and stored only as a SHA-256 hash, so a database leak never yields a usable credential.
"""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.errors import DispatchError
from dispatch.i18n import Catalog, normalise_locale
from dispatch.models.base import utcnow
from dispatch.models.web import USER_ROLES, ApiToken, User
from dispatch.vocabulary import ErrorKind

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8
TOKEN_PREFIX = "dsp_"


MESSAGES = Catalog(
    {
        "bad_email": ("email：不是有效的邮箱地址（{error}）", "email: {error}"),
        "bad_role": (
            "role：应为 {roles} 之一，实际为 {role!r}",
            "role: must be one of {roles}, got {role!r}",
        ),
        "short_password": (
            "password：至少 {n} 个字符",
            "password: at least {n} characters",
        ),
        "user_exists": ("email：用户 {address} 已存在", "email: a user {address} already exists"),
        "no_user": ("没有编号为 {user_id} 的用户", "no user with id {user_id}"),
        "no_token": ("没有编号为 {token_id} 的令牌", "no API token with id {token_id}"),
        "not_self": (
            "不能停用自己或降低自己的角色",
            "you cannot disable yourself or lower your own role",
        ),
        "last_admin": (
            "至少要保留一名正常的管理员",
            "at least one enabled administrator must remain",
        ),
    }
)


class UserError(DispatchError):
    """Bad input for a user or token; the message names the field (in both languages)."""


def use_hasher(hasher: PasswordHasher) -> None:
    """Swap the argon2 parameters (tests use cheap ones; production keeps the defaults)."""
    global _hasher
    _hasher = hasher
    _dummy.clear()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def normalise_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise UserError(MESSAGES.both("bad_email", error=exc)) from None


def create_user(
    session: Session, email: str, password: str, role: str, locale: str = "zh-CN"
) -> User:
    """Add a user; refuses a duplicate email, an unknown role or a short password."""
    address = normalise_email(email)
    if role not in USER_ROLES:
        raise UserError(MESSAGES.both("bad_role", roles=", ".join(USER_ROLES), role=role))
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(MESSAGES.both("short_password", n=MIN_PASSWORD_LENGTH))
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise UserError(MESSAGES.both("user_exists", address=address))
    user = User(
        email=address,
        password_hash=hash_password(password),
        role=role,
        locale=normalise_locale(locale) or "zh-CN",
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The user with this email and password, or None (same cost whether the email exists)."""
    try:
        address = normalise_email(email)
    except UserError:
        address = email.strip().lower()
    user = session.scalar(select(User).where(User.email == address))
    if user is None:
        verify_password(_dummy_hash(), password)  # keep timing flat for unknown emails
        return None
    if not verify_password(user.password_hash, password) or user.disabled_at is not None:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(session: Session, user: User, name: str = "") -> str:
    """A new API token for `user`; the plain token is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=_token_digest(token), user_id=user.id, name=name[:100]))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User | None:
    """The user an API token belongs to (and note its use), or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_digest(token)))
    if row is None:
        return None
    user = session.get(User, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    row.last_used_at = utcnow()
    return user


_dummy: dict[str, str] = {}


def _dummy_hash() -> str:
    if "hash" not in _dummy:
        _dummy["hash"] = _hasher.hash("not-a-real-password")
    return _dummy["hash"]


class UserChangeRefused(UserError):
    """A change that would lock the administrators out (yourself, the last admin)."""

    kind = ErrorKind.CONFLICT


def _enabled_admins(session: Session) -> int:
    query = select(func.count()).select_from(User)
    query = query.where(User.role == "admin", User.disabled_at.is_(None))
    return int(session.scalar(query) or 0)


def _user_or_404(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise UserError(MESSAGES.both("no_user", user_id=user_id), kind=ErrorKind.NOT_FOUND)
    return user


def change_user(
    session: Session, acting_id: int, user_id: int, *, role: str | None, disabled: bool | None
) -> tuple[User, dict[str, object], dict[str, object]]:
    """Change a user's role and/or disable them; returns (user, before, after) for the audit.

    Refused: an unknown role, an admin lowering or disabling themself, anything that would
    leave no enabled administrator."""
    user = _user_or_404(session, user_id)
    before: dict[str, object] = {"role": user.role, "disabled": user.disabled_at is not None}
    if role is not None and role not in USER_ROLES:
        raise UserError(MESSAGES.both("bad_role", roles=", ".join(USER_ROLES), role=role))
    lowers = role is not None and role != "admin" and user.role == "admin"
    if user.id == acting_id and (lowers or disabled):
        raise UserChangeRefused(MESSAGES.both("not_self"))
    if role is not None:
        user.role = role
    if disabled is not None:
        user.disabled_at = (user.disabled_at or utcnow()) if disabled else None
    session.flush()
    if _enabled_admins(session) == 0:
        raise UserChangeRefused(MESSAGES.both("last_admin"))
    after: dict[str, object] = {"role": user.role, "disabled": user.disabled_at is not None}
    return user, before, after


def revoke_api_token(session: Session, token_id: int) -> ApiToken:
    """Delete a token (it stops working at once); returns the row for the audit."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise UserError(MESSAGES.both("no_token", token_id=token_id), kind=ErrorKind.NOT_FOUND)
    session.delete(row)
    session.flush()
    return row
