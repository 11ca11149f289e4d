"""Pacing: every call to ProTexting, from every process, within one shared rate.

The pace is `PROTEXTING_RATE_LIMIT` (e.g. "60/minute"), kept by the `limits` library's
moving window: in any window of that length no more calls start than the limit. That
never overruns the provider's leaky bucket of the same rate, so a burst is drained at
the pace instead of answered with 429s. The window lives in memory for one process and
in Redis (`OPTIN_REDIS_URL`) when replicas share the account.

A pause (after a 429, an exhausted `X-Rate-Limit-Remaining`, or a 401/403) is stored
in the same place, so every replica holds off together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from .counters import close_counters, open_counters
from .upstream import MAX_RESET_SECONDS

logger = logging.getLogger(__name__)

# While the shared counters (Redis) are unreachable nobody can know the pace: hold
# every call back and look again after this long. Signups wait as pending meanwhile.
UNREACHABLE_RETRY_SECONDS = 2.0

_KEY = "protexting-opt-in"
_PAUSE_KEY = "protexting-paused"


class Pacer:
    """`storage` is shared with the abuse limits; without it the pacer opens (and
    closes) its own, in Redis when `redis_url` is given."""

    def __init__(
        self,
        rate: str,
        *,
        storage: Storage | None = None,
        redis_url: str | None = None,
        namespace: str = "optin-pages",
    ) -> None:
        self.item: RateLimitItem = parse(rate)
        self._owns_storage = storage is None
        self.storage = storage if storage is not None else open_counters(redis_url, namespace=namespace)
        self._limiter = MovingWindowRateLimiter(self.storage)
        self._pause_key = _PAUSE_KEY

    @property
    def interval(self) -> float:
        """Seconds per call at the configured pace."""
        return self.item.get_expiry() / self.item.amount

    async def paused_for(self) -> float:
        """Seconds left in a shared pause; 0 when none."""
        try:
            if await self.storage.get(self._pause_key) <= 0:
                return 0.0
            return max(0.0, await self.storage.get_expiry(self._pause_key) - time.time())
        except StorageError:
            logger.error("pace unknown (shared counters unreachable): holding delivery back")
            return UNREACHABLE_RETRY_SECONDS

    async def pause(self, seconds: float) -> None:
        """Hold off every caller for `seconds`, between 1 and MAX_RESET_SECONDS (the
        first pause of an overlap wins)."""
        # `not <=` also catches nan; math.ceil(inf) would raise.
        if not seconds <= MAX_RESET_SECONDS:
            seconds = MAX_RESET_SECONDS
        try:
            await self.storage.incr(self._pause_key, max(1, math.ceil(seconds)))
        except StorageError:
            logger.error("could not share a %.0fs pause (shared counters unreachable)", seconds)

    async def _hit(self) -> bool:
        try:
            return await self._limiter.hit(self.item, _KEY)
        except StorageError:
            return False

    async def try_acquire(self) -> bool:
        """Take a slot now if one is free; never waits."""
        if await self.paused_for() > 0:
            return False
        return await self._hit()

    async def acquire(self, stop: asyncio.Event | None = None, *, timeout: float | None = None) -> bool:
        """Wait for a slot; False if `stop` was set or `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while stop is None or not stop.is_set():
            wait = await self.paused_for()
            if wait <= 0:
                if await self._hit():
                    return True
                try:
                    stats = await self._limiter.get_window_stats(self.item, _KEY)
                    wait = max(0.01, stats.reset_time - time.time())
                except StorageError:
                    wait = UNREACHABLE_RETRY_SECONDS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = min(wait, left)
            await _sleep(min(wait, 1.0), stop)
        return False

    async def close(self) -> None:
        if self._owns_storage:
            await close_counters(self.storage)


async def _sleep(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
