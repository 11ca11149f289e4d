"""The in-process counters: limits' moving windows and expiring counters, kept in
memory, with a clock the tests move by hand; and Redis's behind the breaker."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import pytest
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from app.counters import Breaker, InProcessCounters, close_counters, open_counters
from tests.support.blackhole import Relay

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_moving_window_admits_its_limit_and_then_one_more_as_each_hit_ages_out() -> None:
    clock = Clock()
    limiter = MovingWindowRateLimiter(InProcessCounters(clock))
    three_a_minute = parse("3/minute")

    for second in (0, 10, 20):
        clock.now += 10 if second else 0
        assert await limiter.hit(three_a_minute, "number", "12015550123")
    assert not await limiter.hit(three_a_minute, "number", "12015550123")
    assert not await limiter.test(three_a_minute, "number", "12015550123")
    # Another key has its own window.
    assert await limiter.hit(three_a_minute, "number", "12015550124")

    stats = await limiter.get_window_stats(three_a_minute, "number", "12015550123")
    assert stats.remaining == 0
    assert stats.reset_time == pytest.approx(1_000_000.0 + 60)  # when the first hit ages out

    clock.now = 1_000_000.0 + 60.5  # the first hit is out of the window, the others are not
    assert await limiter.test(three_a_minute, "number", "12015550123")
    assert await limiter.hit(three_a_minute, "number", "12015550123")
    assert not await limiter.hit(three_a_minute, "number", "12015550123")


async def test_a_refused_hit_is_not_counted() -> None:
    clock = Clock()
    limiter = MovingWindowRateLimiter(InProcessCounters(clock))
    two_a_second = parse("2/second")
    results = [await limiter.hit(two_a_second, "pace") for _ in range(10)]
    assert results == [True, True] + [False] * 8
    clock.now += 1.01
    assert await limiter.hit(two_a_second, "pace")


async def test_a_counter_keeps_the_expiry_it_was_started_with() -> None:
    clock = Clock()
    counters = InProcessCounters(clock)
    assert await counters.incr("paused", 30) == 1
    clock.now += 10
    assert await counters.incr("paused", 5) == 2  # the first pause of an overlap wins
    assert await counters.get("paused") == 2
    assert await counters.get_expiry("paused") == pytest.approx(1_000_000.0 + 30)
    clock.now += 20.5
    assert await counters.get("paused") == 0
    assert await counters.get_expiry("paused") == clock.now


async def test_keys_nobody_uses_any_more_are_forgotten() -> None:
    clock = Clock()
    counters = InProcessCounters(clock)
    limiter = MovingWindowRateLimiter(counters)
    per_hour = parse("3/hour")
    for n in range(1000):
        await limiter.hit(per_hour, "number", f"1201555{n:04d}")
    await counters.incr("paused", 30)
    assert len(counters) == 1001

    clock.now += 1800  # half an hour: the windows still hold their hits
    await limiter.hit(per_hour, "number", "12015559999")
    assert len(counters) == 1001  # the counter expired and went; one new window

    clock.now += 1800 + counters.SWEEP_SECONDS
    await limiter.hit(per_hour, "number", "12015559999")
    assert len(counters) == 1  # only the window used within the hour is left
    assert await limiter.test(per_hour, "number", "12015550000")  # a forgotten key starts afresh


async def test_cleared_keys_start_afresh_and_a_window_counts_every_hit_it_holds() -> None:
    # Windows of one hit and of several are held differently (app.counters): both count.
    clock = Clock()
    counters = InProcessCounters(clock)
    limiter = MovingWindowRateLimiter(counters)
    per_hour, per_day = parse("3/hour"), parse("10/day")
    assert await limiter.hit(per_hour, "number", "1")
    assert (await limiter.get_window_stats(per_hour, "number", "1")).remaining == 2
    assert await limiter.hit(per_day, "number", "1", cost=4)
    assert (await limiter.get_window_stats(per_day, "number", "1")).remaining == 6
    clock.now += 5
    assert await limiter.hit(per_hour, "number", "1")
    assert await limiter.hit(per_hour, "number", "1")
    assert not await limiter.hit(per_hour, "number", "1")
    stats = await limiter.get_window_stats(per_hour, "number", "1")
    assert (stats.remaining, stats.reset_time) == (0, pytest.approx(clock.now - 5 + 3600))

    assert await counters.incr("token", 60) == 1
    assert await counters.incr("token", 60) == 2
    await limiter.clear(per_hour, "number", "1")
    await counters.clear("token")
    assert await limiter.hit(per_hour, "number", "1")
    assert (await limiter.get_window_stats(per_day, "number", "1")).remaining == 6  # its own key
    assert await counters.get("token") == 0
    assert await counters.incr("token", 60) == 1


# -- Redis behind the breaker ---------------------------------------------------------


async def test_a_redis_that_stops_answering_is_left_alone_until_a_probe_finds_it_back(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="app.counters")
    clock = Clock()
    server = urlsplit(redis_url)
    per_hour = parse("100/hour")
    with Relay((server.hostname or "127.0.0.1", server.port or 6379)) as relay:
        counters = open_counters(relay.url("redis", "/0"), namespace=redis_prefix, timeout=0.3, clock=clock)
        assert isinstance(counters, Breaker)
        limiter = MovingWindowRateLimiter(counters)
        try:
            assert await limiter.hit(per_hour, "number", "12015550123")
            relay.freeze()
            # Each call waits out its socket timeout, until three in a row have failed.
            for _ in range(3):
                with pytest.raises(StorageError):
                    await limiter.hit(per_hour, "number", "12015550123")
            assert counters.is_open
            asked, connections = counters.calls, relay.connections

            # Open: every call fails at once; Redis is not asked, no connection is made.
            for _ in range(100):
                with pytest.raises(StorageError):
                    await limiter.hit(per_hour, "number", "12015550123")
                with pytest.raises(StorageError):
                    await counters.get("paused")
            assert (counters.calls, relay.connections) == (asked, connections)

            # After the cool-down one probe asks; Redis still does not answer: open again.
            clock.now += 5.1
            with pytest.raises(StorageError):
                await counters.get("paused")
            assert counters.calls == asked + 1 and counters.is_open
            with pytest.raises(StorageError):
                await counters.get("paused")
            assert counters.calls == asked + 1

            # Redis is back: the next probe closes the breaker, and the counts are still there.
            relay.thaw()
            clock.now += 5.1
            assert await counters.get("paused") == 0
            assert not counters.is_open
            stats = await limiter.get_window_stats(per_hour, "number", "12015550123")
            assert stats.remaining == 99
        finally:
            await close_counters(counters)

    # One line when it opened and one when it closed, not one per refused call.
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "app.counters"]
    assert [level for level, _ in said] == ["ERROR", "INFO"], said
    assert "shared counters unreachable" in said[0][1] and "answer again" in said[1][1]
