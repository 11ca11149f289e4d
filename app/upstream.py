"""ProTexting: the one paid third party this service calls.

`ProTexting.opt_in()` makes the opt-in call and answers with one of three outcomes,
never an exception:

    Outcome
     +-- Accepted      201: ProTexting will text the number
     +-- Rejected      422: ProTexting refused; its messages, per field
     +-- Unavailable   anything else: timeout, refused connection, 401/403, 429, 5xx,
                       a body that is not the documented JSON

The access token travels in the query string (the provider's only documented way).
It is added by `_AccessTokenTransport` *below* httpx's client, so the request object
that httpx logs ("HTTP Request: POST ...") and attaches to responses and exceptions
never carries it. Nothing in this module formats a URL into a message, and no
exception from below that transport travels up with the signed URL in it.

Requests go out through aiohttp (`httpx_aiohttp.AiohttpTransport`) under httpx's
client: the same httpx API and test seam, at about a quarter of the CPU per call of
httpx's own pure-Python connection pool (README, Performance).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

logger = logging.getLogger(__name__)

OPT_IN_PATH = "/contacts-opt-in/create"

# Explicit timeouts: a signup page must answer promptly even when ProTexting hangs.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)

# Object-shaped 422s carry a provider code but no field. These codes are about the
# number itself (opted out, generally opted out, blocked), so they belong beside the
# phone field; every other code is a form-level problem.
_PHONE_ERROR_CODES = frozenset({1, 1000, 1001})
PHONE_FIELD = "PhoneNumber"


@dataclass(frozen=True, slots=True)
class OptIn:
    """One opt-in call: the number (E.164 digits) and what the campaign configures."""

    phone: str
    group_ids: tuple[int, ...]
    cta_message: str | None = None
    confirm_message: str | None = None
    send_cta_message: bool = False

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"PhoneNumber": self.phone, "GroupIds": list(self.group_ids)}
        if self.cta_message:
            body["CTAMessage"] = self.cta_message
        if self.confirm_message:
            body["ConfirmMessage"] = self.confirm_message
        if self.send_cta_message:
            body["SendCTAMessage"] = 1
        return body


@dataclass(frozen=True, slots=True)
class RateLimit:
    """ProTexting's X-Rate-Limit-* headers; `reset` is seconds until the full allowance."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateLimit:
        def number(name: str) -> float | None:
            try:
                value = float(headers[name])
            except (KeyError, ValueError):
                return None
            return value if value >= 0 else None

        limit, remaining = number("X-Rate-Limit-Limit"), number("X-Rate-Limit-Remaining")
        return cls(
            limit=None if limit is None else int(limit),
            remaining=None if remaining is None else int(remaining),
            reset=number("X-Rate-Limit-Reset"),
        )


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str | None
    message: str


@dataclass(frozen=True, slots=True)
class Accepted:
    status: int
    rate_limit: RateLimit = field(default_factory=RateLimit)


@dataclass(frozen=True, slots=True)
class Rejected:
    errors: tuple[FieldError, ...]
    rate_limit: RateLimit = field(default_factory=RateLimit)

    @property
    def phone_messages(self) -> list[str]:
        return [e.message for e in self.errors if e.field == PHONE_FIELD]

    @property
    def form_messages(self) -> list[str]:
        return [e.message for e in self.errors if e.field != PHONE_FIELD]


@dataclass(frozen=True, slots=True)
class Unavailable:
    """ProTexting did not decide: try again later. `reason` is safe to log."""

    reason: str
    status: int | None = None
    rate_limit: RateLimit = field(default_factory=RateLimit)

    @property
    def unauthorized(self) -> bool:
        return self.status in (401, 403)

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


Outcome = Accepted | Rejected | Unavailable


class _AccessTokenTransport(httpx.AsyncBaseTransport):
    """Adds `access_token` to the URL of a copy of each request, at the last moment."""

    def __init__(self, inner: httpx.AsyncBaseTransport, token: str) -> None:
        self._inner = inner
        self._token = token

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        signed = httpx.Request(
            request.method,
            request.url.copy_merge_params({"access_token": self._token}),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        try:
            return await self._inner.handle_async_request(signed)
        except Exception as exc:
            # The exception, its chain and its `request` may all hold the signed URL:
            # send up a fresh one, with the class name and the unsigned request.
            kind, name = _transport_error(exc)
            raise kind(name, request=request) from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __repr__(self) -> str:
        return "<_AccessTokenTransport>"


def _transport_error(exc: Exception) -> tuple[type[httpx.TransportError], str]:
    """The httpx error to report for `exc`, and the name of what really failed."""
    cause = exc.__cause__
    # httpx_aiohttp reports every aiohttp connection error that is not a timeout as a
    # ConnectTimeout; say what happened, so a refused port reads "could not connect".
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, aiohttp.ServerTimeoutError):
        kind = httpx.ConnectError if isinstance(cause, aiohttp.ClientConnectorError) else httpx.ReadError
        return kind, type(cause).__name__
    if isinstance(exc, httpx.TransportError):
        return type(exc), type(exc).__name__
    return httpx.TransportError, type(exc).__name__


def http_client(
    *, token: str, transport: httpx.AsyncBaseTransport | None = None, timeout: httpx.Timeout = DEFAULT_TIMEOUT
) -> httpx.AsyncClient:
    """The AsyncClient for ProTexting, with the token added below httpx's logging."""
    inner = transport if transport is not None else AiohttpTransport()
    return httpx.AsyncClient(
        transport=_AccessTokenTransport(inner, token),
        timeout=timeout,
        headers={"Accept": "application/json", "User-Agent": "optin-pages"},
        follow_redirects=False,
    )


def _parse_422(body: object) -> tuple[FieldError, ...] | None:
    """Both documented 422 shapes; None when the body is neither."""
    if isinstance(body, list):
        errors = []
        for item in body:
            if not isinstance(item, dict) or not isinstance(item.get("message"), str):
                return None
            name = item.get("field")
            errors.append(FieldError(field=name if isinstance(name, str) else None, message=item["message"]))
        return tuple(errors) or None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        name = PHONE_FIELD if code in _PHONE_ERROR_CODES else None
        return (FieldError(field=name, message=body["message"]),)
    return None


class ProTexting:
    """The ProTexting API, around one injected `httpx.AsyncClient` (see `http_client`)."""

    def __init__(self, client: httpx.AsyncClient, *, base_url: str) -> None:
        self._client = client
        self._opt_in_url = base_url.rstrip("/") + OPT_IN_PATH

    async def aclose(self) -> None:
        await self._client.aclose()

    async def opt_in(self, request: OptIn) -> Outcome:
        try:
            response = await self._client.post(self._opt_in_url, json=request.body())
        except httpx.TimeoutException:
            return Unavailable(reason="timed out")
        except httpx.TransportError as exc:
            # The class name, never str(exc): some transports put the URL in it.
            return Unavailable(reason=f"could not connect ({type(exc).__name__})")

        rate_limit = RateLimit.from_headers(response.headers)
        status = response.status_code
        if status in (200, 201):
            return Accepted(status=status, rate_limit=rate_limit)
        if status == 422:
            try:
                errors = _parse_422(response.json())
            except (json.JSONDecodeError, UnicodeDecodeError):
                errors = None
            if errors is not None:
                return Rejected(errors=errors, rate_limit=rate_limit)
            return Unavailable(reason="422 with an undocumented body", status=status, rate_limit=rate_limit)
        return Unavailable(reason=f"HTTP {status}", status=status, rate_limit=rate_limit)
