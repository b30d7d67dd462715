"""Who may use the viewer: users and roles, password hashes, login sessions and CSRF tokens.

Users come from a users file (``hie web --users FILE``, default ``HIE_HOME/web-users``), one
``user:hash:role`` per line, where ``hash`` is made by ``hash_password``
(``hie web --hash-password``) and ``role`` is ``viewer`` (read only) or ``operator`` (may also
resend, suspend, discard and enable/disable items).

The session is Starlette's signed cookie. It holds the user name, a session id and a random
CSRF token; every form that POSTs carries the token in a hidden field, and ``check_csrf``
compares the two, so a page on another site cannot make a logged-in browser act. The session id
must also be one the viewer gave out and has not ended (``Sessions``): logging out ends it on the
server, so a copy of the cookie saved before stops working. Failed logins are throttled per user
name and client address (``LoginThrottle``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from starlette.exceptions import HTTPException
from starlette.requests import Request

from hie.errors import ConfigError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
_SCHEME = "pbkdf2_sha256"
#: OWASP's figure for PBKDF2-HMAC-SHA256 (Password Storage Cheat Sheet, 2023). Hashes made
#: with fewer iterations still verify: the count is stored in each hash.
_ITERATIONS = 600_000
#: How long a login session lasts, at most (seconds).
SESSION_SECONDS = 12 * 3600
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
    config: AuthConfig = auth
    name, sid = request.session.get("user"), request.session.get("sid")
    if not isinstance(name, str) or not isinstance(sid, str) or config.sessions.user(sid) != name:
        return None  # never logged in, logged out, expired, or from before a restart
    return config.users.get(name)


class Sessions:
    """The login sessions the viewer gave out and has not ended (in memory: a restart ends
    them all, as the random cookie key does)."""

    def __init__(self, max_age: float = SESSION_SECONDS) -> None:
        self.max_age = max_age
        self._live: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def open(self, user: str) -> str:
        """A new session id for ``user``."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            self._live = {k: v for k, v in self._live.items() if now - v[1] < self.max_age}
            self._live[sid] = (user, now)
        return sid

    def user(self, sid: str) -> str | None:
        """Whose session ``sid`` is, while it lasts."""
        with self._lock:
            found = self._live.get(sid)
        if found is None or time.monotonic() - found[1] >= self.max_age:
            return None
        return found[0]

    def close(self, sid: str) -> None:
        """End session ``sid`` (logout)."""
        with self._lock:
            self._live.pop(sid, None)


class LoginThrottle:
    """Slows down password guessing: after ``free`` failed logins for one user name from one
    client address, that pair waits ``base`` seconds before the next try, doubling with every
    further failure up to ``ceiling``. A success clears the pair."""

    def __init__(self, free: int = 5, base: float = 30.0, ceiling: float = 900.0) -> None:
        self.free, self.base, self.ceiling = free, base, ceiling
        self._failures: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def wait(self, name: str, client: str) -> float:
        """Seconds before ``name`` may try again from ``client`` (0: now)."""
        with self._lock:
            count, last = self._failures.get((name, client), (0, 0.0))
        if count < self.free:
            return 0.0
        delay: float = min(self.base * 2.0 ** (count - self.free), self.ceiling)
        return max(0.0, last + delay - time.monotonic())

    def failed(self, name: str, client: str) -> None:
        """Count a failed login."""
        with self._lock:
            count, _ = self._failures.get((name, client), (0, 0.0))
            self._failures[(name, client)] = (count + 1, time.monotonic())

    def succeeded(self, name: str, client: str) -> None:
        """Forget the failures of the pair."""
        with self._lock:
            self._failures.pop((name, client), None)


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
    sessions: Sessions = field(default_factory=Sessions)
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password is right; the same work is done for unknown names."""
        user = self.users.get(name)
        # Verify against a dummy hash for unknown names so timing does not reveal which exist.
        encoded = user.password_hash if user else _DUMMY_HASH
        ok = verify_password(password, encoded)
        return user if ok and user else None


_DUMMY_HASH = hash_password(secrets.token_hex(8))
