"""Abuse limits: how often one address, one number, one block of numbers and one
campaign may sign up, so an SMS-pumping bot runs out of road long before the bill does.

Each limit is a `limits` rate string (several with ";", e.g. "30/minute;300/hour"),
kept in a moving window in the shared counters: replicas with Redis share the counts.
An empty string turns a limit off.

Each window is taken with the limiter's `hit`, which checks and counts in one step (in
Redis, one Lua script), and the answer decides: a separate test before the hit would let
every request in flight pass the test before any of them is counted.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from .problems import Problem

logger = logging.getLogger(__name__)

# Numbers that share all but their last two digits sit in one block of a hundred;
# pumping bots walk such blocks (…0100, …0101, …0102).
PREFIX_DROP_DIGITS = 2
# One IPv6 subscriber is usually given a whole /64 and picks addresses in it at will.
IPV6_CLIENT_PREFIX = 64


class TooManyRequests(Exception):
    """A limit is reached; `retry_after` is in whole seconds."""

    def __init__(self, scope: str, retry_after: int) -> None:
        super().__init__(f"{scope} limit reached; retry after {retry_after}s")
        self.scope = scope
        self.retry_after = retry_after

    @property
    def problem(self) -> Problem:
        """For the visitor: which limit (`limit.ip`, `limit.number`, `limit.prefix`,
        `limit.campaign`) and the wait, in `seconds`."""
        kind = self.scope.rpartition(":")[2]
        field = "phone" if kind in {"number", "prefix"} else None
        return Problem(field, f"limit.{kind}", {"seconds": self.retry_after})


def parse_rates(text: str) -> tuple[RateLimitItem, ...]:
    """'' is no limit; otherwise one or more `limits` rate strings joined by ';'."""
    return tuple(parse_many(text)) if text.strip() else ()


@dataclass(frozen=True)
class Limits:
    per_ip: str = "30/minute;300/hour"
    per_number: str = "3/hour;10/day"
    per_prefix: str = "10/hour;50/day"
    per_campaign: str = "20000/day"


class Throttle:
    def __init__(self, storage: Storage, limits: Limits = Limits()) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._per_ip = parse_rates(limits.per_ip)
        self._per_number = parse_rates(limits.per_number)
        self._per_prefix = parse_rates(limits.per_prefix)
        self._per_campaign = parse_rates(limits.per_campaign)

    async def client(self, ip: str | None) -> None:
        """Count one submission from `ip` (any submission, valid or not); an IPv6
        client counts by its /64."""
        if ip:
            await self._take("address", [(self._per_ip, ("ip", client_key(ip)))])

    async def signup(self, campaign: str, phone: str) -> None:
        """Count one valid signup of `phone` (E.164 digits) to `campaign` (its key,
        `app.site.Listing.key`: the same count for /JOIN and /join)."""
        await self._take(
            "number",
            [
                (self._per_number, ("number", phone)),
                (self._per_prefix, ("prefix", phone[:-PREFIX_DROP_DIGITS])),
                (self._per_campaign, ("campaign", campaign)),
            ],
        )

    async def _take(self, scope: str, checks: Sequence[tuple[tuple[RateLimitItem, ...], tuple[str, ...]]]) -> None:
        try:
            await self._hit(scope, checks)
        except StorageError:
            # Redis is down: a person's signup matters more than a limit for a while.
            # The form token, the traps and the number policy still hold.
            logger.error("abuse limits unavailable (shared counters unreachable): %s signup let through", scope)

    async def _hit(self, scope: str, checks: Sequence[tuple[tuple[RateLimitItem, ...], tuple[str, ...]]]) -> None:
        # Narrowest first, and stop at the first refusal: a refused attempt has used up
        # only the windows before it, which are its own number's or block's (or its
        # own address's shorter window), never the campaign's day.
        for items, key in checks:
            for item in items:
                if not await self._limiter.hit(item, *key):
                    stats = await self._limiter.get_window_stats(item, *key)
                    raise TooManyRequests(f"{scope}:{key[0]}", max(1, math.ceil(stats.reset_time - time.time())))


def client_key(ip: str) -> str:
    """What the per-address limit counts by: an IPv4 address itself, an IPv6 one's /64
    (an IPv4-mapped IPv6 address is the IPv4 address it maps)."""
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
