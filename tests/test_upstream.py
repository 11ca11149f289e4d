"""The ProTexting client: it makes the documented opt-in call and turns every answer,
including no answer at all, into Accepted, Rejected or Unavailable, never an exception."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
from collections.abc import Awaitable, Callable

import httpx
import pytest

from app import upstream
from app.upstream import Accepted, Cause, FieldError, OptIn, ProTexting, RateLimit, Rejected, Unavailable

from .conftest import API_URL, TOKEN, FakeUpstream, answers, closed_port, contact, raises

pytestmark = pytest.mark.anyio

Respond = Callable[[httpx.Request], httpx.Response]

SIGNUP = OptIn(phone="12015550123", group_ids=(7, 9))


async def opt_in(
    respond: Respond | None = None,
    request: OptIn = SIGNUP,
    *,
    base_url: str = API_URL,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[upstream.Outcome, FakeUpstream]:
    fake = FakeUpstream(respond) if respond is not None else FakeUpstream()
    if transport is None:
        transport = httpx.MockTransport(fake)
    async with upstream.token_transport(token=TOKEN, transport=transport) as signed:
        outcome = await ProTexting(signed, base_url=base_url).opt_in(request)
    return outcome, fake


# --- the request -----------------------------------------------------------------------


async def test_the_request_follows_the_documented_contract() -> None:
    _, fake = await opt_in()

    [request] = fake.requests
    assert request.method == "POST"
    assert request.url.scheme == "https"
    assert request.url.host == "api.protexting.test"
    assert request.url.path == "/v1/contacts-opt-in/create"
    assert dict(request.url.params) == {"access_token": TOKEN}
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"PhoneNumber": "12015550123", "GroupIds": [7, 9]}


async def test_a_trailing_slash_on_the_base_url_is_harmless() -> None:
    _, fake = await opt_in(base_url=API_URL + "/")

    assert fake.requests[0].url.path == "/v1/contacts-opt-in/create"


async def test_campaign_messages_are_sent_only_when_configured() -> None:
    request = OptIn(
        phone="12015550123",
        group_ids=(2,),
        cta_message="Reply YES to get deals.",
        confirm_message="You're in. Reply STOP to cancel.",
        send_cta_message=True,
    )

    _, fake = await opt_in(request=request)

    assert fake.bodies == [
        {
            "PhoneNumber": "12015550123",
            "GroupIds": [2],
            "CTAMessage": "Reply YES to get deals.",
            "ConfirmMessage": "You're in. Reply STOP to cancel.",
            "SendCTAMessage": 1,
        }
    ]
    # The documented type is int (0/1); JSON true is not the same thing.
    assert type(fake.bodies[0]["SendCTAMessage"]) is int


async def test_only_the_configured_message_is_sent() -> None:
    _, fake = await opt_in(request=OptIn(phone="12015550123", group_ids=(2,), confirm_message="You're in."))

    assert fake.bodies == [{"PhoneNumber": "12015550123", "GroupIds": [2], "ConfirmMessage": "You're in."}]


# --- the answers -----------------------------------------------------------------------


async def test_201_with_the_contact_is_accepted_and_reads_the_rate_limit() -> None:
    headers = {"X-Rate-Limit-Limit": "60", "X-Rate-Limit-Remaining": "59", "X-Rate-Limit-Reset": "1"}

    outcome, _ = await opt_in(answers(201, contact("12015550123", [7, 9]), headers=headers))

    assert outcome == Accepted(status=201, rate_limit=RateLimit(limit=60, remaining=59, reset=1.0))


async def test_201_with_a_message_body_is_accepted() -> None:
    outcome, _ = await opt_in(answers(201, {"message": "Confirmation message successfully sent"}))

    assert isinstance(outcome, Accepted)
    assert outcome.status == 201


async def test_422_array_tells_the_number_from_the_set_up() -> None:
    body = [
        {"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."},
        {"field": "GroupIds", "message": "Group Ids is invalid."},
    ]

    outcome, _ = await opt_in(answers(422, body))

    assert isinstance(outcome, Rejected)
    assert outcome.about_number
    assert [e.message for e in outcome.number_errors] == ["PhoneNumber is not a valid mobile number."]
    assert outcome.causes == (Cause("group_ids", "the campaign's group_ids (GroupIds: 'Group Ids is invalid.')"),)


@pytest.mark.parametrize(
    ("entry", "cause"),
    [
        ({"field": "GroupIds", "message": "Group Ids is invalid."}, "group_ids"),
        ({"field": "CTAMessage", "message": "CTA Message is too long."}, "field"),
        ({"message": "Something is off."}, "other"),
    ],
)
async def test_422_array_entry_about_anything_but_the_number_is_the_set_up(entry: dict[str, str], cause: str) -> None:
    outcome, _ = await opt_in(answers(422, [entry]))

    assert isinstance(outcome, Rejected)
    assert not outcome.about_number
    assert [c.kind for c in outcome.causes] == [cause]
    assert entry["message"] in outcome.causes[0].text


@pytest.mark.parametrize("code", [1, 1000, 1001])
async def test_422_object_about_the_number_is_about_the_number(code: int) -> None:
    body = {"name": "Unprocessable entity", "message": "Phone number is opted out.", "code": code, "status": 422}

    outcome, _ = await opt_in(answers(422, body))

    assert isinstance(outcome, Rejected)
    assert outcome.about_number
    assert outcome.number_errors == (FieldError("PhoneNumber", "Phone number is opted out.", code),)
    assert outcome.causes == ()


@pytest.mark.parametrize(
    ("code", "cause", "words"),
    [
        (2, "forbidden_words", "forbidden words in the CTA or confirm message"),
        (5, "credit", "not enough credit"),
        (6, "api_not_activated", "API application is not activated"),
        (7, "ip_not_allowed", "IP address is not allowed"),
        (302, "sender_blocked", "sender number is permanently blocked"),
        (4, "other", "code 4"),
        (8, "other", "code 8"),
        (99, "other", "code 99"),
        (None, "other", "'Not enough credit.'"),
    ],
)
async def test_422_object_about_anything_else_names_the_set_up_cause(code: int | None, cause: str, words: str) -> None:
    body = {"name": "Unprocessable entity", "message": "Not enough credit.", "code": code, "status": 422}

    outcome, _ = await opt_in(answers(422, body))

    assert isinstance(outcome, Rejected)
    assert not outcome.about_number
    [found] = outcome.causes
    assert found.kind == cause
    assert words in found.text
    assert "'Not enough credit.'" in found.text  # ProTexting's words, quoted for the operator


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(answers(422, text="<html><body>Unprocessable</body></html>"), id="html"),
        pytest.param(answers(422, text="garbage {"), id="garbage"),
        pytest.param(answers(422, text=""), id="empty-body"),
        pytest.param(answers(422, []), id="empty-list"),
        pytest.param(answers(422, ["PhoneNumber is invalid"]), id="list-of-strings"),
        pytest.param(answers(422, [{"field": "PhoneNumber"}]), id="entry-without-message"),
        pytest.param(answers(422, {"name": "Unprocessable entity"}), id="object-without-message"),
        pytest.param(answers(422, "Phone number is opted out."), id="json-string"),
        pytest.param(answers(422, None), id="json-null"),
    ],
)
async def test_422_with_an_undocumented_body_is_a_refusal_we_cannot_read(respond: Respond) -> None:
    # Asking again would get the same 422: not something to retry on a timer. Nothing
    # in it says the number is at fault, so it is the set-up's to look into.
    outcome, _ = await opt_in(respond)

    assert isinstance(outcome, Rejected)
    assert outcome.errors == ()
    assert not outcome.about_number
    assert [c.kind for c in outcome.causes] == ["unreadable"]


@pytest.mark.parametrize("status", [401, 403])
async def test_bad_credentials_are_unavailable_and_flagged_unauthorized(status: int) -> None:
    body = {
        "name": "Unauthorized",
        "message": "Your request was made with invalid credentials.",
        "code": 0,
        "status": status,
    }

    outcome, _ = await opt_in(answers(status, body))

    assert isinstance(outcome, Unavailable)
    assert outcome.status == status
    assert outcome.unauthorized is True
    assert outcome.rate_limited is False


async def test_429_is_unavailable_and_carries_the_rate_limit() -> None:
    headers = {"X-Rate-Limit-Limit": "60", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "42"}
    body = {"name": "Too Many Requests", "message": "Rate limit exceeded.", "code": 0, "status": 429}

    outcome, _ = await opt_in(answers(429, body, headers=headers))

    assert outcome == Unavailable(
        reason="HTTP 429", status=429, rate_limit=RateLimit(limit=60, remaining=0, reset=42.0)
    )
    assert outcome.rate_limited is True
    assert outcome.unauthorized is False


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateLimit()),
        (
            {"X-Rate-Limit-Limit": "1000", "X-Rate-Limit-Remaining": "999", "X-Rate-Limit-Reset": "0.06"},
            RateLimit(1000, 999, 0.06),
        ),
        ({"X-Rate-Limit-Limit": "sixty", "X-Rate-Limit-Remaining": "-1", "X-Rate-Limit-Reset": ""}, RateLimit()),
        ({"X-Rate-Limit-Limit": "inf", "X-Rate-Limit-Remaining": "nan", "X-Rate-Limit-Reset": "-inf"}, RateLimit()),
        (
            {"X-Rate-Limit-Limit": "1e12", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "30"},
            RateLimit(10**12, 0, 30.0),
        ),
    ],
)
def test_rate_limit_headers_are_read_defensively(headers: dict[str, str], expected: RateLimit) -> None:
    assert RateLimit.from_headers(httpx.Headers(headers)) == expected


@pytest.mark.parametrize("reset", ["1e12", "inf", "3601"])
def test_a_reset_longer_than_an_hour_is_capped_at_an_hour_and_logged(
    reset: str, caplog: pytest.LogCaptureFixture
) -> None:
    limits = RateLimit.from_headers(httpx.Headers({"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": reset}))

    if reset == "inf":
        assert limits.reset is None  # not a number of seconds: no pause asked for
    else:
        assert limits.reset == upstream.MAX_RESET_SECONDS == 3600
        [record] = [r for r in caplog.records if r.name == "app.upstream"]
        assert record.levelname == "WARNING" and "capped at 3600s" in record.getMessage()


@pytest.mark.parametrize("status", [500, 502, 503, 504, 400, 404])
async def test_other_statuses_are_unavailable(status: int) -> None:
    outcome, _ = await opt_in(answers(status, {"name": "Error", "message": "nope", "code": 0, "status": status}))

    assert isinstance(outcome, Unavailable)
    assert outcome.status == status
    assert outcome.reason == f"HTTP {status}"
    assert not outcome.unauthorized
    assert not outcome.rate_limited
    assert not outcome.misconfigured


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(answers(200, text=""), id="200-empty"),
        pytest.param(answers(200, contact("12015550123", [7, 9])), id="200-contact"),
        pytest.param(answers(204, text=""), id="204"),
        pytest.param(answers(202, {"message": "Accepted"}), id="202"),
        pytest.param(answers(301, text="", headers={"Location": "https://elsewhere.example/"}), id="301"),
        pytest.param(answers(302, text=""), id="302"),
    ],
)
async def test_a_success_other_than_201_is_a_set_up_error_not_a_delivery(respond: Respond) -> None:
    # ProTexting answers an opt-in 201, 422 or an error: a 200 (say, from a web server
    # at a wrong PROTEXTING_API_URL) says nothing about the signup.
    outcome, fake = await opt_in(respond)

    assert isinstance(outcome, Unavailable)
    assert outcome.misconfigured is True
    assert len(fake.requests) == 1  # a redirect is not followed, to its Location or anywhere
    assert "PROTEXTING_API_URL" in outcome.reason
    assert not outcome.unauthorized and not outcome.rate_limited


@pytest.mark.parametrize(
    ("respond", "reason"),
    [
        pytest.param(
            answers(201, text="<html><body>Welcome to nginx!</body></html>"), "body not the documented JSON", id="html"
        ),
        pytest.param(answers(201, text=""), "body not the documented JSON", id="empty"),
        pytest.param(answers(201, [1, 2]), "body not the documented JSON", id="json-list"),
        pytest.param(answers(201, {"ok": True}), "body not the documented JSON", id="json-other-object"),
    ],
)
async def test_a_201_whose_body_cannot_be_checked_is_accepted_unverified(respond: Respond, reason: str) -> None:
    # The 201 was sent for this call: ProTexting may be texting the number, so it must
    # not be sent again; but nobody may be told it surely was.
    outcome, _ = await opt_in(respond)

    assert outcome == Accepted(status=201, verified=False, reason=reason)


@pytest.mark.parametrize("code", [[1], {"n": 1}, "1", 1.5, True, None])
async def test_422_object_with_a_code_of_any_json_type_is_not_about_the_number(code: object) -> None:
    body = {"name": "Unprocessable entity", "message": "Phone number is opted out.", "code": code, "status": 422}

    outcome, _ = await opt_in(answers(422, body))

    assert isinstance(outcome, Rejected)
    assert not outcome.about_number
    assert outcome.errors == (FieldError(None, "Phone number is opted out."),)


@pytest.mark.parametrize("status", [201, 422])
async def test_a_json_array_nested_100000_deep_is_an_outcome(status: int) -> None:
    deep = "[" * 100_000 + "]" * 100_000

    outcome, _ = await opt_in(answers(status, text=deep))

    assert outcome in (
        Accepted(status=201, verified=False, reason="body not the documented JSON"),
        Rejected(errors=(), unreadable="not the documented JSON"),
    )


async def test_500_with_an_html_body_is_unavailable() -> None:
    outcome, _ = await opt_in(answers(500, text="<h1>Internal Server Error</h1>"))

    assert isinstance(outcome, Unavailable)
    assert outcome.status == 500


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ReadTimeout, "timed out"),
        (httpx.ConnectTimeout, "timed out"),
        (httpx.PoolTimeout, "timed out"),
        (httpx.ConnectError, "could not connect (ConnectError)"),
        (httpx.ReadError, "could not connect (ReadError)"),
        (httpx.RemoteProtocolError, "could not connect (RemoteProtocolError)"),
    ],
)
async def test_transport_failures_are_unavailable_not_exceptions(
    error: type[httpx.TransportError], reason: str
) -> None:
    outcome, fake = await opt_in(raises(error))

    assert outcome == Unavailable(reason=reason)
    assert outcome.status is None
    assert len(fake.requests) == 1


async def test_a_refused_connection_on_loopback_is_unavailable() -> None:
    # The default network layer (aiohttp below httpx), on a real port nobody listens on.
    async with upstream.token_transport(token=TOKEN) as signed:
        outcome = await ProTexting(signed, base_url=f"http://127.0.0.1:{closed_port()}/v1").opt_in(SIGNUP)

    assert outcome == Unavailable(reason="could not connect (ConnectError)")


async def _opt_in_over_loopback(
    on_request: Callable[[asyncio.StreamWriter], Awaitable[None]],
    timeout: httpx.Timeout = upstream.DEFAULT_TIMEOUT,
    *,
    deadline: float = upstream.DEFAULT_DEADLINE,
) -> upstream.Outcome:
    """One opt-in call through the default client to a real server on loopback that
    answers each request with `on_request`."""
    handlers: list[asyncio.Task[None]] = []

    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            await on_request(writer)
        finally:
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await respond(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with upstream.token_transport(token=TOKEN) as signed:
            return await ProTexting(
                signed, base_url=f"http://127.0.0.1:{port}/v1", deadline=deadline, timeout=timeout
            ).opt_in(SIGNUP)
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_a_server_that_never_answers_times_out_on_loopback() -> None:
    async def hang(writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # held open until the test's server shuts down

    outcome = await _opt_in_over_loopback(hang, timeout=httpx.Timeout(0.3))

    assert outcome == Unavailable(reason="timed out")


async def test_a_server_that_hangs_up_without_answering_is_unavailable_on_loopback() -> None:
    async def hang_up(writer: asyncio.StreamWriter) -> None:
        pass  # the connection is closed without a word

    outcome = await _opt_in_over_loopback(hang_up)

    assert outcome == Unavailable(reason="could not connect (ReadError)")


async def test_a_real_201_over_loopback_is_accepted() -> None:
    async def created(writer: asyncio.StreamWriter) -> None:
        body = json.dumps(contact(SIGNUP.phone, list(SIGNUP.group_ids))).encode()
        head = f"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nX-Rate-Limit-Remaining: 7\r\n\r\n"
        writer.write(head.encode() + body)
        await writer.drain()

    outcome = await _opt_in_over_loopback(created)

    assert isinstance(outcome, Accepted)
    assert outcome.rate_limit.remaining == 7


def _answer(raw: bytes) -> Callable[[asyncio.StreamWriter], Awaitable[None]]:
    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return write


async def test_a_201_with_a_body_that_is_not_gzip_is_accepted_unverified_on_loopback() -> None:
    raw = b"HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\nContent-Length: 15\r\n\r\nnot gzip at all"

    outcome = await _opt_in_over_loopback(_answer(raw))

    assert outcome == Accepted(status=201, verified=False, reason="body could not be decoded")


async def test_a_gzip_bomb_is_read_no_further_than_1_mb_decoded() -> None:
    # A documented refusal, then 64 MB of spaces: 64 KB on the wire. Reading stops at
    # 1 MB decoded, so it is not taken as a refusal of the number (nor held in memory).
    refusal = json.dumps([{"field": "PhoneNumber", "message": "Not a mobile number."}]).encode()
    bomb = gzip.compress(refusal + b" " * (64 * 1024 * 1024))
    head = f"HTTP/1.1 422 Unprocessable\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n"

    outcome = await _opt_in_over_loopback(_answer(head.encode() + bomb))

    assert outcome == Rejected(errors=(), unreadable="body over 1 MB")


async def test_a_300_mb_answer_is_not_read_past_1_mb() -> None:
    size = 300 * 1024 * 1024
    sent = 0

    async def huge(writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        writer.write(f"HTTP/1.1 201 Created\r\nContent-Length: {size}\r\n\r\n".encode())
        chunk = b"x" * 65536
        while sent < size:  # as fast as the client reads it
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)

    outcome = await _opt_in_over_loopback(huge)

    assert outcome == Accepted(status=201, verified=False, reason="body over 1 MB")
    # By the answer, the server got rid of 1 MB and what the sockets buffer, no more.
    assert sent < 64 * 1024 * 1024


async def _slow_network(seconds: float) -> None:
    """The gap before a dripping server's next byte: the server's own behaviour, not a
    test waiting for the code (the handler runs until the test's server shuts down)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)


async def test_a_provider_that_drips_a_byte_at_a_time_ends_at_the_deadline() -> None:
    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 1000\r\n\r\n")
        while True:  # a byte every 50 ms never trips a per-read timeout of 5 s
            writer.write(b"x")
            await writer.drain()
            await _slow_network(0.05)

    started = asyncio.get_running_loop().time()
    outcome = await _opt_in_over_loopback(drip, deadline=0.3)

    assert outcome == Unavailable(reason="HTTP 503", status=503)
    assert asyncio.get_running_loop().time() - started < 2


async def test_a_201_whose_body_drips_past_the_deadline_is_accepted_unverified() -> None:
    async def drip(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 1000\r\n\r\n{")
        while True:
            writer.write(b" ")
            await writer.drain()
            await _slow_network(0.05)

    outcome = await _opt_in_over_loopback(drip, deadline=0.3)

    # ProTexting said 201 for this call: it must not be sent again.
    assert outcome == Accepted(status=201, verified=False, reason="body not read by the deadline")


async def test_a_provider_that_never_answers_ends_at_the_deadline_whatever_the_step_timeouts() -> None:
    async def hang(writer: asyncio.StreamWriter) -> None:
        await asyncio.Event().wait()  # held open until the test's server shuts down

    started = asyncio.get_running_loop().time()
    outcome = await _opt_in_over_loopback(hang, httpx.Timeout(60.0), deadline=0.3)

    assert outcome == Unavailable(reason="timed out")
    assert asyncio.get_running_loop().time() - started < 2


async def test_the_default_client_has_explicit_timeouts() -> None:
    async with upstream.token_transport(token=TOKEN) as transport:
        protexting = ProTexting(transport, base_url=API_URL)
        assert protexting.timeout == upstream.DEFAULT_TIMEOUT
        assert protexting.timeout.connect is not None and protexting.timeout.connect <= 5
        assert protexting.timeout.read is not None and protexting.timeout.read <= 10
