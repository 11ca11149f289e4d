"""Shared counters: the `limits` storage behind the pace and the abuse limits.

In memory for a single process; in Redis (`OPTIN_REDIS_URL`) when several replicas
must see the same counts. Every key carries the deployment's prefix
(`OPTIN_REDIS_PREFIX`), so deployments can share one Redis.
"""

from __future__ import annotations

import asyncio

from limits.aio.storage import MemoryStorage, RedisStorage, Storage


def open_counters(redis_url: str | None, *, namespace: str = "optin-pages") -> Storage:
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
    return MemoryStorage()


async def close_counters(storage: Storage) -> None:
    # limits has no close(): shut the redis client it made, or the memory storage's
    # expiry timer, so neither outlives the lifespan that made them.
    client = getattr(getattr(storage, "bridge", None), "storage", None)
    if client is not None:
        await client.aclose()
    timer = getattr(storage, "timer", None)
    if isinstance(timer, asyncio.Task):
        timer.cancel()
