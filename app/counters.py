"""Shared counters: the `limits` storage behind the pace and the abuse limits.

In memory for a single process; in Redis (`OPTIN_REDIS_URL`) when several replicas
must see the same counts. Every key carries the deployment's prefix
(`OPTIN_REDIS_PREFIX`), so deployments can share one Redis.
"""

from __future__ import annotations

import asyncio

from limits.aio.storage import MovingWindowSupport, RedisStorage, Storage
from limits.storage import MemoryStorage


class InProcessCounters(Storage, MovingWindowSupport):
    """The async storage API of `limits`, over its synchronous in-memory storage.

    limits' async memory storage expires old entries by taking each key's lock and
    making a trip to a worker thread per key, again after every hit: under a burst,
    each signup's turn at the pace waited behind such a trip (12 ms at p99, make
    bench). The synchronous storage keeps the same moving windows, expires them from a
    timer thread, and answers at once: dict and list work under a lock held for
    microseconds, fine to call from the event loop."""

    STORAGE_SCHEME = None

    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryStorage()

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    async def check(self) -> bool:
        return True

    async def reset(self) -> int | None:
        return self.memory.reset()

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        return self.memory.acquire_entry(key, limit, expiry, amount)

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        return self.memory.get_moving_window(key, limit, expiry)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self.memory.incr(key, expiry, amount)

    async def get(self, key: str) -> int:
        return self.memory.get(key)

    async def get_expiry(self, key: str) -> float:
        return self.memory.get_expiry(key)

    async def clear(self, key: str) -> None:
        self.memory.clear(key)

    def close(self) -> None:
        self.memory.timer.cancel()


# What the pace and the limits keep their counts in.
Counters = Storage


def open_counters(redis_url: str | None, *, namespace: str = "optin-pages") -> Counters:
    if redis_url:
        # wrap_exceptions: every Redis failure arrives as limits.errors.StorageError,
        # which the pace and the limits handle without failing a signup.
        return RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix=f"{namespace}:limits",
            wrap_exceptions=True,
            socket_connect_timeout=2,
            socket_timeout=2,
        )
    return InProcessCounters()


async def close_counters(storage: Counters) -> None:
    # limits has no close(): shut the redis client it made, or the memory storage's
    # expiry timer, so neither outlives the lifespan that made them.
    if isinstance(storage, InProcessCounters):
        storage.close()
        return
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    if client is not None:
        await client.aclose()
    timer = getattr(storage, "timer", None)
    if isinstance(timer, asyncio.Task):
        timer.cancel()
