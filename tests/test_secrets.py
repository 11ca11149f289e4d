"""The access token goes to ProTexting and nowhere else: not into a page, a header, a
log line at any level, the console, or an outcome's repr, whatever ProTexting answers."""

from __future__ import annotations

import io
import json
import logging
import threading
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import upstream
from app.logs import JsonFormatter
from app.upstream import Accepted, OptIn, ProTexting, Rejected, Unavailable
from tests.support.campaigns import write_campaigns
from tests.support.servers import Server, app_server, calls, fake_protexting, wait_until
from tests.support.visitor import Visitor, submit

from .conftest import API_URL, TOKEN, FakeUpstream, MakeClient, answers, closed_port, contact, raises

Respond = Callable[[httpx.Request], httpx.Response]

PHONE = "(201) 555-0123"

FLOWS: dict[str, Respond] = {
    "201 contact": answers(201, contact("12015550123", [7, 9]), headers={"X-Rate-Limit-Limit": "60"}),
    "201 message": answers(201, {"message": "Confirmation message successfully sent"}),
    "422 array": answers(422, [{"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."}]),
    "422 object code 1": answers(
        422, {"name": "Unprocessable entity", "message": "Phone number is opted out.", "code": 1, "status": 422}
    ),
    "422 object code 5": answers(
        422, {"name": "Unprocessable entity", "message": "Not enough credit.", "code": 5, "status": 422}
    ),
    "422 html": answers(422, text="<html>Unprocessable</html>"),
    "read timeout": raises(httpx.ReadTimeout),
    "connect timeout": raises(httpx.ConnectTimeout),
    "connect error": raises(httpx.ConnectError),
    "500": answers(500, text="<h1>Internal Server Error</h1>"),
    "503": answers(
        503, {"name": "Service Unavailable", "message": "Service temporarily unavailable.", "code": 0, "status": 503}
    ),
    "401": answers(
        401,
        {
            "name": "Unauthorized",
            "message": "Your request was made with invalid credentials.",
            "code": 0,
            "status": 401,
        },
    ),
    "403": answers(403, {"name": "Forbidden", "message": "Forbidden.", "code": 0, "status": 403}),
    "429": answers(
        429,
        {"message": "Rate limit exceeded."},
        headers={"X-Rate-Limit-Limit": "60", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "30"},
    ),
}


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every logger at DEBUG, those of httpx and of aiohttp below it included."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "aiohttp", "httpx_aiohttp", "app", "uvicorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_no_token(where: str, text: str) -> None:
    assert TOKEN not in text, f"the access token leaked into {where}"


def assert_logs_and_console_clean(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    assert_no_token("the log", caplog.text)
    for record in caplog.records:
        assert_no_token(f"log record {record.name}", record.getMessage())
        assert_no_token(f"log record {record.name} (raw)", repr(record.__dict__))
    captured = capsys.readouterr()
    assert_no_token("stdout", captured.out)
    assert_no_token("stderr", captured.err)


def assert_sent(fake: FakeUpstream) -> None:
    """The token did go where it belongs: ProTexting's access_token query parameter."""
    assert fake.requests, "ProTexting was not called"
    for request in fake.requests:
        assert request.url.params["access_token"] == TOKEN


class _Recorder(BaseHTTPRequestHandler):
    """A real HTTP server answering like ProTexting, so httpx and httpcore run for real."""

    paths: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        body = json.dumps(contact("12015550123", [7, 9])).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the token; this stand-in for ProTexting must not print it.
        pass


@pytest.fixture
def loopback_protexting() -> Iterator[tuple[str, list[str]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.paths = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.paths  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_pages_never_show_or_log_the_token(
    clean_env: Path,
    make_client: MakeClient,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    loopback_protexting: tuple[str, list[str]],
) -> None:
    responses: list[httpx.Response] = []
    fakes: list[FakeUpstream] = []

    for respond in FLOWS.values():
        fake = FakeUpstream(respond)
        fakes.append(fake)
        client = make_client(handler=fake)
        responses.append(submit(client, "/join", PHONE))
        responses.append(submit(client, "/join", "not a number"))
        responses.append(client.get("/join"))
        responses.append(client.get("/join/thanks"))
        responses.append(client.get("/no-such-campaign"))

    # The real network: a refused connection, and a real server that says 201.
    refused = make_client(handler=None, api_url=f"http://127.0.0.1:{closed_port()}/v1")
    responses.append(submit(refused, "/join", PHONE))
    api_url, paths = loopback_protexting
    real = make_client(handler=None, api_url=api_url)
    responses.append(submit(real, "/join", PHONE))

    for response in responses:
        where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
        assert response.status_code < 500, where
        assert_no_token(f"the page ({where})", response.text)
        for name, value in response.headers.multi_items():
            assert_no_token(f"header {name} ({where})", f"{name}: {value}")
    assert_logs_and_console_clean(debug_logs, capsys)
    # Nor is it kept with the consent records (WAL files included).
    databases = [path for path in clean_env.iterdir() if ".db" in path.name]
    assert len(databases) >= len(FLOWS)
    for path in databases:
        assert TOKEN.encode() not in path.read_bytes(), f"the access token is stored in {path.name}"

    # The test watched what it meant to watch: ProTexting got the token every time...
    for fake in fakes:
        assert_sent(fake)
    assert len(paths) == 1 and f"access_token={TOKEN}" in paths[0]
    assert responses[-1].status_code == 303
    # ...and the loggers that could have leaked it did write at DEBUG.
    loggers = {record.name for record in debug_logs.records}
    assert "httpx" in loggers
    assert logging.getLogger("aiohttp.client").isEnabledFor(logging.DEBUG)
    app_messages = [r.getMessage() for r in debug_logs.records if r.name.startswith("app.")]
    assert any("ProTexting" in message and "unavailable" in message for message in app_messages)


@pytest.mark.anyio
async def test_outcomes_never_carry_the_token(
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    loopback_protexting: tuple[str, list[str]],
) -> None:
    signup = OptIn(phone="12015550123", group_ids=(7, 9), cta_message="Reply YES.", send_cta_message=True)
    outcomes: list[upstream.Outcome] = []
    fakes: list[FakeUpstream] = []

    for respond in FLOWS.values():
        fake = FakeUpstream(respond)
        fakes.append(fake)
        async with upstream.token_transport(token=TOKEN, transport=httpx.MockTransport(fake)) as signed:
            outcomes.append(await ProTexting(signed, base_url=API_URL).opt_in(signup))

    # The real connection code below httpx: a refused port, then a real server.
    api_url, paths = loopback_protexting
    for base_url in (f"http://127.0.0.1:{closed_port()}/v1", api_url):
        async with upstream.token_transport(token=TOKEN) as signed:
            outcomes.append(await ProTexting(signed, base_url=base_url).opt_in(signup))

    for outcome in outcomes:
        assert_no_token(f"repr({type(outcome).__name__})", repr(outcome))
        assert_no_token(f"str({type(outcome).__name__})", str(outcome))
    assert_logs_and_console_clean(debug_logs, capsys)

    for fake in fakes:
        assert_sent(fake)
    assert len(paths) == 1 and f"access_token={TOKEN}" in paths[0]
    kinds = [type(outcome) for outcome in outcomes]
    assert kinds.count(Accepted) == 3 and kinds.count(Rejected) == 4 and Unavailable in kinds
    assert outcomes[-2] == Unavailable(reason="could not connect (ConnectError)")


@pytest.mark.anyio
async def test_the_request_httpx_reports_carries_no_token(debug_logs: pytest.LogCaptureFixture) -> None:
    # httpx hangs the request on the response and on exceptions; code that logs either
    # (an error handler, a debug line) must not find the token there.
    fake = FakeUpstream()
    request = httpx.Request(
        "POST", API_URL + upstream.OPT_IN_PATH, json={"PhoneNumber": "12015550123", "GroupIds": [1]}
    )

    async with upstream.token_transport(token=TOKEN, transport=httpx.MockTransport(fake)) as transport:
        response = await transport.handle_async_request(request)
        await response.aread()
        outcome = await ProTexting(transport, base_url=API_URL).opt_in(OptIn(phone="12015550123", group_ids=(1,)))

    assert response.status_code == 201 and isinstance(outcome, Accepted)
    assert_sent(fake)
    assert response.request is request
    assert_no_token("response.request.url", str(response.request.url))
    assert_no_token("the transport's repr", repr(transport))
    assert f"ProTexting answered POST {API_URL}{upstream.OPT_IN_PATH}: HTTP 201" in debug_logs.text  # unsigned
    assert_no_token("the log", debug_logs.text)


def test_the_json_api_and_the_worker_never_show_or_log_the_token(
    make_client: MakeClient,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    answers_: list[httpx.Response] = [httpx.Response(503, json={"message": "down"})]

    def flaky(request: httpx.Request) -> httpx.Response:
        # Down for the first call, then up: the worker delivers what the request could not.
        if answers_:
            return answers_.pop()
        return httpx.Response(201, json=contact("12015550123", [7, 9]))

    fake = FakeUpstream(flaky)
    client = make_client(handler=fake)
    info = client.get("/api/v1/campaigns/join")
    answer = client.post("/api/v1/campaigns/join/opt-ins", json={"phone": PHONE, "token": info.json()["token"]})
    assert answer.status_code == 202

    delivery = client.app.state.resources.delivery

    async def deliver_now() -> None:
        from sqlalchemy import text

        # The 202 goes out once ProTexting has answered, before the attempt stores its
        # outcome: wait for that, or the backoff it writes would undo the skip below.
        await delivery.settled()
        async with delivery.outbox.engine.begin() as conn:  # skip the backoff
            await conn.execute(text("UPDATE jobs SET next_attempt_at = created_at"))
        await delivery.drain()

    client.portal.call(deliver_now)
    assert len(fake.requests) == 2  # the inline attempt, then the worker's
    assert_sent(fake)
    for response in (info, answer):
        assert_no_token("the API's answer", response.text)
        for name, value in response.headers.multi_items():
            assert_no_token(f"header {name}", f"{name}: {value}")
    assert_logs_and_console_clean(debug_logs, capsys)
    assert any("delivered" in r.getMessage() for r in debug_logs.records if r.name == "app.delivery")


class _Failing(httpx.AsyncBaseTransport):
    """A network layer that fails with the URL it was given in its message, as some do."""

    def __init__(self, error: type[Exception]) -> None:
        self.error = error
        self.urls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        raise self.error(f"failed: {request.url}")


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError, httpx.ReadTimeout, RuntimeError, OSError])
async def test_a_failure_below_httpx_never_carries_the_token_up(
    error: type[Exception], debug_logs: pytest.LogCaptureFixture
) -> None:
    failing = _Failing(error)
    request = httpx.Request(
        "POST", API_URL + upstream.OPT_IN_PATH, json={"PhoneNumber": "12015550123", "GroupIds": [1]}
    )
    async with upstream.token_transport(token=TOKEN, transport=failing) as transport:
        with pytest.raises(httpx.TransportError) as raised:
            await transport.handle_async_request(request)
        outcome = await ProTexting(transport, base_url=API_URL).opt_in(OptIn(phone="12015550123", group_ids=(1,)))

    assert TOKEN in failing.urls[0]  # the layer below did see the signed URL
    printed = "".join(traceback.format_exception(raised.value))
    assert_no_token("the traceback a handler would log", printed)
    assert_no_token("the exception's request", str(raised.value.request.url))
    assert error.__name__ in str(raised.value)
    assert isinstance(outcome, Unavailable)
    assert_no_token("the outcome", repr(outcome))
    assert_no_token("the log", debug_logs.text)


class _BodyFails(httpx.AsyncBaseTransport):
    """A network layer that answers 201, then fails reading the body with the URL it was
    given in its message."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)

        class Body(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                yield b'{"Id": '
                raise RuntimeError(f"connection to {url} lost")

        return httpx.Response(201, stream=Body(), request=request)


@pytest.mark.anyio
async def test_a_failure_reading_the_body_never_carries_the_token_up(debug_logs: pytest.LogCaptureFixture) -> None:
    request = httpx.Request("POST", API_URL + upstream.OPT_IN_PATH, json={"PhoneNumber": "1", "GroupIds": [1]})
    async with upstream.token_transport(token=TOKEN, transport=_BodyFails()) as transport:
        answer = await transport.handle_async_request(request)
        with pytest.raises(httpx.TransportError) as raised:
            await answer.aread()
        outcome = await ProTexting(transport, base_url=API_URL).opt_in(OptIn(phone="12015550123", group_ids=(1,)))

    assert_no_token("the traceback a handler would log", "".join(traceback.format_exception(raised.value)))
    assert outcome == Accepted(status=201, verified=False, reason="body cut off (TransportError)")
    assert_no_token("the outcome", repr(outcome))
    assert_no_token("the log", debug_logs.text)


# -- JSON logs (OPTIN_LOG_FORMAT=json) ---------------------------------------------------


def _json_lines(where: str, text: str) -> list[dict[str, Any]]:
    """Every line of `text` parsed as the JSON object it must be, the token in none."""
    assert_no_token(where, text)
    parsed = []
    for line in text.splitlines():
        value = json.loads(line)
        assert isinstance(value, dict) and {"time", "level", "logger", "message"} <= value.keys(), line
        parsed.append(value)
    return parsed


@pytest.fixture
def json_debug_logs(debug_logs: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Every logger at DEBUG (as `debug_logs`), written as the JSON lines of
    OPTIN_LOG_FORMAT=json, exceptions' tracebacks included."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(handler)
    try:
        yield lines
    finally:
        logging.getLogger().removeHandler(handler)


def test_json_logs_at_debug_never_carry_the_token(
    make_client: MakeClient,
    json_debug_logs: io.StringIO,
    debug_logs: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    loopback_protexting: tuple[str, list[str]],
) -> None:
    responses: list[httpx.Response] = []
    for respond in FLOWS.values():
        client = make_client(handler=FakeUpstream(respond), log_format="json")
        responses.append(submit(client, "/join", PHONE))
        responses.append(client.get("/readyz"))
    refused = make_client(handler=None, api_url=f"http://127.0.0.1:{closed_port()}/v1", log_format="json")
    responses.append(submit(refused, "/join", PHONE))
    api_url, paths = loopback_protexting
    responses.append(submit(make_client(handler=None, api_url=api_url, log_format="json"), "/join", PHONE))

    for response in responses:
        assert_no_token("a page", response.text)
        assert response.headers["x-request-id"]
    lines = _json_lines("the JSON log", json_debug_logs.getvalue())
    assert_logs_and_console_clean(debug_logs, capsys)
    # It watched what could leak: httpx's request lines at DEBUG, each signup's outcome
    # with its request's id, and the signed URL did reach ProTexting.
    assert any(line["logger"] == "httpx" for line in lines)
    outcomes = [line for line in lines if line["logger"] == "app.delivery" and "outcome" in line]
    assert outcomes and all(line["campaign"] == "JOIN" and line["request_id"] for line in outcomes)
    assert len(paths) == 1 and f"access_token={TOKEN}" in paths[0]


def test_optin_serve_with_json_logs_at_debug_never_writes_the_token(tmp_path: Path) -> None:
    campaigns = write_campaigns(tmp_path)
    env = {"OPTIN_LOG_FORMAT": "json", "OPTIN_MIN_FILL_SECONDS": "0"}
    with (
        fake_protexting(tmp_path, token=TOKEN) as fake,
        app_server(tmp_path, token=TOKEN, fake=fake, campaigns=campaigns, log_level="debug", env=env) as app,
        httpx.Client(base_url=app.url, trust_env=False, timeout=10.0) as client,
    ):
        answers_ = [
            Visitor(client).submit("(201) 555-0123"),  # accepted
            Visitor(client).submit("(201) 555-0100"),  # refused by ProTexting, 422
            Visitor(client).submit("(201) 555-0104"),  # ProTexting down: 503, queued
            client.get("/readyz"),
        ]
        wait_until(lambda: app.stderr.count("after 1 attempt(s)") >= 3, timeout=20, what="three outcomes")
        assert_sent_to(fake)
    assert [a.status_code for a in answers_] == [303, 422, 303, 200]

    errors = _json_lines("optin serve's stderr", app.stderr)
    access = _json_lines("optin serve's stdout", app.stdout)
    assert {line["level"] for line in errors} >= {"INFO", "WARNING"}
    assert {line["outcome"] for line in errors if "outcome" in line} == {"delivered", "rejected", "pending"}
    assert len([line for line in access if line["method"] == "POST"]) == 3


def assert_sent_to(fake: Server) -> None:
    """The fake ProTexting took calls, which it does only with the token (--token)."""
    assert calls(fake), "ProTexting was not called"
