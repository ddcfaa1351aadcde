"""People's accounts (distinct from node keys): roles, passwords, sessions, CSRF.

Roles: ``admin`` (everything, including the task board and acceptance runs), ``operator``
(records data, issues and reports on tasks), ``auditor`` (reads everything, changes
nothing). Passwords are hashed with Argon2id. A session is a random cookie whose SHA-256 is
stored with its expiry and its CSRF token; every state-changing form carries that token.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select

from node.db import upsert
from node.runtime import Node
from node.tables import SESSIONS, USERS
from schemas.errors import ErrorCode, GuantongError
from schemas.hashing import sha256_hex
from schemas.times import format_time

__all__ = [
    "ROLES",
    "SESSION_TTL",
    "Account",
    "add_user",
    "check_password",
    "end_session",
    "session_of",
    "start_session",
]

ROLES = ("admin", "operator", "auditor")
SESSION_TTL = timedelta(hours=12)
_hasher = PasswordHasher()


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: str
    csrf: str

    @property
    def can_write(self) -> bool:
        return self.role in ("admin", "operator")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def add_user(node: Node, name: str, role: str, password: str) -> None:
    if role not in ROLES:
        raise GuantongError(ErrorCode.MALFORMED, f"role is one of {', '.join(ROLES)}")
    if not _is_user_name(name):
        raise GuantongError(
            ErrorCode.MALFORMED, "a user name has letters, digits, '-', '_' or '.' (≤ 64)"
        )
    if len(password) < 10:
        raise GuantongError(ErrorCode.MALFORMED, "a password has at least 10 characters")
    row = {
        "name": name,
        "role": role,
        "password_hash": _hasher.hash(password),
        "created_at": format_time(node.clock()),
        "disabled": False,
    }
    with node.store.write() as conn:
        upsert(conn, USERS, [row], ["name"], ["role", "password_hash", "disabled"])
        # a new password (or role) ends the sessions opened before it: a reset is often
        # because someone else knows the old one
        conn.execute(delete(SESSIONS).where(SESSIONS.c.user == name))


def _is_user_name(name: str) -> bool:
    return 0 < len(name) <= 64 and name.replace("-", "").replace("_", "").replace(".", "").isalnum()


def check_password(node: Node, name: str, password: str) -> str | None:
    """The user's role if the password is right, else None (same cost either way)."""
    row = None
    if _is_user_name(name):  # anything else names no one (and never reaches the store)
        with node.store.read() as conn:
            row = conn.execute(select(USERS).where(USERS.c.name == name)).first()
    stored = row.password_hash if row is not None else _DUMMY
    try:
        _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    return str(row.role)


_DUMMY = _hasher.hash("not a password of anyone")


def start_session(node: Node, name: str) -> tuple[str, str]:
    """A new session for ``name``: ``(cookie value, csrf token)``."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    expires = format_time(node.clock() + SESSION_TTL)
    with node.store.write() as conn:
        conn.execute(delete(SESSIONS).where(SESSIONS.c.expires_at < format_time(node.clock())))
        conn.execute(
            SESSIONS.insert().values(
                token_hash=sha256_hex(token.encode()), user=name, csrf=csrf, expires_at=expires
            )
        )
    return token, csrf


def session_of(node: Node, token: str | None) -> Account | None:
    if not token:
        return None
    with node.store.read() as conn:
        row = conn.execute(
            select(
                SESSIONS.c.user,
                SESSIONS.c.csrf,
                SESSIONS.c.expires_at,
                USERS.c.role,
                USERS.c.disabled,
            )
            .join(USERS, USERS.c.name == SESSIONS.c.user)
            .where(SESSIONS.c.token_hash == sha256_hex(token.encode()))
        ).first()
    if row is None or row.disabled or row.expires_at < format_time(node.clock()):
        return None
    return Account(name=row.user, role=row.role, csrf=row.csrf)


def end_session(node: Node, token: str | None) -> None:
    if token:
        with node.store.write() as conn:
            conn.execute(
                delete(SESSIONS).where(SESSIONS.c.token_hash == sha256_hex(token.encode()))
            )
