"""The in-process counters: limits' moving windows and expiring counters, kept in
memory, with a clock the tests move by hand."""

from __future__ import annotations

import pytest
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter

from app.counters import InProcessCounters

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
