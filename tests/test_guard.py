"""Holding the door: form integrity, bot traps, limits, number policy, CAPTCHA,
request hygiene and security headers, on the form and on the JSON API alike.

ProTexting and the CAPTCHA provider are `httpx.MockTransport` handlers; everything
else is the real app.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.campaigns import CampaignsError
from app.main import create_app
from app.settings import Settings
from tests.conftest import TOKEN, FakeUpstream, TestClient
from tests.support.campaigns import CAMPAIGNS_TOML
from tests.support.clocks import Clock, use_clock
from tests.support.page import Page
from tests.support.visitor import Visitor, token_of, without_number

GOOD = "(201) 555-0123"
OWN = "http://testserver"


Build = Callable[..., TestClient]


@pytest.fixture
def build(clean_env: Path, upstream: FakeUpstream) -> Iterator[Build]:
    with ExitStack() as stack:

        def make(
            *,
            campaigns: str = CAMPAIGNS_TOML,
            captcha: Callable[[httpx.Request], httpx.Response] | None = None,
            **overrides: Any,
        ) -> TestClient:
            path = clean_env / f"campaigns-{len(stack._exit_callbacks)}.toml"
            path.write_text(campaigns, encoding="utf-8")
            values: dict[str, Any] = {
                "protexting_access_token": TOKEN,
                "protexting_api_url": "https://api.protexting.test/v1",
                "campaigns_path": path,
                "secret_key": "test-signing-key-0123456789",
                "database_url": f"sqlite+aiosqlite:///{clean_env}/optin.db",
                # The TestClient's own origin, as OPTIN_PUBLIC_URL is a deployment's.
                "public_url": OWN,
                "min_fill_seconds": 0,
                "run_worker": False,
            }
            values.update(overrides)
            app = create_app(
                Settings(_env_file=None, **values),
                upstream_transport=httpx.MockTransport(upstream),
                captcha_transport=httpx.MockTransport(captcha) if captcha else None,
            )
            return stack.enter_context(TestClient(app, follow_redirects=False))

        yield make


# -- form integrity ------------------------------------------------------------------


def test_a_person_using_the_page_normally_notices_nothing(build: Build, upstream: FakeUpstream) -> None:
    client = build(min_fill_seconds=2)
    clock = use_clock(client, Clock())
    visitor = Visitor(client)
    token = visitor.open()
    clock.advance(2.5)  # a person takes at least this long to type a number
    answer = client.post(
        "/join",
        data={"phone": GOOD, "form_token": token, "website": ""},
        headers={"Sec-Fetch-Site": "same-origin", "Origin": OWN},
    )
    assert answer.status_code == 303 and without_number(answer.headers["location"]) == "/JOIN/thanks"
    assert len(upstream.requests) == 1


def test_a_post_without_the_token_is_refused_and_nothing_is_sent(build: Build, upstream: FakeUpstream) -> None:
    client = build()
    answer = client.post("/join", data={"phone": GOOD})
    assert answer.status_code == 400
    assert "reload the page" in answer.text
    assert upstream.requests == []


def test_a_forged_or_foreign_token_is_refused(build: Build, upstream: FakeUpstream) -> None:
    client = build()
    other = token_of(client.get("/alerts").text)
    assert client.post("/join", data={"phone": GOOD, "form_token": other}).status_code == 400
    assert (
        client.post("/join", data={"phone": GOOD, "form_token": "join.1732700000.000.forgedsignature"}).status_code
        == 400
    )
    assert upstream.requests == []


def test_a_token_signed_with_another_key_is_refused(build: Build, upstream: FakeUpstream) -> None:
    from app.tokens import FormTokens

    client = build()
    foreign = FormTokens("another-deployments-key-xyz").issue("join", issued_at=time.time() - 60)
    assert client.post("/join", data={"phone": GOOD, "form_token": foreign}).status_code == 400
    assert upstream.requests == []


def test_an_expired_form_asks_to_press_again_and_keeps_the_number(build: Build, upstream: FakeUpstream) -> None:
    from app.tokens import FormTokens

    client = build()
    old = FormTokens("test-signing-key-0123456789").issue("join", issued_at=time.time() - 25 * 3600)
    answer = client.post("/join", data={"phone": GOOD, "form_token": old})
    assert answer.status_code == 400
    page = Page(answer.text)
    assert "open for a long time" in page.alert_text()
    assert page.phone_input().attrs["value"] == GOOD
    assert upstream.requests == []
    # The form it shows carries a fresh token that works.
    again = client.post("/join", data={"phone": GOOD, "form_token": token_of(answer.text)})
    assert again.status_code == 303


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
        {"Sec-Fetch-Site": "same-site", "Origin": "https://shop.testserver"},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page?x=1"},
    ],
)
def test_a_cross_site_post_is_refused_with_a_clear_page(
    build: Build, upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    client = build()
    answer = Visitor(client).submit(headers=headers)
    assert answer.status_code == 403
    assert "our own page" in answer.text
    assert upstream.requests == []


PUBLIC = "https://signup.example.org"  # OPTIN_PUBLIC_URL, behind a proxy


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": PUBLIC},  # also inside a third-party iframe
        {"Origin": PUBLIC},
        {"Origin": PUBLIC.upper()},
        {"Referer": PUBLIC + "/join?src=poster"},
        {"Sec-Fetch-Site": "same-origin"},  # the browser's word, when it states no origin
        {},  # not a browser: the token still had to be fetched from the page
    ],
)
def test_a_post_from_our_own_page_passes(build: Build, upstream: FakeUpstream, headers: dict[str, str]) -> None:
    client = build(public_url=PUBLIC)
    assert Visitor(client).submit(headers=headers).status_code == 303
    assert len(upstream.requests) == 1


def test_every_page_view_carries_a_new_token(build: Build) -> None:
    client = build()
    tokens = {token_of(client.get("/join").text) for _ in range(5)}
    assert len(tokens) == 5


def test_one_token_signs_up_one_number(build: Build, upstream: FakeUpstream) -> None:
    client = build()
    token = Visitor(client).open()
    for n in range(30):  # a bot replaying one page's token
        client.post("/join", data={"phone": f"(201) 555-{n:02d}77", "form_token": token})
    assert [b["PhoneNumber"] for b in upstream.bodies] == ["12015550077"]


def test_the_same_token_with_another_number_asks_to_confirm_with_a_fresh_token(
    build: Build, upstream: FakeUpstream
) -> None:
    client = build()
    token = Visitor(client).open()
    assert client.post("/join", data={"phone": GOOD, "form_token": token}).status_code == 303
    other = client.post("/join", data={"phone": "(201) 555-0188", "form_token": token})
    assert other.status_code == 409
    page = Page(other.text)
    assert "press the button again" in page.alert_text()
    assert page.phone_input().attrs["value"] == "(201) 555-0188"
    assert len(upstream.requests) == 1
    # One more press, with the form's fresh token, signs that number up.
    fresh = token_of(other.text)
    assert fresh != token
    assert client.post("/join", data={"phone": "(201) 555-0188", "form_token": fresh}).status_code == 303
    assert [b["PhoneNumber"] for b in upstream.bodies] == ["12015550123", "12015550188"]


@pytest.mark.parametrize(("protexting", "thanks"), [("up", "/JOIN/thanks"), ("down", "/JOIN/thanks?pending=1")])
def test_pressing_the_button_twice_answers_as_the_first_and_sends_once(
    build: Build, upstream: FakeUpstream, protexting: str, thanks: str
) -> None:
    if protexting == "down":
        upstream.respond = lambda request: httpx.Response(503)
    client = build(duplicate_window_seconds=0)  # not the outbox's duplicate check: the token's
    token = Visitor(client).open()
    first = client.post("/join", data={"phone": GOOD, "form_token": token})
    second = client.post("/join", data={"phone": GOOD, "form_token": token})
    assert first.status_code == second.status_code == 303
    assert without_number(first.headers["location"]) == without_number(second.headers["location"]) == thanks
    assert len(upstream.requests) == 1


def test_pressing_twice_on_a_number_protexting_refused_never_thanks(build: Build, upstream: FakeUpstream) -> None:
    upstream.respond = lambda request: httpx.Response(
        422, json=[{"field": "PhoneNumber", "message": "Phone number is opted out."}]
    )
    client = build()
    token = Visitor(client).open()
    first = client.post("/join", data={"phone": GOOD, "form_token": token})
    assert first.status_code == 422
    assert "We can't send texts to this number" in Page(first.text).described_by(Page(first.text).phone_input())
    second = client.post("/join", data={"phone": GOOD, "form_token": token})
    assert second.status_code == 409 and "press the button again" in Page(second.text).alert_text()
    assert len(upstream.requests) == 1


def test_a_token_is_not_used_up_by_a_typo_or_a_limit(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_number="1/hour", duplicate_window_seconds=0)
    Visitor(client).submit("(201) 555-0199")
    token = Visitor(client).open()
    assert client.post("/join", data={"phone": "555", "form_token": token}).status_code == 422
    assert client.post("/join", data={"phone": "(201) 555-0199", "form_token": token}).status_code == 429
    assert client.post("/join", data={"phone": GOOD, "form_token": token}).status_code == 303
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(
    "headers",
    [
        # DNS rebinding: evil.example resolves to this server, so the browser sends the
        # attacker's name as Host and calls its own page same-origin.
        {"Host": "evil.example", "Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"},
        {"Host": "evil.example", "Origin": "http://evil.example"},
        {"Host": "evil.example", "Referer": "http://evil.example/join"},
        # The address the proxy talks to is not the public origin either.
        {"Origin": OWN},
    ],
)
def test_only_the_public_url_is_our_origin_whatever_the_host_header_says(
    build: Build, upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    client = build(public_url=PUBLIC)
    answer = Visitor(client).submit(headers=headers)
    assert answer.status_code == 403 and "our own page" in answer.text
    assert upstream.requests == []


# -- bot traps -----------------------------------------------------------------------


def test_the_honeypot_answers_like_success_and_sends_nothing(
    build: Build, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    client = build()
    caplog.set_level("INFO")
    answer = Visitor(client).submit(website="http://spam.example")
    assert answer.status_code == 303 and without_number(answer.headers["location"]) == "/JOIN/thanks"
    assert upstream.requests == []
    assert client.app.state.resources.guard.trapped["honeypot"] == 1
    assert "honeypot" in caplog.text
    # Even the masked number on the thanks page is what a person's would be.
    person = Visitor(build()).submit()
    assert answer.headers["location"] == person.headers["location"]


def test_the_honeypot_is_hidden_from_people_and_screen_readers(build: Build) -> None:
    page = Page(build().get("/join").text)
    trap = page.find("input", name="website")
    wrapper = [e for e in page.elements if e.attrs.get("aria-hidden") == "true" and "hp" in e.attrs.get("class", "")]
    assert wrapper, "the honeypot sits in an aria-hidden, off-screen box"
    assert trap.attrs["tabindex"] == "-1" and trap.attrs["autocomplete"] == "off"
    css = (Path(__file__).resolve().parent.parent / "static" / "style.css").read_text()
    assert ".hp{position:absolute;left:-10000px" in css


CONFIRM = "Please check your number below and press the button once more to confirm."


def test_a_form_sent_too_fast_comes_back_asking_to_confirm_and_one_tap_signs_up(
    build: Build, upstream: FakeUpstream
) -> None:
    # A phone's autofill can fill the number in within a second: not yet a bot.
    client = build(min_fill_seconds=2)
    clock = use_clock(client, Clock())
    token = Visitor(client).open()
    clock.advance(0.8)

    fast = client.post("/join", data={"phone": GOOD, "form_token": token, "website": ""})

    # The same form, status 200 (nothing in it is wrong), the number kept, one line asking to confirm.
    assert fast.status_code == 200
    page = Page(fast.text)
    assert page.alert_text() == CONFIRM
    assert page.phone_input().attrs["value"] == GOOD
    assert "aria-invalid" not in page.phone_input().attrs
    fresh = token_of(fast.text)
    assert fresh != token
    assert upstream.requests == [] and client.app.state.resources.guard.trapped == {}

    clock.advance(1.5)  # reading the line and tapping the button again
    confirmed = client.post("/join", data={"phone": GOOD, "form_token": fresh, "website": ""})
    assert confirmed.status_code == 303 and without_number(confirmed.headers["location"]) == "/JOIN/thanks"
    assert [body["PhoneNumber"] for body in upstream.bodies] == ["12015550123"]


def test_a_second_submission_too_fast_is_trapped(build: Build, upstream: FakeUpstream) -> None:
    client = build(min_fill_seconds=2)
    clock = use_clock(client, Clock())
    token = Visitor(client).open()
    clock.advance(0.3)
    fast = client.post("/join", data={"phone": GOOD, "form_token": token})
    assert fast.status_code == 200
    clock.advance(0.3)  # no person reads the line and taps within the fill time

    again = client.post("/join", data={"phone": GOOD, "form_token": token_of(fast.text)})

    # Answered exactly like success; nothing stored or sent.
    assert again.status_code == 303 and without_number(again.headers["location"]) == "/JOIN/thanks"
    assert upstream.requests == []
    assert client.app.state.resources.guard.trapped["too fast"] == 1


def test_the_confirming_mark_cannot_be_forged(build: Build, upstream: FakeUpstream) -> None:
    client = build(min_fill_seconds=2)
    token = Visitor(client).open()
    payload, _, signature = token.rpartition(".")
    forged = client.post("/join", data={"phone": GOOD, "form_token": f"{payload}.c.{signature}"})
    assert forged.status_code == 400 and upstream.requests == []


def test_an_api_opt_in_sent_too_fast_is_told_when_to_send_it_again(build: Build, upstream: FakeUpstream) -> None:
    # The API has no person to ask: the program is told how long, and the same request then passes.
    client = build(min_fill_seconds=5)
    clock = use_clock(client, Clock())
    url = "/api/v1/campaigns/join/opt-ins"
    token = api_token(client)
    clock.advance(1.2)

    fast = client.post(url, json={"phone": GOOD, "token": token})

    assert fast.status_code == 429 and fast.headers["retry-after"] == "4"
    [error] = fast.json()["errors"]
    assert error["field"] == "token" and "in 4 second(s)" in error["message"]
    assert upstream.requests == []
    clock.advance(4)
    assert client.post(url, json={"phone": GOOD, "token": token}).status_code == 201


def test_correcting_a_typo_does_not_restart_the_fill_clock(build: Build, upstream: FakeUpstream) -> None:
    client = build(min_fill_seconds=3)
    clock = use_clock(client, Clock())
    visitor = Visitor(client)
    token = visitor.open()
    clock.advance(3.5)
    wrong = client.post("/join", data={"phone": "555", "form_token": token})
    assert wrong.status_code == 422
    fixed = client.post("/join", data={"phone": GOOD, "form_token": token_of(wrong.text)})
    assert fixed.status_code == 303 and len(upstream.requests) == 1


# -- limits --------------------------------------------------------------------------


def _wait_words(seconds: int) -> str:
    return f"Try again in {seconds} second{'s' if seconds != 1 else ''}." if seconds < 60 else "Try again in 1 minute."


def test_too_many_from_one_address_gets_429_with_retry_after(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_ip="3/minute")
    visitor = Visitor(client)
    answers = [visitor.submit(f"(201) 555-01{20 + n}").status_code for n in range(4)]
    assert answers == [303, 303, 303, 429]
    refused = visitor.submit("(201) 555-0150")
    assert refused.status_code == 429
    wait = int(refused.headers["retry-after"])
    assert 0 < wait <= 60
    # The form again, the number still in it, and the real wait, not "a few minutes".
    page = Page(refused.text)
    assert page.by_id("phone").attrs["value"] == "(201) 555-0150"
    assert page.alert_text() == f"We've had a lot of signups from this connection just now. {_wait_words(wait)}"
    assert page.find("button").text == "Sign up for texts"
    assert len(upstream.requests) == 3


def test_a_number_signed_up_too_often_is_told_the_wait_beside_the_field(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_number="1/minute", duplicate_window_seconds=0)
    visitor = Visitor(client)
    assert visitor.submit(GOOD).status_code == 303
    refused = visitor.submit(GOOD)
    assert refused.status_code == 429
    wait = int(refused.headers["retry-after"])
    page = Page(refused.text)
    field = page.by_id("phone")
    assert field.attrs["value"] == GOOD and field.attrs["aria-invalid"] == "true"
    assert page.by_id("phone-error").text == f"This number was signed up several times just now. {_wait_words(wait)}"
    # The next try, after the wait, needs a token: the page carries a fresh one.
    assert token_of(refused.text)
    assert len(upstream.requests) == 1


def test_a_newcomer_trying_the_sandbox_numbers_is_not_locked_out(build: Build) -> None:
    # The five test numbers (README, Sandbox mode) and a dozen more of 555-01xx, the
    # fictional numbers people reach for, all in one block of a hundred.
    client = build(protexting_access_token=None, limit_per_ip="")
    visitor = Visitor(client)
    numbers = [f"(201) 555-01{n:02d}" for n in range(17)]
    codes = [visitor.submit(number).status_code for number in numbers]
    assert 429 not in codes
    assert codes[5:] == [303] * 12


def test_the_block_limit_set_in_sandbox_mode_still_holds(build: Build) -> None:
    client = build(protexting_access_token=None, limit_per_ip="", limit_per_prefix="3/hour")
    visitor = Visitor(client)
    codes = [visitor.submit(f"(201) 555-01{n:02d}").status_code for n in range(20, 24)]
    assert codes == [303, 303, 303, 429]


REFUSED_EARLY: list[tuple[str, str, dict[str, str], bytes, int]] = [
    ("json to the form", "/join", {"content-type": "application/json"}, b'{"phone": "2015550123"}', 415),
    ("broken form", "/join", {"content-type": "application/x-www-form-urlencoded"}, b"phone=%ff", 400),
    ("too big", "/join", {"content-type": "application/x-www-form-urlencoded"}, b"phone=" + b"1" * 40000, 413),
    (
        "cross-site",
        "/join",
        {"content-type": "application/x-www-form-urlencoded", "origin": "https://evil.example"},
        b"phone=2015550123&form_token=x",
        403,
    ),
    ("no token", "/join", {"content-type": "application/x-www-form-urlencoded"}, b"phone=2015550123", 400),
    (
        "forged token",
        "/join",
        {"content-type": "application/x-www-form-urlencoded"},
        b"phone=2015550123&form_token=join.1.x.y",
        400,
    ),
    ("broken json", "/api/v1/campaigns/join/opt-ins", {"content-type": "application/json"}, b'{"phone": ', 400),
    (
        "json without a token",
        "/api/v1/campaigns/join/opt-ins",
        {"content-type": "application/json"},
        b'{"phone": "2015550123"}',
        422,
    ),
    (
        "api too big",
        "/api/v1/campaigns/join/opt-ins",
        {"content-type": "application/json"},
        b'{"phone": "' + b"1" * 40000 + b'"}',
        413,
    ),
    (
        "api cross-site",
        "/api/v1/campaigns/join/opt-ins",
        {"content-type": "application/json", "origin": "https://evil.example"},
        b'{"phone": "2015550123", "token": "x"}',
        403,
    ),
]


@pytest.mark.parametrize(
    ("name", "path", "headers", "body", "status"), REFUSED_EARLY, ids=[r[0] for r in REFUSED_EARLY]
)
def test_every_submission_counts_against_the_address_refused_or_not(
    build: Build, upstream: FakeUpstream, name: str, path: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    client = build(limit_per_ip="3/minute")
    assert [client.post(path, content=body, headers=headers).status_code for _ in range(3)] == [status] * 3
    # The fourth submission from the address, a good one, is one too many.
    assert Visitor(client).submit().status_code == 429
    assert client.post(path, content=body, headers=headers).status_code == 429
    assert upstream.requests == []


def test_a_submission_counts_once(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_ip="2/minute")
    assert client.post("/join", data={"phone": GOOD}).status_code == 400
    assert Visitor(client).submit().status_code == 303
    assert Visitor(client).submit("(201) 555-0124").status_code == 429


@pytest.mark.parametrize("trusted", [True, False])
def test_the_address_is_taken_from_x_forwarded_for_only_behind_a_trusted_proxy(
    build: Build, upstream: FakeUpstream, trusted: bool
) -> None:
    client = build(limit_per_ip="1/minute", trusted_proxies="10.0.0.0/8" if trusted else "")
    client.app  # noqa: B018
    proxied = TestClient(client.app, follow_redirects=False, client=("10.1.2.3", 40000))
    visitor = Visitor(proxied)
    assert visitor.submit(headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 303
    second = visitor.submit("(201) 555-0124", headers={"X-Forwarded-For": "198.51.100.2"})
    # Behind a trusted proxy these are two people; otherwise one client making up headers.
    assert second.status_code == (303 if trusted else 429)


def test_the_same_number_too_often_is_limited(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_number="2/hour", duplicate_window_seconds=0)
    visitor = Visitor(client)
    assert [visitor.submit().status_code for _ in range(3)] == [303, 303, 429]
    assert len(upstream.requests) == 2


def test_a_run_of_consecutive_numbers_is_stopped(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_prefix="5/hour")
    visitor = Visitor(client)
    codes = [visitor.submit(f"(201) 555-01{n:02d}").status_code for n in range(10, 17)]
    assert codes == [303] * 5 + [429, 429]
    assert visitor.submit("(201) 555-0223").status_code == 303  # another block of a hundred
    assert len(upstream.requests) == 6


def test_a_campaign_has_a_daily_ceiling(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_campaign="2/day")
    visitor = Visitor(client)
    assert [visitor.submit(f"(201) 555-{n}").status_code for n in (1234, 2345, 3456)] == [303, 303, 429]
    assert Visitor(client, "/alerts").submit("(201) 555-4567").status_code == 303


def test_an_empty_limit_turns_it_off(build: Build, upstream: FakeUpstream) -> None:
    client = build(limit_per_ip="", limit_per_prefix="", limit_per_number="", duplicate_window_seconds=0)
    visitor = Visitor(client)
    assert {visitor.submit().status_code for _ in range(12)} == {303}


# -- number policy -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "words"),
    [("(800) 555-0123", "toll-free"), ("+44 9090 901234", "premium-rate"), ("+44 1212 345678", "landline")],
)
def test_numbers_that_cannot_get_texts_are_refused_beside_the_field(
    build: Build, upstream: FakeUpstream, phone: str, words: str
) -> None:
    client = build(campaigns=CAMPAIGNS_TOML.replace('countries = ["US", "CA"]', 'countries = ["US", "CA", "GB"]'))
    answer = Visitor(client, "/alerts").submit(phone)
    assert answer.status_code == 422
    page = Page(answer.text)
    assert words in page.described_by(page.phone_input())
    assert upstream.requests == []


def test_a_campaign_can_allow_more_number_types(build: Build, upstream: FakeUpstream) -> None:
    campaigns = CAMPAIGNS_TOML.replace(
        'countries = ["US", "CA"]', 'countries = ["US", "CA", "GB"]\nnumber_types = ["mobile", "fixed_line"]'
    )
    client = build(campaigns=campaigns)
    assert Visitor(client, "/alerts").submit("+44 1212 345678").status_code == 303


# -- CAPTCHA -------------------------------------------------------------------------

CAPTCHA_TOML = CAMPAIGNS_TOML.replace(
    "send_cta_message = true",
    'send_cta_message = true\n\n[campaigns.Alerts.captcha]\nprovider = "turnstile"\nsite_key = "0x4AAA-site"\nsecret_env = "ALERTS_TURNSTILE_SECRET"',
)


def test_a_campaign_with_a_captcha_shows_the_widget_and_verifies_it(
    build: Build, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_TURNSTILE_SECRET", "captcha-secret-1")
    verified: list[dict[str, str]] = []

    def provider(request: httpx.Request) -> httpx.Response:
        form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
        verified.append(form)
        return httpx.Response(200, json={"success": form["response"] == "good"})

    client = build(campaigns=CAPTCHA_TOML, captcha=provider)
    page = client.get("/alerts")
    assert 'class="captcha cf-turnstile" data-sitekey="0x4AAA-site"' in page.text
    assert "https://challenges.cloudflare.com" in page.headers["content-security-policy"]
    assert "captcha-secret-1" not in page.text
    assert "cf-turnstile" not in client.get("/join").text  # only where configured

    visitor = Visitor(client, "/alerts")
    failed = visitor.submit(**{"cf-turnstile-response": "bad"})
    assert failed.status_code == 422 and "complete the check" in Page(failed.text).alert_text()
    missing = visitor.submit()
    assert missing.status_code == 422
    assert upstream.requests == []
    passed = visitor.submit(**{"cf-turnstile-response": "good"})
    assert passed.status_code == 303 and len(upstream.requests) == 1
    assert verified[-1]["secret"] == "captcha-secret-1"


def test_a_captcha_secret_missing_from_the_environment_stops_start_up(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ALERTS_TURNSTILE_SECRET", raising=False)
    with pytest.raises(CampaignsError, match="ALERTS_TURNSTILE_SECRET"):
        build(campaigns=CAPTCHA_TOML)


def test_a_captcha_provider_that_cannot_be_reached_fails_closed(
    build: Build, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTS_TURNSTILE_SECRET", "s")

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    client = build(campaigns=CAPTCHA_TOML, captcha=down)
    answer = Visitor(client, "/alerts").submit(**{"cf-turnstile-response": "good"})
    assert answer.status_code == 422 and upstream.requests == []


# -- request hygiene -----------------------------------------------------------------

BAD_FORMS: list[tuple[str, dict[str, str], bytes, int]] = [
    ("json to the form", {"content-type": "application/json"}, b'{"phone": "2015550123"}', 415),
    ("multipart", {"content-type": "multipart/form-data; boundary=x"}, b"--x--", 415),
    ("no content type", {}, b"phone=2015550123", 415),
    ("broken utf-8", {"content-type": "application/x-www-form-urlencoded"}, b"phone=%ff%fe", 400),
    ("raw bytes", {"content-type": "application/x-www-form-urlencoded"}, b"phone=\xff\xfe", 400),
    ("nul byte", {"content-type": "application/x-www-form-urlencoded"}, b"phone=20155%00", 400),
    ("huge field", {"content-type": "application/x-www-form-urlencoded"}, b"phone=" + b"1" * 5000, 400),
    ("too big", {"content-type": "application/x-www-form-urlencoded"}, b"phone=" + b"1" * 40000, 413),
    (
        "too many fields",
        {"content-type": "application/x-www-form-urlencoded"},
        b"&".join(b"f%d=1" % i for i in range(50)),
        400,
    ),
    ("empty", {"content-type": "application/x-www-form-urlencoded"}, b"", 400),
]


@pytest.mark.parametrize(("name", "headers", "body", "status"), BAD_FORMS, ids=[f[0] for f in BAD_FORMS])
def test_bad_form_bodies_get_a_clear_4xx_page(
    build: Build, upstream: FakeUpstream, name: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    client = build()
    answer = client.post("/join", content=body, headers=headers)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("text/")
    assert "Traceback" not in answer.text
    assert upstream.requests == []


def test_a_body_larger_than_declared_is_cut_off(build: Build, upstream: FakeUpstream) -> None:
    client = build()

    def chunks() -> Iterator[bytes]:
        yield b"phone="
        for _ in range(40):
            yield b"1" * 1000

    answer = client.post("/join", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413


# -- security headers ----------------------------------------------------------------


def test_every_response_carries_the_security_headers(build: Build) -> None:
    client = build()
    for response in (
        client.get("/join"),
        client.get("/join/thanks"),
        client.get("/nope"),
        client.get("/static/style.css"),
        client.get("/api/v1/campaigns/join"),
        client.post("/join", data={"phone": "x"}),
    ):
        headers = response.headers
        csp = headers["content-security-policy"]
        assert "script-src" not in csp and "'unsafe-inline'" not in csp
        assert "default-src 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        # The one policy the service sets (app.web.security): other sites learn the origin
        # a visitor came from, never the page's path or query.
        assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
        assert "camera=()" in headers["permissions-policy"]


def test_only_campaign_pages_may_be_framed(build: Build) -> None:
    client = build(
        campaigns=CAMPAIGNS_TOML.replace(
            "send_cta_message = true", 'send_cta_message = true\nframe_ancestors = ["https://shop.example"]'
        )
    )
    assert "frame-ancestors *" in client.get("/join").headers["content-security-policy"]
    assert "frame-ancestors https://shop.example" in client.get("/alerts").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in client.get("/nope").headers["content-security-policy"]
    assert "frame-ancestors 'none'" in client.get("/api/v1/campaigns/join").headers["content-security-policy"]


def test_pages_have_no_inline_script_or_style(build: Build) -> None:
    html = build().get("/join").text
    assert "<script" not in html
    assert "<style" not in html and " style=" not in html


# -- the JSON API --------------------------------------------------------------------


def api_token(client: TestClient, keyword: str = "join") -> str:
    info = client.get(f"/api/v1/campaigns/{keyword}")
    assert info.status_code == 200
    return info.json()["token"]


def test_the_api_gives_what_a_custom_form_must_show(build: Build) -> None:
    info = build().get("/api/v1/campaigns/JOIN").json()
    assert info["program_name"] == "Test Bakery Deals"
    assert "<strong>STOP</strong>" in info["disclosure_html"]
    assert info["captcha"] is None and info["token"]


def test_the_api_signs_up_with_201_and_one_call(build: Build, upstream: FakeUpstream) -> None:
    client = build()
    answer = client.post("/api/v1/campaigns/join/opt-ins", json={"phone": GOOD, "token": api_token(client)})
    assert answer.status_code == 201 and answer.json() == {"state": "delivered"}
    assert upstream.bodies[0]["PhoneNumber"] == "12015550123"


def test_the_api_answers_202_when_protexting_is_down(build: Build, upstream: FakeUpstream) -> None:
    upstream.respond = lambda request: httpx.Response(503)
    client = build()
    answer = client.post("/api/v1/campaigns/join/opt-ins", json={"phone": GOOD, "token": api_token(client)})
    assert answer.status_code == 202 and answer.json() == {"state": "pending"}


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"phone": "555"}, 422, "phone"),
        ({"phone": "(800) 555-0123"}, 422, "phone"),
        ({"phone": "1" * 100}, 422, "phone"),
        ({"phone": 12015550123}, 422, "phone"),
        ({}, 422, "phone"),
    ],
)
def test_the_api_explains_bad_numbers(
    build: Build, upstream: FakeUpstream, body: dict[str, Any], status: int, field: str
) -> None:
    client = build()
    answer = client.post("/api/v1/campaigns/join/opt-ins", json={"token": api_token(client), **body})
    assert answer.status_code == status
    assert field in [e["field"] for e in answer.json()["errors"]]
    assert all(e["message"] for e in answer.json()["errors"])
    assert upstream.requests == []


@pytest.mark.parametrize("field", ["phone", "token", "website", "captcha"])
def test_the_api_refuses_a_nul_byte_as_the_form_does(build: Build, upstream: FakeUpstream, field: str) -> None:
    client = build()
    body = {"phone": GOOD, "token": api_token(client)}
    # At the end of a number the number parser would skip it and sign the number up.
    body[field] = body.get(field, "") + "\x00"
    answer = client.post("/api/v1/campaigns/join/opt-ins", json=body)
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": field, "message": "must not contain a NUL byte"}]
    assert upstream.requests == []


def test_the_api_tells_protextings_refusal_of_the_number_in_our_words(build: Build, upstream: FakeUpstream) -> None:
    upstream.respond = lambda request: httpx.Response(
        422, json=[{"field": "PhoneNumber", "message": "Phone number is opted out."}]
    )
    client = build()
    answer = client.post("/api/v1/campaigns/join/opt-ins", json={"phone": GOOD, "token": api_token(client)})
    assert answer.status_code == 422
    message = "We can't send texts to this number. Check it, or use another mobile number."
    assert answer.json() == {"errors": [{"field": "phone", "message": message}]}


def test_the_api_is_as_guarded_as_the_form(build: Build, upstream: FakeUpstream) -> None:
    client = build(min_fill_seconds=5, limit_per_ip="3/minute")
    url = "/api/v1/campaigns/join/opt-ins"
    # No token: refused.
    assert client.post(url, json={"phone": GOOD, "token": "nope"}).status_code == 403
    # Too fast: told to wait; the honeypot: answered like success. Nothing sent.
    fast = client.post(url, json={"phone": GOOD, "token": api_token(client)})
    trapped = client.post(url, json={"phone": GOOD, "token": api_token(client), "website": "x"})
    assert (fast.status_code, trapped.status_code) == (429, 202)
    assert upstream.requests == []
    # The address limit counts API calls too.
    limited = client.post(url, json={"phone": GOOD, "token": api_token(client)})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_an_api_token_signs_up_one_number(build: Build, upstream: FakeUpstream) -> None:
    client = build()
    url = "/api/v1/campaigns/join/opt-ins"
    token = api_token(client)
    assert client.post(url, json={"phone": GOOD, "token": token}).status_code == 201
    # The same number again (a retry): the first's answer, nothing sent again.
    again = client.post(url, json={"phone": GOOD, "token": token})
    assert again.status_code == 201 and again.json() == {"state": "delivered"}
    other = client.post(url, json={"phone": "(201) 555-0188", "token": token})
    assert other.status_code == 409
    assert other.json()["errors"][0]["field"] == "token"
    assert "fetch a new one" in other.json()["errors"][0]["message"]
    assert len(upstream.requests) == 1
    assert client.post(url, json={"phone": "(201) 555-0188", "token": api_token(client)}).status_code == 201


def test_the_api_refuses_other_origins_unless_the_campaign_lists_them(build: Build, upstream: FakeUpstream) -> None:
    campaigns = CAMPAIGNS_TOML.replace(
        "send_cta_message = true", 'send_cta_message = true\napi_origins = ["https://shop.example"]'
    )
    client = build(campaigns=campaigns)
    url = "/api/{}/campaigns/{}/opt-ins"
    foreign = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    friend = {"Origin": "https://shop.example", "Sec-Fetch-Site": "cross-site"}

    refused = client.post(url.format("v1", "join"), json={"phone": GOOD, "token": api_token(client)}, headers=friend)
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
    refused = client.post(
        url.format("v1", "alerts"), json={"phone": GOOD, "token": api_token(client, "alerts")}, headers=foreign
    )
    assert refused.status_code == 403
    assert upstream.requests == []

    preflight = client.options(url.format("v1", "alerts"), headers={**friend, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://shop.example"
    assert client.options(url.format("v1", "alerts"), headers=foreign).status_code == 403

    allowed = client.post(
        url.format("v1", "alerts"), json={"phone": GOOD, "token": api_token(client, "alerts")}, headers=friend
    )
    assert allowed.status_code == 201
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"


BAD_JSON: list[tuple[str, dict[str, str], bytes, int]] = [
    ("broken json", {"content-type": "application/json"}, b'{"phone": "20155', 400),
    ("broken utf-8", {"content-type": "application/json"}, b'{"phone": "\xff\xfe"}', 400),
    ("not an object", {"content-type": "application/json"}, b'["2015550123"]', 422),
    ("form to the api", {"content-type": "application/x-www-form-urlencoded"}, b"phone=2015550123", 415),
    ("text", {"content-type": "text/plain"}, b'{"phone": "2015550123"}', 415),
    ("too big", {"content-type": "application/json"}, b'{"phone": "' + b"1" * 40000 + b'"}', 413),
    ("deep", {"content-type": "application/json"}, b"[" * 5000 + b"]" * 5000, 400),
]


@pytest.mark.parametrize(("name", "headers", "body", "status"), BAD_JSON, ids=[b[0] for b in BAD_JSON])
def test_bad_api_bodies_get_a_clear_4xx(
    build: Build, upstream: FakeUpstream, name: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    client = build()
    answer = client.post("/api/v1/campaigns/join/opt-ins", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["errors"][0]["message"]
    assert upstream.requests == []


def test_the_api_is_described_in_the_openapi_schema(build: Build) -> None:
    schema = build().get("/openapi.json").json()
    post = schema["paths"]["/api/v1/campaigns/{keyword}/opt-ins"]["post"]
    assert {"201", "202", "403", "409", "422", "429"} <= set(post["responses"])
    assert "phone" in json.dumps(schema["components"]["schemas"]["OptInRequest"])
    assert not any(path.startswith("/{keyword}") for path in schema["paths"])


def test_with_redis_down_a_signup_is_still_kept_and_thanked(build: Build, upstream: FakeUpstream) -> None:
    from tests.conftest import closed_port

    client = build(redis_url=f"redis://127.0.0.1:{closed_port()}/0")
    answer = Visitor(client).submit()
    # No pace can be known, so nothing is sent now; the signup waits, and the person
    # is thanked as for any queued signup. No 5xx, nothing lost.
    assert answer.status_code == 303 and without_number(answer.headers["location"]) == "/JOIN/thanks?pending=1"
    assert upstream.requests == []
    api = client.post("/api/v1/campaigns/join/opt-ins", json={"phone": "(201) 555-0177", "token": api_token(client)})
    assert api.status_code == 202


@pytest.mark.parametrize("path", ["/join", "/api/v1/campaigns/join/opt-ins"])
def test_with_the_database_down_the_person_is_told_plainly_and_asked_to_retry(
    build: Build, upstream: FakeUpstream, path: str
) -> None:
    from app.storage import Outbox, create_engine
    from tests.conftest import closed_port

    client = build()
    token = token_of(client.get("/join").text)
    # The database goes away after start-up.
    delivery = client.app.state.resources.delivery
    gone = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/gone")
    delivery.outbox = Outbox(gone, policy=delivery.outbox.policy, lease=delivery.outbox.lease)
    if path == "/join":
        answer = client.post(path, data={"phone": GOOD, "form_token": token})
        assert "not saved" in answer.text and "Traceback" not in answer.text
    else:
        answer = client.post(path, json={"phone": GOOD, "token": token})
        assert "not saved" in answer.json()["errors"][0]["message"]
    assert answer.status_code == 503 and answer.headers["retry-after"] == "30"
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("public_url", "origin", "passes"),
    [
        # The demo is opened as localhost as often as 127.0.0.1: both are this machine.
        ("http://127.0.0.1:8000", "http://localhost:8000", True),
        ("http://127.0.0.1:8000", "http://[::1]:8000", True),
        ("http://localhost:8000", "http://127.0.0.1:8000", True),
        # Another port of this machine is another service.
        ("http://127.0.0.1:8000", "http://localhost:9000", False),
        # A public deployment has one origin only.
        ("https://signup.example.org", "http://localhost", False),
        ("https://signup.example.org", "http://127.0.0.1", False),
    ],
)
def test_a_loopback_public_url_answers_to_each_name_of_loopback(
    build: Build, upstream: FakeUpstream, public_url: str, origin: str, passes: bool
) -> None:
    client = build(public_url=public_url)
    answer = Visitor(client).submit(headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert answer.status_code == (303 if passes else 403)
    assert len(upstream.requests) == (1 if passes else 0)


def test_form_tokens_are_itsdangerous_signatures_that_never_repeat() -> None:
    # Tokens are itsdangerous `Signer` values (keyed BLAKE2b), each one new; a token of
    # an earlier release (HMAC-SHA1, itsdangerous' default) still verifies, so a page
    # left open across an upgrade still signs up; a forged one does not.
    import hashlib

    from itsdangerous import Signer

    from app.tokens import FormTokens, InvalidFormToken, _KeyedBlake2

    secret, salt = "a-secret-of-sixteen-chars-or-more", "optin-pages/form-token"
    tokens = FormTokens(secret)
    blake2 = Signer(secret, salt=salt, digest_method=hashlib.sha1, algorithm=_KeyedBlake2())
    issued = [tokens.issue("join") for _ in range(1000)]
    assert len(set(issued)) == 1000
    assert all(blake2.unsign(token).decode().startswith("join.") for token in issued)
    legacy = Signer(secret, salt=salt, digest_method=hashlib.sha1).sign(f"join.{tokens.clock():.3f}.abc").decode()
    assert tokens.check(legacy, "join") == pytest.approx(tokens.clock(), abs=5)
    forged = Signer("another-secret-of-sixteen", salt=salt, digest_method=hashlib.sha1).sign("join.1.abc").decode()
    with pytest.raises(InvalidFormToken):
        tokens.check(forged, "join")
