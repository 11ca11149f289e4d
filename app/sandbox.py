"""A fake ProTexting that speaks the documented opt-in contract, and sends no texts.

Used in sandbox mode (no `PROTEXTING_ACCESS_TOKEN`: the app talks to it in-process),
by the tests, and by the benchmarks, where it runs as a real HTTP server on loopback:

    python -m app.sandbox --port 8001 [--token T] [--latency-ms 100] [--rate-limit 60/60]

Numbers with a scripted answer (everything else valid gets 201):

    12015550100  422, array shape, PhoneNumber: not a valid mobile number
    12015550101  422, object shape, code 1: opted out
    12015550102  422, array shape, GroupIds: invalid (the set-up: held)
    12015550103  422, object shape, code 5: not enough credit (the set-up: held)
    12015550104  503: ProTexting is down

A small control API under `/_fake/` lets an out-of-process test read the calls made,
switch the fake down or up, and have it refuse every call with a 422 of the business's
set-up (`refuse`, e.g. "Not enough credit.") until that is fixed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SCRIPTED: dict[str, tuple[int, Any]] = {
    "12015550100": (422, [{"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."}]),
    "12015550101": (
        422,
        {"name": "Unprocessable entity", "message": "Phone number is opted out.", "code": 1, "status": 422},
    ),
    "12015550102": (422, [{"field": "GroupIds", "message": "Group Ids is invalid."}]),
    "12015550103": (
        422,
        {"name": "Unprocessable entity", "message": "Not enough credit.", "code": 5, "status": 422},
    ),
    "12015550104": (
        503,
        {"name": "Service Unavailable", "message": "Service temporarily unavailable.", "code": 0, "status": 503},
    ),
}


@dataclass
class _Bucket:
    """Yii2's RateLimiter as FACTS.md infers it: a leaky bucket refilled continuously."""

    limit: int
    window: float
    allowance: float = -1.0
    stamp: float = field(default_factory=time.monotonic)

    def take(self) -> tuple[bool, int, float]:
        now = time.monotonic()
        if self.allowance < 0:
            self.allowance = float(self.limit)
        self.allowance = min(self.limit, self.allowance + (now - self.stamp) * self.limit / self.window)
        self.stamp = now
        if self.allowance < 1:
            reset = (self.limit - self.allowance) * self.window / self.limit
            return False, 0, reset
        self.allowance -= 1
        reset = (self.limit - self.allowance) * self.window / self.limit
        return True, int(self.allowance), reset


@dataclass
class FakeProTexting:
    """State of one fake: what it was asked, and how it should behave."""

    token: str | None = None
    latency: float = 0.0
    rate_limit: tuple[int, float] | None = None
    down: bool = False
    # A 422 body to answer every valid call with, while set: a set-up ProTexting refuses.
    refuse: Any = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    throttled: int = 0
    # As a long-running server (`python -m app.sandbox`): move the calls it keeps out
    # of the collector's full scans, which over a benchmark's 100,000 calls stall the
    # fake for ~100 ms and would be measured as ProTexting's latency.
    freeze_calls: bool = False
    _bucket: _Bucket | None = None

    def __post_init__(self) -> None:
        if self.rate_limit is not None:
            self._bucket = _Bucket(*self.rate_limit)

    def spend(self, calls: int) -> None:
        """Use up allowance as another client of the same account would."""
        if self._bucket is not None:
            for _ in range(calls):
                self._bucket.take()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/contacts-opt-in/create", self._opt_in, methods=["POST"]),
                Route("/_fake/calls", self._calls, methods=["GET"]),
                Route("/_fake/state", self._state, methods=["POST"]),
            ]
        )

    async def _opt_in(self, request: Request) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        token = request.query_params.get("access_token")
        if not token or (self.token is not None and token != self.token):
            return _error(401, "Unauthorized", "Your request was made with invalid credentials.")
        headers: dict[str, str] = {}
        if self._bucket is not None:
            allowed, remaining, reset = self._bucket.take()
            headers = {
                "X-Rate-Limit-Limit": str(self._bucket.limit),
                "X-Rate-Limit-Remaining": str(remaining),
                "X-Rate-Limit-Reset": str(max(1, round(reset))),
            }
            if not allowed:
                self.throttled += 1
                return _error(429, "Too Many Requests", "Rate limit exceeded.", headers=headers)
        if self.down:
            return _error(503, "Service Unavailable", "Service temporarily unavailable.", headers=headers)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse([{"field": "PhoneNumber", "message": "Phone Number cannot be blank."}], 422, headers)
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Bad Request", "Invalid JSON data in request body.", headers=headers)
        if not isinstance(body, dict):
            return _error(400, "Bad Request", "Invalid JSON data in request body.", headers=headers)

        errors = []
        phone = body.get("PhoneNumber")
        if not isinstance(phone, str) or not phone.isdigit() or not 8 <= len(phone) <= 15:
            errors.append({"field": "PhoneNumber", "message": "Phone Number is invalid."})
        groups = body.get("GroupIds")
        if not isinstance(groups, list) or not groups or not all(type(g) is int for g in groups):
            errors.append({"field": "GroupIds", "message": "Group Ids cannot be blank."})
        if errors:
            return JSONResponse(errors, 422, headers)
        if self.refuse is not None:
            return JSONResponse(self.refuse, 422, headers)

        self.calls.append(body)
        if self.freeze_calls and len(self.calls) % 5000 == 0:
            gc.freeze()
        if phone in SCRIPTED:
            status, payload = SCRIPTED[phone]
            return JSONResponse(payload, status, headers)
        contact: dict[str, object] = {
            "Id": len(self.calls),
            "Number": phone,
            "OptedOut": 0,
            "FirstName": "",
            "LastName": "",
            "GroupIds": groups,
            "CustomFieldIds": [],
        }
        return JSONResponse(contact, 201, headers)

    async def _calls(self, request: Request) -> Response:
        return JSONResponse({"calls": self.calls, "throttled": self.throttled})

    async def _state(self, request: Request) -> Response:
        body = await request.json()
        if "down" in body:
            self.down = bool(body["down"])
        if "refuse" in body:
            self.refuse = body["refuse"]
        return JSONResponse({"down": self.down, "refuse": self.refuse})


def _error(status: int, name: str, message: str, *, headers: dict[str, str] | None = None) -> Response:
    payload = {"name": name, "message": message, "code": 0, "status": status}
    return JSONResponse(payload, status, headers)


def _rate(text: str) -> tuple[int, float]:
    count, _, seconds = text.partition("/")
    return int(count), float(seconds or 60)


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Run the fake ProTexting on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--token", default=None, help="accept only this access token")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rate-limit", type=_rate, default=None, help="COUNT/SECONDS, e.g. 60/60")
    parser.add_argument("--down", action="store_true", help="answer 503 until switched up")
    args = parser.parse_args(argv)
    fake = FakeProTexting(
        token=args.token,
        latency=args.latency_ms / 1000,
        rate_limit=args.rate_limit,
        down=args.down,
        freeze_calls=True,
    )
    uvicorn.run(fake.app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
