"""End to end over real HTTP: the app under uvicorn, ProTexting faked by `app.sandbox`.

Both run as real servers on loopback (tests/support/servers.py), so this covers what the
in-process tests cannot: settings read from the environment, the token added on the
wire, redirects as a browser receives them, and what the process writes to its logs.
"""

from __future__ import annotations

import re
import secrets
import socket
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest

from tests.support.campaigns import CAMPAIGNS
from tests.support.records import ok, optin, status_counts
from tests.support.servers import LOOPBACK, Server, app_server, calls, fake_protexting, set_refusal, wait_until
from tests.support.visitor import Visitor, without_number

EXPECTED_BODY = {
    "GroupIds": [7, 9],
    "CTAMessage": "Corner Bakery: reply YES to get deals by text.",
    "ConfirmMessage": "Corner Bakery: you're in! Reply HELP for help, STOP to cancel.",
}


def _phone_error(html: str) -> str | None:
    """Text of the message shown beside the phone field, or None."""
    match = re.search(r'<p class="field-error" id="phone-error">(.*?)</p>', html, re.S)
    return unescape(match.group(1)).strip() if match else None


def _post_form(client: httpx.Client, phone: str) -> httpx.Response:
    """What a browser does: open the page, fill the number in, send every field."""
    return Visitor(client, "/join").submit(phone)


def _phone_input(html: str) -> str:
    match = re.search(r"<input[^>]*\bname=\"phone\"[^>]*>", html)
    assert match, "the page has no phone input"
    return match.group(0)


@pytest.fixture
def token() -> str:
    # Distinctive, so finding it anywhere it should not be is meaningful.
    return "tok" + secrets.token_hex(16)


@pytest.fixture
def servers(tmp_path: Path, token: str) -> Iterator[tuple[Server, Server]]:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS, encoding="utf-8")
    with fake_protexting(tmp_path, token=token) as fake:
        app = app_server(
            tmp_path,
            token=token,
            fake=fake,
            campaigns=campaigns,
            log_level="debug",
            verbose_logging=True,
            env={"OPTIN_MIN_FILL_SECONDS": "0"},  # a script, not a person: no pause to wait out
        )
        with app:
            yield fake, app


def test_signup_over_real_http(servers: tuple[Server, Server], token: str) -> None:
    fake, app = servers
    seen: list[httpx.Response] = []
    with httpx.Client(
        base_url=app.url, follow_redirects=False, trust_env=False, timeout=10.0,
        event_hooks={"response": [lambda r: seen.append(r)]},
    ) as client:  # fmt: skip
        # The form, at the keyword in any case; no sandbox banner with a real token.
        page = client.get("/join")
        assert page.status_code == 200
        assert '<form method="post" action="/JOIN">' in page.text
        assert 'name="phone"' in page.text
        assert "Sandbox" not in page.text
        assert _phone_error(page.text) is None

        # Not a number: refused by the page itself, ProTexting never asked.
        bad = _post_form(client, "555")
        assert bad.status_code == 422
        assert _phone_error(bad.text) == (
            "That isn't a valid United States phone number. Check the digits and try again."
        )
        field = _phone_input(bad.text)
        assert 'aria-invalid="true"' in field
        assert 'value="555"' in field
        assert "phone-error" in field  # aria-describedby names the message
        assert calls(fake) == []

        # A valid number ProTexting refuses: told beside the field, in our words, not its own.
        refused = _post_form(client, "(201) 555-0100")
        assert refused.status_code == 422
        assert (
            _phone_error(refused.text) == "We can't send texts to this number. Check it, or use another mobile number."
        )
        assert "PhoneNumber is not a valid mobile number." not in refused.text
        assert 'value="(201) 555-0100"' in _phone_input(refused.text)
        assert 'role="alert"' not in refused.text  # a field problem, not a form-level one

        # A good number: Post/Redirect/Get to the thanks page.
        accepted = _post_form(client, "(201) 555-0123")
        assert accepted.status_code == 303
        assert without_number(accepted.headers["location"]) == "/JOIN/thanks"
        thanks = client.get(accepted.headers["location"])
        assert thanks.status_code == 200
        assert "Check your phone" in thanks.text
        assert "We've sent a text to confirm" in thanks.text
        assert "Sandbox" not in thanks.text

    # Exactly the calls a person's two valid numbers should cause, in order, with the
    # campaign's groups and messages (the fake answers 401 without the right token, so
    # these arriving also proves the token was sent).
    assert calls(fake) == [
        {"PhoneNumber": "12015550100", **EXPECTED_BODY},
        {"PhoneNumber": "12015550123", **EXPECTED_BODY},
    ]

    # Nothing a visitor receives carries the token.
    for response in seen:
        assert token not in response.text
        assert all(token not in value for value in response.headers.values())

    app.stop()
    output = app.stdout + app.stderr
    # The logs were verbose enough to matter: the upstream call was logged ...
    assert "ProTexting answered POST http://127.0.0.1" in output
    assert "/v1/contacts-opt-in/create" in output
    assert '"POST /JOIN HTTP/1.1" 303' in output
    # ... and nothing the process wrote, at DEBUG, contains the token; nor does the
    # database where it keeps the signups.
    assert token not in output
    stored = [path for path in (app.workdir / "var").rglob("*") if path.is_file()]
    assert stored, "the app stored no signups where OPTIN_DATABASE_URL's default says"
    for path in stored:
        assert token.encode() not in path.read_bytes(), path


def _wait_for_log(app: Server, text: str, *, timeout: float = 10.0) -> None:
    wait_until(lambda: text in app.stderr, timeout=timeout, what=lambda: f"the log line {text!r}:\n{app.stderr}")


@pytest.mark.parametrize(
    ("path", "content_type", "body"),
    [
        ("/JOIN", "application/x-www-form-urlencoded", "phone=%28201%29+555-0123&form_token={token}&website="),
        ("/api/v1/campaigns/JOIN/opt-ins", "application/json", '{{"phone": "(201) 555-0123", "token": "{token}"}}'),
    ],
)
def test_a_client_hanging_up_mid_body_is_not_an_error(
    servers: tuple[Server, Server], path: str, content_type: str, body: str
) -> None:
    fake, app = servers
    with httpx.Client(base_url=app.url, follow_redirects=False, trust_env=False, timeout=10.0) as client:
        token = client.get("/api/v1/campaigns/JOIN").json()["token"]
    whole = body.format(token=token).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{app.port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {2 * len(whole)}\r\n\r\n"
    )
    with socket.create_connection((LOOPBACK, app.port), timeout=10) as sock:
        sock.sendall(head.encode() + whole)  # a whole signup, but half the body it announced
    _wait_for_log(app, f"client hung up during POST {path}")

    # The next visitor is served as ever; nothing of the cut-off signup was kept.
    with httpx.Client(base_url=app.url, follow_redirects=False, trust_env=False, timeout=10.0) as client:
        assert client.get("/join").status_code == 200
        assert client.head("/healthz").status_code == 200
    app.stop()
    output = app.stdout + app.stderr
    assert "ERROR" not in output and "Traceback" not in output, output
    assert calls(fake) == []


def test_a_signup_refused_for_the_set_up_is_held_then_sent_once_it_is_fixed(
    servers: tuple[Server, Server], token: str
) -> None:
    fake, app = servers
    credit = {"name": "Unprocessable entity", "message": "Not enough credit.", "code": 5, "status": 422}
    set_refusal(fake, credit)
    seen: list[httpx.Response] = []
    with httpx.Client(
        base_url=app.url, trust_env=False, timeout=10.0, event_hooks={"response": [lambda r: seen.append(r)]}
    ) as client:
        # The person has nothing to put right: thanked, the text "shortly".
        thanks = Visitor(client, "/join").submit("(201) 555-0123", follow_redirects=True)
        assert (thanks.status_code, thanks.url.path, thanks.url.params.get("pending")) == (200, "/JOIN/thanks", "1")
        assert "You'll get a text shortly" in unescape(thanks.text)
        # The API answers it as it answers a queued signup.
        api_token = client.get("/api/v1/campaigns/JOIN").json()["token"]
        answer = client.post("/api/v1/campaigns/JOIN/opt-ins", json={"phone": "(201) 555-0124", "token": api_token})
        assert (answer.status_code, answer.json()) == (202, {"state": "pending"})
    for response in seen:
        assert "credit" not in response.text.lower()
        assert token not in response.text

    # The operator is told what to fix and what to run then; never the token.
    _wait_for_log(app, "signup 2 (JOIN) held")
    held = [line for line in app.stderr.splitlines() if " held: " in line]
    assert len(held) == 2 and all(line.startswith("ERROR app.delivery:") for line in held), held
    assert "not enough credit on the ProTexting account (code 5: 'Not enough credit.')" in held[0]
    assert "optin retry-failed --held" in held[0]
    assert token not in app.stderr + app.stdout

    database = f"sqlite+aiosqlite:///{app.workdir / 'var' / 'optin.db'}"
    assert status_counts(database, app.workdir) == {("JOIN", "held"): 2}
    # Fixed (credit bought): the operator sends the held signups, the running worker delivers them.
    set_refusal(fake, None)
    assert (
        ok(optin("retry-failed", database_url=database, cwd=app.workdir)).strip() == "0 failed signup(s) queued again"
    )
    sent = ok(optin("retry-failed", "--held", database_url=database, cwd=app.workdir))
    assert sent.strip() == "2 held signup(s) queued again"
    wait_until(lambda: len(calls(fake)) == 2, timeout=15, what=lambda: f"the held signups sent: {calls(fake)}")
    assert sorted(str(call["PhoneNumber"]) for call in calls(fake)) == ["12015550123", "12015550124"]
    wait_until(
        lambda: status_counts(database, app.workdir) == {("JOIN", "delivered"): 2},
        timeout=15,
        what="both delivered",
    )
