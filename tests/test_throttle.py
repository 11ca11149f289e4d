"""The abuse limits hold under concurrency: requests in flight together, through the
real Redis that replicas share, pass exactly as many as the limit allows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from limits.aio.storage import Storage

from app.counters import close_counters, open_counters
from app.throttle import Limits, Throttle, TooManyRequests, client_key

pytestmark = pytest.mark.anyio

OFF = Limits(per_ip="", per_number="", per_prefix="", per_campaign="")


@pytest.fixture
async def redis_counters(redis_url: str, redis_prefix: str) -> AsyncIterator[Storage]:
    storage = open_counters(redis_url, namespace=redis_prefix)
    yield storage
    await close_counters(storage)


async def passed(calls: list[Coroutine[Any, Any, None]]) -> tuple[int, int]:
    """(passed, refused) of limit calls made all at once."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(r is None or isinstance(r, TooManyRequests) for r in results), results
    refused = sum(isinstance(r, TooManyRequests) for r in results)
    return len(results) - refused, refused


async def test_sixty_signups_at_once_in_one_block_pass_exactly_the_blocks_limit(redis_counters: Storage) -> None:
    throttle = Throttle(redis_counters, Limits(per_ip="", per_number="", per_prefix="10/hour", per_campaign=""))
    calls = [throttle.signup("JOIN", f"120155501{n:02d}") for n in range(60)]
    assert await passed(calls) == (10, 50)


async def test_a_hundred_at_once_from_one_address_pass_exactly_its_limit(redis_counters: Storage) -> None:
    throttle = Throttle(redis_counters, Limits(per_ip="30/minute", per_number="", per_prefix="", per_campaign=""))
    assert await passed([throttle.client("198.51.100.7") for _ in range(100)]) == (30, 70)
    # Another address has its own allowance.
    await throttle.client("198.51.100.8")


async def test_a_refused_signup_does_not_use_up_the_campaigns_day(redis_counters: Storage) -> None:
    throttle = Throttle(redis_counters, Limits(per_ip="", per_number="1/hour", per_prefix="", per_campaign="3/day"))
    await throttle.signup("JOIN", "12015550100")
    for _ in range(5):
        with pytest.raises(TooManyRequests) as refused:
            await throttle.signup("JOIN", "12015550100")
    assert refused.value.scope == "number:number" and 0 < refused.value.retry_after <= 3600
    # The five refusals of one number left the campaign's allowance to the others.
    await throttle.signup("JOIN", "12015550200")
    await throttle.signup("JOIN", "12015550300")
    with pytest.raises(TooManyRequests, match="campaign"):
        await throttle.signup("JOIN", "12015550400")


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:0db8:0001:0002:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("not an address", "not an address"),
    ],
)
def test_an_ipv6_client_counts_by_its_64(address: str, key: str) -> None:
    assert client_key(address) == key


async def test_addresses_of_one_ipv6_64_share_one_allowance(redis_counters: Storage) -> None:
    throttle = Throttle(redis_counters, Limits(per_ip="3/minute", per_number="", per_prefix="", per_campaign=""))
    for host in ("1", "2", "abcd:5678:9"):
        await throttle.client(f"2001:db8:1:2::{host}")
    with pytest.raises(TooManyRequests):
        await throttle.client("2001:db8:1:2:ffff::")
    await throttle.client("2001:db8:1:3::1")  # the next /64 is someone else


async def test_with_every_limit_off_nothing_is_counted(redis_counters: Storage) -> None:
    throttle = Throttle(redis_counters, OFF)
    assert await passed([throttle.signup("JOIN", "12015550100") for _ in range(20)]) == (20, 0)
