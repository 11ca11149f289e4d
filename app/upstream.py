"""ProTexting: the one paid third party this service calls.

`ProTexting.opt_in()` makes the opt-in call, `ProTexting.opt_out()` the opt-out call
(`POST /contacts/opt-out`); each answers with one of three outcomes, never an
exception, whatever comes back (or does not):

    Outcome
     +-- Accepted      201: ProTexting will text the number (`verified` False when its
                       body is not one of the documented ones: it may text all the same)
     +-- Rejected      422: ProTexting refused; its messages, per field. Either the
                       number is at fault (`about_number`), or the business's set-up
                       is, or the body is not the documented JSON (`unreadable`)
     +-- Unavailable   anything else: timeout, refused connection, 401/403, 429, 5xx;
                       and 200, other 2xx, 3xx, which ProTexting never sends
                       (`misconfigured`: the URL is wrong)

Each call has a total deadline (connect, send, headers, body), and at most
`MAX_ANSWER_BYTES` of an answer is read, decoded.

The access token travels in the query string (the provider's only documented way).
It is added by `_AccessTokenTransport` at the last moment, to a copy of the request,
so the request this module builds, logs and finds on responses and exceptions never
carries it. Nothing in this module formats a signed URL into a message, and no
exception from below that transport travels up with the signed URL in it.

Requests go out through aiohttp (`httpx_aiohttp.AiohttpTransport`) behind httpx's
transport API: the same httpx Request and Response types and test seam
(`httpx.MockTransport`, `httpx.ASGITransport`), at about a quarter of the CPU per call
of httpx's own pure-Python connection pool (README, Performance). `ProTexting` calls
the transport itself, not through `httpx.AsyncClient`: the client's cookie jar,
redirect and auth loops, which a call to ProTexting never needs (it follows no
redirect, keeps no cookie), cost about a tenth of a signup's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

logger = logging.getLogger(__name__)

OPT_IN_PATH = "/contacts-opt-in/create"
OPT_OUT_PATH = "/contacts/opt-out"

# Explicit timeouts: a signup page must answer promptly even when ProTexting hangs.
DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
# Those are per step (a byte every few seconds never trips them); this bounds the
# whole call, so the lease on a signup outlives the call made for it
# (OPTIN_UPSTREAM_DEADLINE_SECONDS).
DEFAULT_DEADLINE = 10.0
# ProTexting's answers are a few hundred bytes; a bigger one is not one of them, and
# reading it whole would hold it in memory (a 300 MB body took the process to 678 MB).
MAX_ANSWER_BYTES = 1024 * 1024
# The longest pause an X-Rate-Limit-Reset may ask for: a signup page waiting a day on a
# header's say-so is worse than one 429 an hour.
MAX_RESET_SECONDS = 3600.0

# Object-shaped 422s carry a provider code but no field [error-codes]. These are about
# the number itself (opted out, generally opted out, generally blocked): the person can
# use another. Every other code is about the business's set-up.
OPTED_OUT = 1
GENERAL_OPT_OUT = 1000
GENERAL_BLOCK = 1001
_PHONE_ERROR_CODES = frozenset({OPTED_OUT, GENERAL_OPT_OUT, GENERAL_BLOCK})
PHONE_FIELD = "PhoneNumber"
# What the other documented codes say of the set-up, for the operator: a short name
# (a bounded label for logs and metrics) and the words.
SETUP_CODES: dict[int, tuple[str, str]] = {
    2: ("forbidden_words", "forbidden words in the CTA or confirm message"),
    3: ("other", "an empty MMS"),
    4: ("other", "an unprocessable entity"),
    5: ("credit", "not enough credit on the ProTexting account"),
    6: ("api_not_activated", "the ProTexting API application is not activated"),
    7: ("ip_not_allowed", "this server's IP address is not allowed by ProTexting"),
    8: ("other", "the same content only once per 10 seconds"),
    301: ("sender_blocked", "the sender number is temporarily blocked"),
    302: ("sender_blocked", "the sender number is permanently blocked"),
}
# ProTexting's own words in a log line are cut here: they are for the record, whole.
_QUOTED_CHARACTERS = 200


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
class OptOut:
    """One opt-out call: the number (E.164 digits). ProTexting opts it out of the whole
    account, every group and keyword, not of one campaign."""

    phone: str

    def body(self) -> dict[str, object]:
        return {"PhoneNumber": self.phone}


_RATE_LIMIT_HEADERS = frozenset({b"x-rate-limit-limit", b"x-rate-limit-remaining", b"x-rate-limit-reset"})


@dataclass(frozen=True, slots=True)
class RateLimit:
    """ProTexting's X-Rate-Limit-* headers; `reset` is seconds until the full allowance."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateLimit:
        # One pass over the raw headers: each lookup by name would decode them all again.
        found: dict[bytes, bytes] = {}
        for name, value in headers.raw:
            name = name.lower()
            if name in _RATE_LIMIT_HEADERS:
                found.setdefault(name, value)

        def number(name: bytes) -> float | None:
            try:
                value = float(found[name])
            except (KeyError, ValueError):
                return None
            # inf, nan and negatives count nothing (int(inf) would raise).
            return value if math.isfinite(value) and value >= 0 else None

        limit, remaining, reset = (
            number(b"x-rate-limit-limit"),
            number(b"x-rate-limit-remaining"),
            number(b"x-rate-limit-reset"),
        )
        if reset is not None and reset > MAX_RESET_SECONDS:
            logger.warning("ProTexting's X-Rate-Limit-Reset asks for %.0fs: capped at %.0fs", reset, MAX_RESET_SECONDS)
            reset = MAX_RESET_SECONDS
        return cls(
            limit=None if limit is None else int(limit),
            remaining=None if remaining is None else int(remaining),
            reset=reset,
        )


@dataclass(frozen=True, slots=True)
class FieldError:
    """One of ProTexting's refusals: the field it names (the array shape) or None, its
    message, and its provider code (the object shape) or None."""

    field: str | None
    message: str
    code: int | None = None

    @property
    def opted_out(self) -> bool:
        """ProTexting's word that the number is opted out (codes 1 and 1000)."""
        return self.code in (OPTED_OUT, GENERAL_OPT_OUT)


@dataclass(frozen=True, slots=True)
class Cause:
    """What is wrong with the business's set-up, as one refusal tells it: `kind` a
    short name from a fixed set (group_ids, field, forbidden_words, credit,
    api_not_activated, ip_not_allowed, sender_blocked, other, unreadable), `text` the
    operator's words, ProTexting's quoted."""

    kind: str
    text: str


def _cause(error: FieldError) -> Cause:
    quoted = repr(error.message[:_QUOTED_CHARACTERS])
    if error.field == "GroupIds":
        return Cause("group_ids", f"the campaign's group_ids (GroupIds: {quoted})")
    if error.field is not None:
        return Cause("field", f"the field {error.field[:64]!r} ({quoted})")
    if error.code in SETUP_CODES:
        kind, words = SETUP_CODES[error.code]
        return Cause(kind, f"{words} (code {error.code}: {quoted})")
    return Cause("other", f"code {error.code}: {quoted}" if error.code is not None else quoted)


@dataclass(frozen=True, slots=True)
class Accepted:
    """ProTexting answered 201. `verified` is False when its body is not one of the two
    documented ones (`reason` says why): the text may be on its way all the same, so
    the signup must not be sent again, but nobody should be told it surely was."""

    status: int
    rate_limit: RateLimit = field(default_factory=RateLimit)
    verified: bool = True
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """ProTexting answered 422: sending the same call again gets the same answer.

    Either the number is at fault (`about_number`: a PhoneNumber field, or codes 1,
    1000, 1001), which the person can put right; or the business's set-up is (the
    groups, the messages' words, credit, the account: `causes`), which only the
    business can, after which the call will go through. `unreadable` says why a 422's
    body could not be read (not the documented JSON, cut off, too big); `errors` is
    then empty, and the set-up is presumed at fault: nothing says the number is."""

    errors: tuple[FieldError, ...]
    rate_limit: RateLimit = field(default_factory=RateLimit)
    unreadable: str | None = None

    @property
    def number_errors(self) -> tuple[FieldError, ...]:
        return tuple(e for e in self.errors if e.field == PHONE_FIELD)

    @property
    def about_number(self) -> bool:
        return any(e.field == PHONE_FIELD for e in self.errors)

    @property
    def causes(self) -> tuple[Cause, ...]:
        """What the refusal says is wrong with the set-up (none when only the number is)."""
        if self.unreadable is not None:
            return (Cause("unreadable", f"a 422 that could not be read ({self.unreadable})"),)
        return tuple(_cause(e) for e in self.errors if e.field != PHONE_FIELD)


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

    @property
    def misconfigured(self) -> bool:
        """A success or a redirect other than 201: not ProTexting's opt-in call answering
        (PROTEXTING_API_URL points elsewhere), so no signup can be delivered."""
        return self.status is not None and 200 <= self.status < 400


Outcome = Accepted | Rejected | Unavailable


# A bound on the signed URLs kept: the client calls two endpoints; a caller that asked for
# others (tests) would not make the cache grow without end.
_SIGNED_URLS_KEPT = 16


class _AccessTokenTransport(httpx.AsyncBaseTransport):
    """Adds `access_token` to the URL of a copy of each request, at the last moment."""

    def __init__(self, inner: httpx.AsyncBaseTransport, token: str) -> None:
        self._inner = inner
        self._token = token
        # Each endpoint's signed URL, made once (the client calls two): merging the
        # parameter in parses and encodes the URL again, tens of µs a call. httpx's
        # URLs are immutable.
        self._signed: dict[str, httpx.URL] = {}

    def _sign(self, url: httpx.URL) -> httpx.URL:
        key = str(url)
        signed = self._signed.get(key)
        if signed is None:
            signed = url.copy_merge_params({"access_token": self._token})
            if len(self._signed) < _SIGNED_URLS_KEPT:
                self._signed[key] = signed
        return signed

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Given the request's stream, httpx copies the headers as they are (Host and
        # Content-Length are set already) instead of preparing them again: 4 µs, not 15.
        signed = httpx.Request(
            request.method,
            self._sign(request.url),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        if _is_read(request):
            # The body as bytes, which aiohttp sends as they are (a stream goes through
            # its slower iterable payload). ProTexting's always is.
            signed.read()
        try:
            response = await self._inner.handle_async_request(signed)
        except Exception as exc:
            # The exception, its chain and its `request` may all hold the signed URL:
            # send up a fresh one, with the class name and the unsigned request.
            kind, name = _transport_error(exc)
            raise kind(name, request=request) from None
        # The body is read later, through the layer below: its errors too. The answer
        # names the request as it was given, unsigned.
        response.stream = _ScrubbedStream(response.stream, request)
        response.request = request
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __repr__(self) -> str:
        return "<_AccessTokenTransport>"


def _is_read(request: httpx.Request) -> bool:
    try:
        return request.content is not None
    except httpx.RequestNotRead:
        return False


class _ScrubbedStream(httpx.AsyncByteStream):
    """An answer's body, whose errors go up as `_AccessTokenTransport`'s do."""

    def __init__(self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, request: httpx.Request) -> None:
        assert isinstance(inner, httpx.AsyncByteStream)
        self._inner = inner
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            kind, name = _transport_error(exc)
            raise kind(name, request=self._request) from None

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        except Exception as exc:
            kind, name = _transport_error(exc)
            raise kind(name, request=self._request) from None


def _transport_error(exc: Exception) -> tuple[type[httpx.TransportError], str]:
    """The httpx error to report for `exc`, and the name of what really failed."""
    cause = exc.__cause__
    # httpx_aiohttp reports every aiohttp connection error that is not a timeout as a
    # ConnectTimeout; say what happened, so a refused port reads "could not connect".
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, aiohttp.ServerTimeoutError):
        kind = httpx.ConnectError if isinstance(cause, aiohttp.ClientConnectorError) else httpx.ReadError
        return kind, type(cause).__name__
    # An answer aiohttp could not parse (a bad status line, headers or framing).
    if isinstance(exc, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError, type(exc).__name__
    if isinstance(exc, httpx.TransportError):
        return type(exc), type(exc).__name__
    return httpx.TransportError, type(exc).__name__


def token_transport(*, token: str, transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncBaseTransport:
    """The transport to ProTexting (aiohttp unless given one), adding the access token
    to each request at the last moment; for `ProTexting`."""
    return _AccessTokenTransport(transport if transport is not None else AiohttpTransport(), token)


# Every call's headers: ProTexting answers JSON.
_HEADERS = httpx.Headers({"Accept": "application/json", "User-Agent": "optin-pages"})


def _parse_422(body: object) -> tuple[FieldError, ...] | None:
    """Both documented 422 shapes; None when the body is neither. A code about the
    number files its error under PhoneNumber, as the array shape would."""
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
        # Only an int can be a provider code (a list or an object would not even hash).
        number = code if type(code) is int else None
        name = PHONE_FIELD if number in _PHONE_ERROR_CODES else None
        return (FieldError(field=name, message=body["message"], code=number),)
    return None


def _documented_201(body: object) -> bool:
    """One of the two 201 bodies ProTexting's page shows: the contact, or a message."""
    return isinstance(body, dict) and (isinstance(body.get("message"), str) or "Number" in body or "Id" in body)


_NOT_JSON = object()


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not text, or nested too deep to parse
        return _NOT_JSON


async def _read(response: httpx.Response) -> tuple[bytes, str | None]:
    """The decoded body of `response`; and, when it could not be read whole, why (the
    body is then empty)."""
    chunks: list[bytes] = []
    size = 0
    try:
        # Decoded bytes are counted, so a small gzip bomb stops here too.
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                return b"", "body over 1 MB"
            chunks.append(chunk)
    except httpx.DecodingError:
        return b"", "body could not be decoded"
    except httpx.HTTPError as exc:
        return b"", f"body cut off ({type(exc).__name__})"
    return b"".join(chunks), None


async def _close(response: httpx.Response) -> None:
    # Closing a body left unread drops the connection rather than reusing it.
    with contextlib.suppress(httpx.HTTPError):
        await response.aclose()


class ProTexting:
    """The ProTexting API, over one injected transport (see `token_transport`)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        *,
        base_url: str,
        deadline: float = DEFAULT_DEADLINE,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    ) -> None:
        self._transport = transport
        # Parsed once: httpx parses a URL given as text on every request.
        self._opt_in_url = httpx.URL(base_url.rstrip("/") + OPT_IN_PATH)
        self._opt_out_url = httpx.URL(base_url.rstrip("/") + OPT_OUT_PATH)
        # Each step's timeout (connect, read, ...), as a transport reads it from a request.
        self.timeout = timeout
        self._extensions = {"timeout": timeout.as_dict()}
        # Seconds one call may take in all, from connecting to the last byte read.
        self.deadline = deadline

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def opt_in(self, request: OptIn) -> Outcome:
        return await self._post(self._opt_in_url, request.body())

    async def opt_out(self, request: OptOut) -> Outcome:
        """Opt the number out of the account. A 422 that says the number is opted out
        already (codes 1 and 1000) is what was asked for: Accepted, with that reason."""
        outcome = await self._post(self._opt_out_url, request.body())
        if isinstance(outcome, Rejected) and outcome.errors and all(e.opted_out for e in outcome.errors):
            return Accepted(status=422, rate_limit=outcome.rate_limit, reason="the number was opted out already")
        return outcome

    async def _post(self, url: httpx.URL, body: dict[str, object]) -> Outcome:
        """One call, under the never-loop and deadline rules every call keeps."""
        response: httpx.Response | None = None
        try:
            # One deadline for the whole call: connecting, sending, the answer's head
            # and its body.
            async with asyncio.timeout(self.deadline):
                call = httpx.Request("POST", url, headers=_HEADERS, json=body, extensions=self._extensions)
                response = await self._transport.handle_async_request(call)
                answer, unread = await _read(response)
        except (TimeoutError, httpx.TimeoutException):
            if response is None:
                return Unavailable(reason="timed out")
            # The status came in time: a 201 is still a 201.
            answer, unread = b"", "body not read by the deadline"
        except httpx.TransportError as exc:
            # The class name, never str(exc): some transports put the URL in it.
            return Unavailable(reason=f"could not connect ({type(exc).__name__})")
        finally:
            if response is not None:
                await _close(response)
        # The URL unsigned, as `call` holds it: what a debug log may show.
        logger.debug("ProTexting answered POST %s: HTTP %s", url, response.status_code)
        return _outcome(response.status_code, RateLimit.from_headers(response.headers), answer, unread)


def _outcome(status: int, rate_limit: RateLimit, body: bytes, unread: str | None) -> Outcome:
    """What an answer means, once it has been read as far as it will be."""
    if status == 201:
        # A 201 was sent for this call: whatever its body, ProTexting may be texting.
        if unread is not None:
            return Accepted(status=status, rate_limit=rate_limit, verified=False, reason=unread)
        if not _documented_201(_json(body)):
            return Accepted(status=status, rate_limit=rate_limit, verified=False, reason="body not the documented JSON")
        return Accepted(status=status, rate_limit=rate_limit)
    if status == 422:
        # A refusal all the same, whatever its body: asking again gets it again.
        if unread is not None:
            return Rejected(errors=(), rate_limit=rate_limit, unreadable=unread)
        errors = _parse_422(_json(body))
        if errors is None:
            return Rejected(errors=(), rate_limit=rate_limit, unreadable="not the documented JSON")
        return Rejected(errors=errors, rate_limit=rate_limit)
    if 200 <= status < 400:
        reason = f"HTTP {status}, which ProTexting never answers (check PROTEXTING_API_URL)"
        return Unavailable(reason=reason, status=status, rate_limit=rate_limit)
    return Unavailable(reason=f"HTTP {status}", status=status, rate_limit=rate_limit)
