"""Time that passes only when a test says so.

clock = Clock()
use_clock(client, clock)     # the app's form tokens and fill-time trap run on it
clock.advance(3)             # "a person took three seconds to type their number"
"""

from __future__ import annotations

import time
from typing import Any


class Clock:
    """Epoch seconds, starting at the real time, that move only by `advance`."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def use_clock(client: Any, clock: Clock) -> Clock:
    """Run an in-process app's form tokens (issue, expiry, fill time) on `clock`."""
    client.app.state.resources.guard.tokens.clock = clock
    return clock
