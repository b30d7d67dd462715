"""Who may use the viewer: users and roles, password hashes, login sessions and CSRF tokens.

Users come from a users file (``hie web --users FILE``, default ``HIE_HOME/web-users``), one
``user:hash:role`` per line, where ``hash`` is made by ``hash_password``
(``hie web --hash-password``) and ``role`` is ``viewer`` (read only) or ``operator`` (may also
resend, suspend, discard and enable/disable items).

The session is Starlette's signed cookie. It holds the user name and a random CSRF token; every
form that POSTs carries the token in a hidden field, and ``check_csrf`` compares the two, so a
page on another site cannot make a logged-in browser act.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request

from hie.errors import ConfigError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
_SCHEME = "pbkdf2_sha256"
_ITERATIONS = 260_000
#: Without login (loopback only) the one local user may do everything.
LOCAL_USER = "local"


@dataclass(frozen=True, slots=True)
class User:
    """A viewer user: name, role and password hash (``hash_password`` format)."""

    name: str
    role: Role
    password_hash: str = ""

    @property
    def is_operator(self) -> bool:
        """True when the user may act on messages and items, not only look."""
        return self.role == "operator"


def hash_password(password: str, *, iterations: int = _ITERATIONS) -> str:
    """A salted PBKDF2-SHA256 hash: ``pbkdf2_sha256$<iterations>$<salt>$<digest>`` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"{_SCHEME}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    """True if ``password`` matches ``encoded``; a malformed hash matches nothing."""
    try:
        scheme, iterations, salt, digest = encoded.split("$")
        if scheme != _SCHEME:
            return False
        expected = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac(
            "sha256", password.encode(), base64.b64decode(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def parse_users(text: str) -> dict[str, User]:
    """Read ``user:hash:role`` entries (lines or commas; ``#`` comments); ``ConfigError`` names
    the bad entry."""
    users: dict[str, User] = {}
    for entry in (e.strip() for e in text.replace("\n", ",").split(",")):
        if not entry or entry.startswith("#"):
            continue
        name, _, rest = entry.partition(":")
        password_hash, _, role = rest.rpartition(":")
        if not name or not password_hash or role not in ROLES:
            raise ConfigError(
                f"users entry for {name or '?'!r} must be user:hash:role with role "
                f"viewer or operator (make the hash with `hie web --hash-password`)"
            )
        users[name] = User(name, role, password_hash)
    return users


def csrf_token(request: Request) -> str:
    """This session's CSRF token, created on first use."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def check_csrf(request: Request) -> dict[str, str]:
    """The POSTed form, after checking its ``csrf`` field; HTTP 403 when missing or wrong."""
    form = await request.form()
    sent = form.get("csrf")
    expected = request.session.get("csrf")
    if not isinstance(sent, str) or not isinstance(expected, str):
        raise HTTPException(403, "missing CSRF token: reload the page and try again")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "wrong CSRF token: reload the page and try again")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def current_user(request: Request) -> User | None:
    """The logged-in user, the local user when login is off, or None."""
    auth = request.app.state.auth
    if not auth.login_required:
        return User(LOCAL_USER, "operator")
    name = request.session.get("user")
    return auth.users.get(name) if isinstance(name, str) else None


def require_operator(request: Request) -> User:
    """The current user if an operator; HTTP 403 otherwise (viewers only look)."""
    user = current_user(request)
    if user is None or not user.is_operator:
        raise HTTPException(403, "this action needs the operator role")
    return user


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Whether login is required, and who may log in."""

    users: dict[str, User]
    login_required: bool

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is right; the same work is done for unknown names."""
        user = self.users.get(name)
        # Verify against a dummy hash for unknown names so timing does not reveal which exist.
        encoded = user.password_hash if user else _DUMMY_HASH
        ok = verify_password(password, encoded)
        return user if ok and user else None


_DUMMY_HASH = hash_password(secrets.token_hex(8))
