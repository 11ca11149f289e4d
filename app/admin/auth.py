"""Who may use the console: one password (an argon2id hash in OPTIN_ADMIN_PASSWORD_HASH),
a signed session cookie, a CSRF token on every POST, and a limit on login attempts.

The session is a cookie signed with the service's key (itsdangerous, as the form
tokens are), holding a random session id, the login's time and the last request's:
it ends 8 hours after the last request and 24 hours after the login, whichever comes
first, by `clock`. Logging out remembers the id as ended in the shared counters (Redis
with several replicas), so a copy of the cookie ends with it. The CSRF token of a
session is a MAC of its id; the login form's, before there is a session, a MAC of a
random value in a cookie of its own (the double-submit pattern), so a page elsewhere
can post neither.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer
from limits import RateLimitItem
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from ..throttle import TooManyRequests, client_key, parse_rates

logger = logging.getLogger(__name__)

SESSION_COOKIE = "optin_admin"
LOGIN_COOKIE = "optin_admin_login"
COOKIE_PATH = "/admin"
IDLE_SECONDS = 8 * 3600
CLOCK_SKEW_SECONDS = 60
ABSOLUTE_SECONDS = 24 * 3600
# Login attempts, right or wrong: a person mistyping is well inside these; guessing is not.
LOGIN_LIMIT_PER_ADDRESS = "5/minute;30/hour"
LOGIN_LIMIT_OVERALL = "30/minute;300/hour"


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    started: float
    seen: float


class Passwords:
    """The console's one password, checked in a thread: argon2id is slow on purpose
    (about a tenth of a second of CPU), and the event loop serves signups meanwhile."""

    def __init__(self, password_hash: str) -> None:
        # Imported here, when a console is set up: argon2 and its cffi bindings would
        # hold about half a MB in every process that has none (make bench's RSS).
        from argon2 import PasswordHasher
        from argon2.exceptions import InvalidHashError, VerificationError

        self._hash = password_hash
        self._hasher = PasswordHasher()
        self._refused = (VerificationError, InvalidHashError)

    async def check(self, password: str) -> bool:
        try:
            return await asyncio.to_thread(self._hasher.verify, self._hash, password)
        except self._refused:
            return False


class Sessions:
    def __init__(
        self,
        key: str,
        *,
        ended: Storage,
        secure: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = hashlib.sha256(b"optin-admin:" + key.encode()).digest()
        self._cookies = URLSafeSerializer(key, salt="optin-admin-session")
        self._ended = ended
        self.secure = secure
        self.clock = clock

    # -- the session cookie ------------------------------------------------------

    def start(self) -> Session:
        now = self.clock()
        return Session(secrets.token_urlsafe(16), now, now)

    async def read(self, cookie: str | None) -> Session | None:
        """The live session `cookie` holds; None when it holds none, a forged one, or
        one that has ended (idle, too old, logged out)."""
        if not cookie:
            return None
        try:
            sid, started, seen = self._cookies.loads(cookie)
            session = Session(str(sid), float(started), float(seen))
        except (BadSignature, TypeError, ValueError):
            return None
        now = self.clock()
        # A replica whose clock is a little behind the one that made the cookie still
        # takes it; one from far in the future was not made by a clock of ours.
        if (
            now - session.seen > IDLE_SECONDS
            or now - session.started > ABSOLUTE_SECONDS
            or session.started > now + CLOCK_SKEW_SECONDS
        ):
            return None
        if await self._has_ended(session.id):
            return None
        return Session(session.id, session.started, max(now, session.seen))

    async def end(self, session: Session) -> None:
        try:
            await self._ended.incr(self._ended_key(session.id), ABSOLUTE_SECONDS)
        except StorageError:
            logger.error("could not remember a console logout (shared counters unreachable)")

    async def _has_ended(self, sid: str) -> bool:
        try:
            return bool(await self._ended.get(self._ended_key(sid)) > 0)
        except StorageError:
            # The cookie is signed and ages out all the same; the console stays usable
            # while Redis is down, which is when the operator needs it.
            logger.error("could not check a console session against logouts (shared counters unreachable)")
            return False

    @staticmethod
    def _ended_key(sid: str) -> str:
        return f"admin-session-ended:{sid}"

    def session_cookie(self, session: Session) -> str:
        """The Set-Cookie value carrying `session` (its `seen` refreshed on each request)."""
        return self._cookie(SESSION_COOKIE, self._cookies.dumps([session.id, session.started, session.seen]))

    def cleared(self, name: str = SESSION_COOKIE) -> str:
        return self._cookie(name, "", max_age=0)

    def _cookie(self, name: str, value: str, *, max_age: int | None = None) -> str:
        parts = [f"{name}={value}", f"Path={COOKIE_PATH}", "HttpOnly", "SameSite=Strict"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.secure:
            parts.append("Secure")
        return "; ".join(parts)

    # -- CSRF --------------------------------------------------------------------

    def csrf(self, session: Session) -> str:
        return self._mac("session", session.id)

    def login_nonce(self) -> tuple[str, str]:
        """A fresh login form's cookie value and the Set-Cookie that carries it."""
        nonce = secrets.token_urlsafe(16)
        return nonce, self._cookie(LOGIN_COOKIE, nonce)

    def login_csrf(self, nonce: str) -> str:
        return self._mac("login", nonce)

    def _mac(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def same(given: str | None, expected: str) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class LoginLimit:
    """Login attempts per address and in all, in moving windows of the shared counters
    (as the signups' limits, app.throttle): over either, TooManyRequests (429)."""

    def __init__(
        self, storage: Storage, *, per_address: str = LOGIN_LIMIT_PER_ADDRESS, overall: str = LOGIN_LIMIT_OVERALL
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_address = parse_rates(per_address)
        self._overall = parse_rates(overall)

    async def attempt(self, address: str | None) -> None:
        checks: list[tuple[tuple[RateLimitItem, ...], tuple[str, ...]]] = [(self._overall, ("admin-login",))]
        if address:
            checks.insert(0, (self._per_address, ("admin-login", client_key(address))))
        try:
            for items, key in checks:
                for item in items:
                    if not await self._limiter.hit(item, *key):
                        stats = await self._limiter.get_window_stats(item, *key)
                        raise TooManyRequests("admin-login", max(1, math.ceil(stats.reset_time - time.time())))
        except StorageError:
            # Unlike a signup's, a login is not let through unlimited: the password is
            # the console's one lock.
            raise TooManyRequests("admin-login", 60) from None
