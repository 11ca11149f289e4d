"""Shared counters: the `limits` storage behind the pace and the abuse limits.

In memory for a single process; in Redis (`OPTIN_REDIS_URL`) when several replicas
must see the same counts. Every key carries the deployment's prefix
(`OPTIN_REDIS_PREFIX`), so deployments can share one Redis. Redis is asked with short
socket timeouts, behind a breaker that stops asking it for a while when it does not
answer (`Breaker`).
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from limits.aio.storage import MovingWindowSupport, RedisStorage, Storage
from limits.errors import StorageError

_T = TypeVar("_T")

logger = logging.getLogger(__name__)


class InProcessCounters(Storage, MovingWindowSupport):
    """The storage API of `limits` (the moving windows its strategies use, and plain
    expiring counters), in this process's memory.

    limits' own memory storages sweep every key for expired entries after nearly every
    hit: the async one in a trip to a thread per key, the synchronous one in a new
    timer thread every 10 ms. With the abuse limits on, a burst makes two keys per
    number: the synchronous storage's sweep more than halved signups' throughput, the
    async one's added a tenth to their CPU (README, Performance). Here each window is
    trimmed when it is used, and keys nobody used for a whole window are dropped in one
    pass a minute.

    Every signup leaves four keys here for up to a day (its number's two windows, its
    form token's two counters), so each is held in as few objects as it can be: a key
    as 60 bits of its hash (`_held`), not its text; a window or a counter that holds
    one hit as a bare float, not a tuple and a list. Lists, not deques, once there are
    more: an empty deque alone takes 600 bytes. A burst of 5,000 signups then leaves
    2.2 MB of small objects in the server instead of 6.2 (`sys._debugmallocstats`
    before and after it, make bench's burst)."""

    STORAGE_SCHEME = None
    SWEEP_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        # Window length -> key -> its hits: the time of a lone hit, or a list of the
        # times oldest first once there are more.
        self._windows: dict[float, dict[int, float | list[float]]] = {}
        # key -> when a counter of 1 expires, or (value, expires at) once it is more.
        self._counters: dict[int, float | tuple[int, float]] = {}
        self._next_sweep = clock() + self.SWEEP_SECONDS

    def __len__(self) -> int:
        """Keys held (windows and counters)."""
        return sum(len(windows) for windows in self._windows.values()) + len(self._counters)

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def _now(self) -> float:
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        return now

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self.SWEEP_SECONDS
        swept = {}
        for expiry, windows in self._windows.items():
            since = now - expiry
            kept = {k: hits for k, hits in windows.items() if _newest(hits) > since}
            if kept:
                swept[expiry] = kept
        self._windows = swept
        self._counters = {k: counter for k, counter in self._counters.items() if _counter(counter)[1] > now}

    def _hits(self, windows: dict[int, float | list[float]], key: int, since: float) -> float | list[float] | None:
        """The hits of `key` after `since`, trimmed in place (None when there are none)."""
        hits = windows.get(key)
        if hits is None:
            return None
        if not isinstance(hits, list):
            if hits > since:
                return hits
        elif hits[0] > since:
            return hits
        else:
            del hits[: bisect.bisect_right(hits, since)]
            if hits:
                return hits
        del windows[key]
        return None

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        now = self._now()
        windows = self._windows.get(expiry)
        if windows is None:
            windows = self._windows[expiry] = {}
        held = _held(key)
        hits = self._hits(windows, held, now - expiry)
        count = 0 if hits is None else len(hits) if isinstance(hits, list) else 1
        if amount > limit or count + amount > limit:
            return False
        if isinstance(hits, list):
            hits.extend([now] * amount)
        elif hits is not None:
            windows[held] = [hits] + [now] * amount
        elif amount:
            windows[held] = now if amount == 1 else [now] * amount
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """(time of the oldest hit in the window, hits in the window), as limits' own."""
        now = self._now()
        hits = self._hits(self._windows.get(expiry, {}), _held(key), now - expiry)
        if hits is None:
            return (now, 0)
        return (hits[0], len(hits)) if isinstance(hits, list) else (hits, 1)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add to a counter; a new counter expires `expiry` seconds from now."""
        now = self._now()
        held = _held(key)
        value, expires = _counter(self._counters.get(held, 0.0))
        if expires <= now:
            value, expires = 0, now + expiry
        value += amount
        self._counters[held] = expires if value == 1 else (value, expires)
        return value

    async def get(self, key: str) -> int:
        value, expires = _counter(self._counters.get(_held(key), 0.0))
        return value if expires > self._now() else 0

    async def get_expiry(self, key: str) -> float:
        now = self._now()
        _, expires = _counter(self._counters.get(_held(key), now))
        return expires if expires > now else now

    async def clear(self, key: str) -> None:
        held = _held(key)
        for windows in self._windows.values():
            windows.pop(held, None)
        self._counters.pop(held, None)

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        held = len(self)
        self._windows.clear()
        self._counters.clear()
        return held


def _held(key: str) -> int:
    """What a key is held as: 60 bits of its hash, a 32-byte int where its text takes
    80 to 112 bytes (four keys a signup, kept a day). Two keys of a million share a
    count with odds of about one in two million, and no one can aim for that: a
    process salts its string hashes with a secret of its own (unless PYTHONHASHSEED
    is set), and the worst it does is count two keys' hits as one key's (two numbers'
    signups against one limit, or two form tokens' uses as one token's)."""
    return hash(key) & _SIXTY_BITS


_SIXTY_BITS = (1 << 60) - 1


def _newest(hits: float | list[float]) -> float:
    return hits[-1] if isinstance(hits, list) else hits


def _counter(held: float | tuple[int, float]) -> tuple[int, float]:
    """(value, expires at) of a counter as `InProcessCounters` holds it."""
    return held if isinstance(held, tuple) else (1, held)


class CountersUnavailable(ConnectionError):
    """The breaker is open: the shared counters were not asked."""


class Breaker(Storage, MovingWindowSupport):
    """The shared counters behind a circuit breaker.

    A Redis that accepts connections and never answers costs every call its socket
    timeout, and a signup makes three calls (the address's limits, the number's, the
    pace). After `failures` calls in a row fail, every call fails at once, with
    limits.errors.StorageError as a failed call to Redis does, so the limits let
    signups through and delivery waits without asking Redis at all. After `cooldown`
    seconds one call goes through as a probe (the others still fail at once): if Redis
    answers, the breaker closes; if not, it stays open for another cool-down."""

    STORAGE_SCHEME = None

    def __init__(
        self,
        storage: Storage,
        *,
        failures: int = 3,
        cooldown: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if not isinstance(storage, MovingWindowSupport):
            raise TypeError("the breaker wraps a storage with moving windows (the pace and the limits use them)")
        self.storage = storage
        self._windows: MovingWindowSupport = storage
        self._failures_allowed = failures
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until: float | None = None
        self._probing = False
        # Calls passed on to the storage, and calls refused while open.
        self.calls = 0
        self.refused = 0

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    @property
    def base_exceptions(self) -> type[Exception]:
        return StorageError

    async def _call(self, method: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        probe = False
        if self._open_until is not None:
            if self._probing or self._clock() < self._open_until:
                self.refused += 1
                raise StorageError(CountersUnavailable("shared counters unreachable; not asking them for a while"))
            probe = self._probing = True
        self.calls += 1
        try:
            result = await method(*args)
        except StorageError as exc:
            self._failed(exc)
            raise
        finally:
            if probe:
                self._probing = False
        self._succeeded()
        return result

    def _failed(self, exc: StorageError) -> None:
        self._failures += 1
        if self._open_until is None and self._failures < self._failures_allowed:
            return
        if self._open_until is None:
            logger.error(
                "shared counters unreachable (%s): asking them again every %.0fs; meanwhile the "
                "abuse limits let signups through and delivery waits",
                exc.storage_error.__class__.__name__,
                self._cooldown,
            )
        self._open_until = self._clock() + self._cooldown

    def _succeeded(self) -> None:
        self._failures = 0
        if self._open_until is not None:
            self._open_until = None
            logger.info("shared counters answer again: abuse limits and delivery resume")

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return await self._call(self.storage.incr, key, expiry, amount)

    async def get(self, key: str) -> int:
        return await self._call(self.storage.get, key)

    async def get_expiry(self, key: str) -> float:
        return await self._call(self.storage.get_expiry, key)

    async def check(self) -> bool:
        return await self._call(self.storage.check)

    async def reset(self) -> int | None:
        return await self._call(self.storage.reset)

    async def clear(self, key: str) -> None:
        await self._call(self.storage.clear, key)

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return await self._call(self._windows.acquire_entry, key, limit, expiry, amount)

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        return await self._call(self._windows.get_moving_window, key, limit, expiry)


# A healthy Redis answers in about a millisecond: a call that takes this long has found
# one that does not answer (OPTIN_REDIS_TIMEOUT_SECONDS).
REDIS_TIMEOUT_SECONDS = 0.5


def open_counters(
    redis_url: str | None,
    *,
    namespace: str = "optin-pages",
    timeout: float = REDIS_TIMEOUT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> Storage:
    """In-process counters, or Redis's behind a breaker (`clock` times its cool-down)."""
    if redis_url:
        # wrap_exceptions: every Redis failure arrives as limits.errors.StorageError,
        # which the pace and the limits handle without failing a signup.
        redis = RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix=f"{namespace}:limits",
            wrap_exceptions=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        return Breaker(redis, clock=clock)
    return InProcessCounters()


async def counters_answer(storage: Storage) -> bool:
    """Whether the shared counters answer now (Redis's PING; in-process ones always do).

    Asked past the breaker: a readiness probe must find out even while the breaker
    stops the signups' calls, and must not close it either, which a check that reports
    a failure as False (limits' own) would do."""
    if isinstance(storage, Breaker):
        storage = storage.storage
    return bool(await storage.check())


async def close_counters(storage: Storage) -> None:
    # limits has no close(): shut the Redis client it made, so it does not outlive the
    # lifespan that made it. In-process counters hold nothing to close.
    if isinstance(storage, Breaker):
        storage = storage.storage
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    if client is not None:
        await client.aclose()
