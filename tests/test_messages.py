"""The words a visitor reads (app.web.messages): here, the wait a limit tells."""

from __future__ import annotations

import pytest

from app.problems import Problem
from app.throttle import TooManyRequests
from app.web.messages import say


@pytest.mark.parametrize(
    ("seconds", "wait"),
    [
        (1, "Try again in 1 second."),
        (45, "Try again in 45 seconds."),
        (60, "Try again in 1 minute."),
        (179, "Try again in 3 minutes."),
        (3300, "Try again in 55 minutes."),
        (3301, "Try again in 1 hour."),
        (3601, "Try again in 2 hours."),
        (86_399, "Try again in 24 hours."),
    ],
)
def test_a_limit_says_the_real_wait_rounded_up(seconds: int, wait: str) -> None:
    assert say(Problem(None, "limit.ip", {"seconds": seconds})) == (
        f"We've had a lot of signups from this connection just now. {wait}"
    )


@pytest.mark.parametrize(
    ("scope", "field", "start"),
    [
        ("address:ip", None, "We've had a lot of signups from this connection"),
        ("number:number", "phone", "This number was signed up several times"),
        ("number:prefix", "phone", "We've had a lot of signups for numbers like this one"),
        ("number:campaign", None, "This signup has taken all the signups it can for now"),
    ],
)
def test_each_limit_is_told_where_it_belongs(scope: str, field: str | None, start: str) -> None:
    problem = TooManyRequests(scope, 180).problem
    assert problem.field == field
    assert say(problem).startswith(start) and say(problem).endswith("Try again in 3 minutes.")
