"""Pacing: the `limits` moving window, in memory and shared through Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from app.pacing import Pacer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def memory_pacer() -> AsyncIterator[Pacer]:
    pacer = Pacer("3 per 1 second")
    yield pacer
    await pacer.close()


async def test_no_more_calls_than_the_rate_allows(memory_pacer: Pacer) -> None:
    assert [await memory_pacer.try_acquire() for _ in range(5)] == [True, True, True, False, False]


async def test_acquire_waits_for_the_next_slot(memory_pacer: Pacer) -> None:
    for _ in range(3):
        assert await memory_pacer.try_acquire()
    started = time.monotonic()
    assert await memory_pacer.acquire(timeout=5)
    # The window is one second: the fourth call had to wait for the first to age out.
    assert time.monotonic() - started > 0.5


async def test_acquire_gives_up_at_its_timeout(memory_pacer: Pacer) -> None:
    for _ in range(3):
        await memory_pacer.try_acquire()
    assert not await memory_pacer.acquire(timeout=0.05)


async def test_a_pause_holds_every_caller_off(memory_pacer: Pacer) -> None:
    await memory_pacer.pause(2)
    assert 0 < await memory_pacer.paused_for() <= 2
    assert not await memory_pacer.try_acquire()
    assert not await memory_pacer.acquire(timeout=0.2)


@pytest.mark.parametrize("seconds", [float("inf"), float("nan"), 1e12])
async def test_a_pause_lasts_an_hour_at_most(memory_pacer: Pacer, seconds: float) -> None:
    await memory_pacer.pause(seconds)
    assert 3500 < await memory_pacer.paused_for() <= 3600


def test_the_rate_setting_is_parsed_by_limits() -> None:
    assert Pacer("60/minute").interval == 1.0
    assert Pacer("5 per 5 seconds").interval == 1.0
    assert Pacer("120/minute").interval == 0.5


async def test_replicas_share_one_window_through_redis(redis_url: str, redis_prefix: str) -> None:
    one = Pacer("3 per 10 seconds", redis_url=redis_url, namespace=redis_prefix)
    two = Pacer("3 per 10 seconds", redis_url=redis_url, namespace=redis_prefix)
    try:
        assert await one.try_acquire()
        assert await two.try_acquire()
        assert await one.try_acquire()
        assert not await two.try_acquire()
        assert not await one.try_acquire()

        await one.pause(5)
        assert await two.paused_for() > 3
    finally:
        await one.close()
        await two.close()
