"""The campaign pages as a visitor meets them: the form and its disclosure, errors beside
the field, Post/Redirect/Get to the thanks page, calm pages when ProTexting fails, and
sandbox mode."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.routing import BaseRoute, Mount
from starlette.testclient import TestClient

from tests.support.campaigns import CAMPAIGNS_TOML
from tests.support.page import Page
from tests.support.records import settled
from tests.support.visitor import submit, without_number

from .conftest import TOKEN, FakeUpstream, MakeClient, answers, closed_port, raises

PHONE = "(201) 555-0123"
NORMALISED = "12015550123"
SANDBOX_BANNER = "Sandbox: no texts are sent"
ONE_CAMPAIGN = CAMPAIGNS_TOML.partition("[campaigns.Alerts]")[0]
CAMPAIGNS_WITH_BACK_URL = CAMPAIGNS_TOML.replace(
    'program_name = "Test Bakery Deals"', 'program_name = "Test Bakery Deals"\nback_url = "https://bakery.example/"'
)


def paragraphs(page: Page) -> set[str]:
    return {" ".join(e.text.split()) for e in page.find_all("p")} - {""}


def text_of(page: Page) -> str:
    return " ".join(" ".join(e.text.split()) for e in page.find_all("main"))


# --- the form --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/JOIN", "/join", "/Join"])
def test_the_signup_page_answers_to_its_keyword_in_any_case(make_client: MakeClient, path: str) -> None:
    response = make_client().get(path)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = Page(response.text)
    assert page.find("title").text == "Get our deals by text"
    assert page.find("h1").text == "Get our deals by text"
    assert "Weekly offers, straight to your phone." in text_of(page)


def test_the_phone_field_is_labelled_and_asks_for_a_phone_keyboard(make_client: MakeClient) -> None:
    page = Page(make_client().get("/join").text)

    phone = page.phone_input()
    assert phone.attrs["id"] == "phone"
    assert phone.attrs["type"] == "tel"
    assert phone.attrs["autocomplete"] == "tel"
    assert phone.attrs["value"] == ""
    assert "aria-invalid" not in phone.attrs
    label = page.find("label", for_="phone")
    assert label.text.strip()
    form = page.find("form")
    assert form.attrs["method"] == "post"
    assert form.attrs["action"] == "/JOIN"


def test_the_disclosure_says_everything_the_rules_require(make_client: MakeClient) -> None:
    html = make_client().get("/join").text

    disclosure = Page(html).find("p", **{"class": "disclosure"})
    text = " ".join(disclosure.text.split())
    assert "Test Bakery Deals" in text
    assert "recurring automated marketing" in text
    assert "Up to 4 msgs/month" in text
    assert "Msg & data rates may apply" in text
    assert "not a condition of purchase" in text
    assert "Msg &amp; data rates may apply" in html
    assert "<strong>HELP</strong>" in html
    assert "<strong>STOP</strong>" in html
    links = {a.text.strip(): a.attrs["href"] for a in Page(html).find_all("a")}
    assert links["Terms"] == "https://example.com/sms-terms"
    assert links["Privacy Policy"] == "https://example.com/privacy"


def test_the_disclosure_is_inside_the_form_above_the_submit_button(make_client: MakeClient) -> None:
    html = make_client().get("/join").text

    form_start = html.index("<form")
    disclosure = html.index('class="disclosure"')
    help_word = html.index("<strong>HELP</strong>")
    terms = html.index('href="https://example.com/sms-terms"')
    button = html.index('<button type="submit"')
    assert form_start < disclosure < help_word < terms < button < html.index("</form>")


def test_each_campaign_shows_its_own_disclosure(make_client: MakeClient) -> None:
    page = Page(make_client().get("/alerts").text)

    text = " ".join(page.find("p", **{"class": "disclosure"}).text.split())
    assert "Test Bakery Alerts" in text
    assert "Msg frequency varies" in text
    assert "Test Bakery Deals" not in text
    assert "https://example.com/alerts-terms" in page.urls()


def test_pages_load_nothing_from_third_party_hosts(make_client: MakeClient) -> None:
    client = make_client()
    allowed = {"https://example.com/sms-terms", "https://example.com/privacy"}

    responses = [client.get(path) for path in ["/join", "/join/thanks", "/join/thanks?pending=1", "/no-such-keyword"]]
    responses.append(submit(client, "/join", "nope"))
    for response in responses:
        path = str(response.url)
        page = Page(response.text)
        foreign = [url for url in page.urls() if urlsplit(url).scheme or urlsplit(url).netloc]
        assert set(foreign) <= allowed, path
        stylesheets = [link.attrs["href"] for link in page.find_all("link", rel="stylesheet")]
        assert stylesheets == ["/static/style.css"], path


def test_the_stylesheet_is_served_locally(make_client: MakeClient) -> None:
    response = make_client().get("/static/style.css")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    # No web fonts, imports or images from elsewhere.
    assert not re.search(r"(@import|url\()\s*['\"]?\s*(https?:)?//", response.text)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "campaigns-here.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_thanks_page_names_the_number_masked_and_offers_a_way_back(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(campaigns=_file(tmp_path, CAMPAIGNS_WITH_BACK_URL))

    answer = submit(client, "/join?src=poster-3", PHONE)
    location = answer.headers["location"]
    # Never the whole number in a URL: only its last four digits, signed.
    assert NORMALISED[1:-4] not in location and "to=1-0123." in location
    page = Page(client.get(location).text)

    assert page.find("h1").text == "Check your phone"
    assert page.find("div", **{"class": "done"}).attrs["aria-hidden"] == "true"  # the check mark
    assert " ".join(page.find("p", **{"class": "number"}).text.split()) == "We texted •••-•••-0123"
    links = {a.text: a.attrs["href"] for a in page.find_all("a")}
    # Back to the same page, from the same poster; and back to the shop.
    assert links["Start again"] == "/JOIN?src=poster-3"
    assert links["Back to Test Bakery Deals"] == "https://bakery.example/"


def test_the_thanks_page_in_the_frame_starts_again_in_the_frame(make_client: MakeClient) -> None:
    client = make_client()
    thanks = client.get(submit(client, "/embed/join?src=shop", PHONE).headers["location"])
    links = {a.text: a.attrs["href"] for a in Page(thanks.text).find_all("a")}
    assert links["Start again"] == "/embed/JOIN?src=shop"


def test_the_thanks_page_shows_no_digits_it_did_not_sign(make_client: MakeClient) -> None:
    client = make_client()
    genuine = submit(client, "/join", PHONE).headers["location"]
    forged = genuine.replace("0123", "6666")

    page = Page(client.get(forged).text)
    assert page.find("h1").text == "Check your phone"
    assert "6666" not in " ".join(paragraphs(page))
    assert page.find_all("p", **{"class": "number"}) == []


@pytest.mark.parametrize(
    ("path", "back"),
    [
        ("/join/nope", ("Go to Get our deals by text", "/JOIN")),
        ("/embed/alerts/x", ("Go to Store alerts", "/embed/Alerts")),
    ],
)
def test_a_404_under_a_campaign_links_back_to_it(make_client: MakeClient, path: str, back: tuple[str, str]) -> None:
    page = Page(make_client().get(path).text)
    assert page.find("h1").text == "Page not found"
    assert {a.text: a.attrs["href"] for a in page.find_all("a")} == dict([back])


def test_a_404_elsewhere_links_to_the_only_campaign_or_in_sandbox_mode_to_the_list(
    make_client: MakeClient, tmp_path: Path
) -> None:
    # Two campaigns and a live service: no public list of them, so no link to guess.
    assert Page(make_client().get("/nothing-here").text).find_all("a") == []
    sandbox = Page(make_client(token=None, handler=None).get("/nothing-here").text)
    assert {a.text: a.attrs["href"] for a in sandbox.find_all("a")} == {"See all signup pages": "/"}
    single = make_client(campaigns=_file(tmp_path, ONE_CAMPAIGN))
    assert {a.text: a.attrs["href"] for a in Page(single.get("/nothing-here").text).find_all("a")} == {
        "Go to Get our deals by text": "/JOIN"
    }


@pytest.mark.parametrize("path", ["/nothing-here", "/join/nope", "/"])
def test_an_unknown_address_is_a_friendly_404_page(make_client: MakeClient, path: str) -> None:
    response = make_client().get(path)

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    page = Page(response.text)
    assert page.find("h1").text == "Page not found"
    assert [link.attrs["href"] for link in page.find_all("link", rel="stylesheet")] == ["/static/style.css"]
    assert SANDBOX_BANNER not in response.text


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/join/", "/join"),
        ("/JOIN//", "/JOIN"),
        ("/join/thanks/?pending=1", "/join/thanks?pending=1"),
        ("/healthz/", "/healthz"),
    ],
)
def test_a_trailing_slash_redirects_to_the_public_url_whatever_the_host_header_says(
    make_client: MakeClient, path: str, location: str
) -> None:
    client = make_client(public_url="https://signup.example.org")
    answer = client.get(path, headers={"Host": "evil.example"})
    assert answer.status_code == 307
    assert answer.headers["location"] == "https://signup.example.org" + location
    assert answer.headers["cache-control"] == "no-store"
    assert client.get(answer.headers["location"].removeprefix("https://signup.example.org")).status_code == 200


@pytest.mark.parametrize("path", ["//evil.example/", "/nothing/here/", "///"])
def test_a_trailing_slash_on_an_unknown_path_is_a_404_not_a_redirect(make_client: MakeClient, path: str) -> None:
    answer = make_client().get(path, headers={"Host": "evil.example"})
    assert answer.status_code == 404 and "location" not in answer.headers


def test_posting_to_an_unknown_keyword_is_a_404_and_calls_nobody(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    response = make_client().post("/nothing-here", data={"phone": PHONE})

    assert response.status_code == 404
    assert upstream.requests == []


def test_healthz_answers_ok(make_client: MakeClient) -> None:
    response = make_client().get("/healthz")

    assert response.status_code == 200
    assert response.text == "ok"


# --- signing up ------------------------------------------------------------------------


def test_a_valid_number_is_signed_up_once_and_redirected_to_thanks(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    client = make_client()

    response = submit(client, "/join", PHONE)

    assert response.status_code == 303
    assert without_number(response.headers["location"]) == "/JOIN/thanks"
    assert len(upstream.requests) == 1
    assert upstream.bodies == [
        {
            "PhoneNumber": NORMALISED,
            "GroupIds": [7, 9],
            "CTAMessage": "Test Bakery: reply YES to get deals.",
            "ConfirmMessage": "Test Bakery: you're in! Reply HELP for help, STOP to cancel.",
        }
    ]
    thanks = client.get(response.headers["location"])
    assert thanks.status_code == 200
    page = Page(thanks.text)
    assert page.find("h1").text == "Check your phone"
    assert "Test Bakery Deals" in text_of(page)
    assert "STOP" in text_of(page)


def test_a_campaign_that_always_sends_the_cta_says_so(make_client: MakeClient, upstream: FakeUpstream) -> None:
    response = submit(make_client(), "/Alerts", "+1 506 234 5678")

    assert response.status_code == 303
    assert without_number(response.headers["location"]) == "/Alerts/thanks"
    assert upstream.bodies == [{"PhoneNumber": "15062345678", "GroupIds": [2], "SendCTAMessage": 1}]
    assert type(upstream.bodies[0]["SendCTAMessage"]) is int


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "Enter your mobile number."),
        ("call me maybe", "That doesn't look like a phone number. Check it and try again."),
        ("2015550", "That isn't a valid United States phone number. Check the digits and try again."),
        ("+1 506 234 5678", "Sorry, this program only texts numbers in United States."),
        ("+44 7400 123456", "Sorry, this program only texts numbers in United States."),
        ("9" * 41, "That is too long to be a phone number."),
    ],
)
def test_an_invalid_number_is_shown_again_with_the_message_beside_it(
    make_client: MakeClient, upstream: FakeUpstream, typed: str, message: str
) -> None:
    response = submit(make_client(), "/join", typed)

    assert response.status_code == 422
    page = Page(response.text)
    phone = page.phone_input()
    assert phone.attrs["value"] == typed
    assert phone.attrs["aria-invalid"] == "true"
    assert message in page.described_by(phone)
    assert page.by_id("phone-error").text == message
    assert "phone-error" in phone.attrs["aria-describedby"].split()
    assert page.find("p", **{"class": "disclosure"})
    assert upstream.requests == []


def test_a_post_without_the_phone_field_asks_for_the_number(make_client: MakeClient, upstream: FakeUpstream) -> None:
    response = submit(make_client(), "/join", None)

    assert response.status_code == 422
    assert "Enter your mobile number." in Page(response.text).described_by(Page(response.text).phone_input())
    assert upstream.requests == []


def test_the_typed_value_is_escaped_when_shown_again(make_client: MakeClient) -> None:
    typed = '"><script>alert(1)</script>'

    response = submit(make_client(), "/join", typed)

    assert response.status_code == 422
    assert "<script>alert(1)</script>" not in response.text
    assert Page(response.text).phone_input().attrs["value"] == typed


def test_a_canadian_number_is_accepted_where_the_campaign_allows_canada(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    client = make_client()

    assert submit(client, "/alerts", "(506) 234-5678").status_code == 303
    assert submit(client, "/join", "(506) 234-5678").status_code == 422
    assert [body["PhoneNumber"] for body in upstream.bodies] == ["15062345678"]


# --- ProTexting refuses ---------------------------------------------------------------
# A refusal of the number is told beside the field, in our words; one of the business's
# set-up is the business's to fix: the person is thanked, the signup held. ProTexting's
# own words are for the record and the operator, never for the page.

_OPTED_OUT = "This number opted out of texts from Test Bakery Deals, so it can't be signed up here."
_NUMBER_REFUSED = "We can't send texts to this number. Check it, or use another mobile number."


def _refusal(message: str, code: int | None) -> dict[str, Any]:
    return {"name": "Unprocessable entity", "message": message, "code": code, "status": 422}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            [{"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."}],
            _NUMBER_REFUSED,
            id="array-PhoneNumber",
        ),
        pytest.param(
            _refusal("Phone number is opted out.", 1),
            _OPTED_OUT + " To join again, text START to the number our texts came from.",
            id="code-1-opted-out",
        ),
        pytest.param(
            _refusal("Phone number is generally opted out.", 1000),
            _OPTED_OUT + " To join again, text START to the number our texts came from.",
            id="code-1000-general-opt-out",
        ),
        pytest.param(
            _refusal("Number is blocked.", 1001),
            "This number can't get texts from Test Bakery Deals. Please use another mobile number.",
            id="code-1001-general-block",
        ),
    ],
)
def test_protexting_refusing_the_number_is_told_beside_the_field_in_our_words(
    make_client: MakeClient, body: Any, message: str
) -> None:
    upstream = FakeUpstream(answers(422, body))

    response = submit(make_client(handler=upstream), "/join", PHONE)

    assert response.status_code == 422
    page = Page(response.text)
    phone = page.phone_input()
    assert phone.attrs["value"] == PHONE
    assert phone.attrs["aria-invalid"] == "true"
    assert page.described_by(phone) == f"We'll text you to confirm. {message}"
    assert page.alert_text() == ""
    for theirs in (body[0] if isinstance(body, list) else body)["message"], "Phone number is":
        assert theirs not in response.text
    assert len(upstream.requests) == 1


def test_an_opted_out_number_is_told_to_text_the_keyword_where_the_campaign_has_a_number(
    make_client: MakeClient, tmp_path: Any
) -> None:
    campaigns = tmp_path / "texting.toml"
    campaigns.write_text(CAMPAIGNS_TOML + 'sms_number = "12345"\nsms_keyword = "BREAD"\n', encoding="utf-8")
    client = make_client(handler=answers(422, _refusal("Phone number is opted out.", 1)), campaigns=campaigns)

    page = Page(submit(client, "/alerts", PHONE).text)

    assert page.described_by(page.phone_input()).endswith(
        "This number opted out of texts from Test Bakery Alerts, so it can't be signed up here. "
        "To join again, text BREAD to 12345."
    )


def _states(client: TestClient) -> dict[str, int]:
    """The signups kept, by state, once the outcomes under way are recorded."""
    settled(client)
    outbox = client.app.state.resources.delivery.outbox  # type: ignore[attr-defined]
    return {state: count for _, state, count in client.portal.call(outbox.counts)}


SET_UP_REFUSALS = [
    pytest.param([{"field": "GroupIds", "message": "Group Ids is invalid."}], "group_ids", id="array-GroupIds"),
    pytest.param([{"field": "CTAMessage", "message": "CTA Message is invalid."}], "field", id="array-other-field"),
    pytest.param([{"message": "Something is off."}], "other", id="array-no-field"),
    pytest.param(_refusal("Message contains forbidden words.", 2), "forbidden_words", id="code-2-forbidden-words"),
    pytest.param(_refusal("Not enough credit.", 5), "credit", id="code-5-credit"),
    pytest.param(_refusal("API application is not activated.", 6), "api_not_activated", id="code-6-not-activated"),
    pytest.param(_refusal("Invalid IP address.", 7), "ip_not_allowed", id="code-7-ip"),
    pytest.param(_refusal("Something new.", 77), "other", id="code-unknown"),
    pytest.param(_refusal("No code at all.", None), "other", id="no-code"),
]
UNREADABLE_422S = [
    pytest.param(text, id=name)
    for name, text in [("html", "<html>Oops, Unprocessable</html>"), ("empty-list", "[]"), ("json-string", '"Oops"')]
]


@pytest.mark.parametrize(("body", "cause"), SET_UP_REFUSALS)
def test_protexting_refusing_the_set_up_thanks_the_person_and_holds_the_signup(
    make_client: MakeClient, body: Any, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(handler=answers(422, body))

    response = submit(client, "/join", PHONE, follow_redirects=True)

    # As for a signup ProTexting has yet to take: thanked, "shortly", nothing to put right.
    assert (response.status_code, response.url.path, response.url.params.get("pending")) == (200, "/JOIN/thanks", "1")
    assert "You'll get a text shortly" in response.text
    theirs = (body[0] if isinstance(body, list) else body)["message"]
    assert theirs not in response.text
    assert _states(client) == {"held": 1}
    # The operator is told what to fix, and how to send the held signups then.
    [line] = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "app.delivery"]
    assert "signup 1 (JOIN) held" in line.getMessage()
    assert repr(theirs) in line.getMessage()
    assert "optin retry-failed --held" in line.getMessage()
    assert line.__dict__["cause"] == cause  # the JSON line's field
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("text", UNREADABLE_422S)
def test_a_422_we_cannot_read_holds_the_signup_and_thanks_the_person(
    make_client: MakeClient, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(handler=answers(422, text=text))

    response = submit(client, "/join", PHONE, follow_redirects=True)

    assert (response.url.path, response.url.params.get("pending")) == ("/JOIN/thanks", "1")
    assert "Oops" not in response.text
    assert _states(client) == {"held": 1}
    assert any("could not be read" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_the_api_answers_a_held_signup_as_a_queued_one(make_client: MakeClient) -> None:
    client = make_client(handler=answers(422, _refusal("Not enough credit.", 5)))
    token = client.get("/api/v1/campaigns/join").json()["token"]

    answer = client.post("/api/v1/campaigns/join/opt-ins", json={"phone": PHONE, "token": token})

    assert (answer.status_code, answer.json()) == (202, {"state": "pending"})
    assert "credit" not in answer.text
    assert _states(client) == {"held": 1}


def test_a_refusal_of_the_number_and_the_set_up_together_tells_the_person_of_the_number(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    # They can put the number right now; the operator is told of the rest.
    body = [
        {"field": "PhoneNumber", "message": "Phone Number is invalid."},
        {"field": "GroupIds", "message": "Group Ids cannot be blank."},
    ]
    client = make_client(handler=answers(422, body))

    response = submit(client, "/join", PHONE)

    page = Page(response.text)
    assert response.status_code == 422
    assert _NUMBER_REFUSED in page.described_by(page.phone_input())
    assert page.alert_text() == ""
    assert "Group Ids" not in response.text
    assert _states(client) == {"rejected": 1}
    assert "Group Ids cannot be blank." in " ".join(r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_a_duplicate_of_a_held_signup_is_thanked_and_not_sent_again(make_client: MakeClient) -> None:
    upstream = FakeUpstream(answers(422, _refusal("Not enough credit.", 5)))
    client = make_client(handler=upstream)

    first = submit(client, "/join", PHONE)
    again = submit(client, "/join", PHONE)

    assert without_number(first.headers["location"]) == without_number(again.headers["location"])
    assert without_number(first.headers["location"]) == "/JOIN/thanks?pending=1"
    # Held signups go once the set-up is fixed: a second would make a second text.
    assert _states(client) == {"held": 1, "duplicate": 1}
    assert len(upstream.requests) == 1


# --- ProTexting unavailable ------------------------------------------------------------
# The one place that states what a visitor sees when ProTexting does not decide: the
# signup is kept, and the thanks page says the text comes shortly.

_DOWN = {"name": "Service Unavailable", "message": "Service temporarily unavailable.", "code": 0, "status": 503}

UNAVAILABLE = [
    pytest.param({"handler": raises(httpx.ReadTimeout)}, PHONE, id="read-timeout"),
    pytest.param({"handler": raises(httpx.ConnectTimeout)}, PHONE, id="connect-timeout"),
    pytest.param({"handler": raises(httpx.ConnectError)}, PHONE, id="connect-error"),
    pytest.param({"handler": None, "api_url": "closed-port"}, PHONE, id="refused-on-loopback"),
    pytest.param({"handler": answers(500, text="<h1>Internal Server Error</h1>")}, PHONE, id="500"),
    pytest.param({"handler": answers(503, _DOWN)}, PHONE, id="503"),
    pytest.param(
        {"handler": answers(429, {"message": "Rate limit exceeded."}, headers={"X-Rate-Limit-Remaining": "0"})},
        PHONE,
        id="429",
    ),
    pytest.param(
        {"handler": answers(401, {"message": "Your request was made with invalid credentials."})}, PHONE, id="401"
    ),
    pytest.param({"handler": answers(403, {"message": "Forbidden."})}, PHONE, id="403"),
    pytest.param({"token": None, "handler": None}, "(201) 555-0104", id="sandbox-503"),
]

_NOT_FOR_VISITORS = [
    "Traceback",
    "Internal Server Error",
    "httpx",
    "Exception",
    "ConnectError",
    "ReadTimeout",
    "HTTP 5",
    "api.protexting",
]


@pytest.mark.parametrize(("client_args", "typed"), UNAVAILABLE)
def test_protexting_unavailable_gives_a_calm_page(
    make_client: MakeClient, client_args: dict[str, Any], typed: str
) -> None:
    if client_args.get("api_url") == "closed-port":
        client_args = client_args | {"api_url": f"http://127.0.0.1:{closed_port()}/v1"}
    client = make_client(**client_args)

    response = submit(client, "/join", typed, follow_redirects=True)

    assert response.status_code < 500
    assert response.headers["content-type"].startswith("text/html")
    for words in _NOT_FOR_VISITORS:
        assert words not in response.text
    page = Page(response.text)
    plain_form = Page(client.get("/join").text)
    # The person is thanked, and told the text is still to come: not "we've sent it".
    assert (response.status_code, response.url.path) == (200, "/JOIN/thanks")
    assert response.url.params["pending"] == "1"
    assert page.find("h1").text == "Check your phone"
    assert paragraphs(page) - paragraphs(plain_form) == {
        f"We'll text •••-•••-{typed[-4:]}",
        "Thanks, you're on the list for Test Bakery Deals. You'll get a text shortly to confirm: "
        "reply YES to it to start receiving messages.",
        "Reply STOP at any time to cancel, HELP for help.",
        "Wrong number? Start again",
    }
    assert [link.attrs["href"] for link in page.find_all("link", rel="stylesheet")] == ["/static/style.css"]


# --- sandbox mode ----------------------------------------------------------------------


def test_sandbox_shows_the_banner_on_every_page(make_client: MakeClient) -> None:
    client = make_client(token=None, handler=None)

    pages = {
        "signup": client.get("/join"),
        "thanks": client.get("/join/thanks"),
        "not found": client.get("/nothing-here"),
        "index": client.get("/"),
        "invalid": submit(client, "/join", "nope"),
    }

    for name, response in pages.items():
        assert response.status_code < 500, name
        banner = [e for e in Page(response.text).elements if SANDBOX_BANNER in e.text and e.tag == "p"]
        assert banner, f"no sandbox banner on the {name} page"


def test_live_mode_shows_no_banner(make_client: MakeClient) -> None:
    client = make_client()

    for path in ["/join", "/join/thanks", "/nothing-here"]:
        assert SANDBOX_BANNER not in client.get(path).text


def test_sandbox_front_page_lists_the_campaigns_and_live_mode_has_none(make_client: MakeClient) -> None:
    sandbox = make_client(token=None, handler=None).get("/")
    live = make_client().get("/")

    assert sandbox.status_code == 200
    assert {"/JOIN", "/Alerts"} <= set(Page(sandbox.text).urls())
    assert live.status_code == 404


def test_sandbox_signs_up_a_normal_number(make_client: MakeClient) -> None:
    client = make_client(token=None, handler=None)

    response = submit(client, "/join", PHONE)

    assert response.status_code == 303
    assert without_number(response.headers["location"]) == "/JOIN/thanks"
    assert Page(client.get("/JOIN/thanks").text).find("h1").text == "Check your phone"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("(201) 555-0100", _NUMBER_REFUSED),
        ("(201) 555-0101", _OPTED_OUT),
    ],
)
def test_sandbox_numbers_refused_by_protexting_show_beside_the_field(
    make_client: MakeClient, typed: str, message: str
) -> None:
    response = submit(make_client(token=None, handler=None), "/join", typed)

    assert response.status_code == 422
    page = Page(response.text)
    assert message in page.described_by(page.phone_input())
    assert page.phone_input().attrs["aria-invalid"] == "true"


@pytest.mark.parametrize("typed", ["(201) 555-0102", "(201) 555-0103"])
def test_sandbox_numbers_refused_for_the_set_up_are_thanked_and_held(make_client: MakeClient, typed: str) -> None:
    client = make_client(token=None, handler=None)

    response = submit(client, "/join", typed)

    assert without_number(response.headers["location"]) == "/JOIN/thanks?pending=1"
    assert _states(client) == {"held": 1}


def test_sandbox_never_uses_the_network(make_client: MakeClient) -> None:
    # An unreachable API URL and no transport: sandbox mode must answer in-process anyway.
    client: TestClient = make_client(token=None, handler=None, api_url=f"http://127.0.0.1:{closed_port()}/v1")

    assert submit(client, "/join", PHONE).status_code == 303


def test_source_parameters_ride_along_in_the_form_and_nothing_else(make_client: MakeClient) -> None:
    from urllib.parse import parse_qs

    client = make_client()
    html = client.get('/join?src=poster-7&utm_source=qr&evil=1&utm_term="><b>x').text
    assert "<b>x" not in html  # escaped, never reflected as markup
    action = Page(html).find("form").attrs["action"]
    assert action.startswith("/JOIN?")
    assert parse_qs(urlsplit(action).query) == {"src": ["poster-7"], "utm_source": ["qr"], "utm_term": ['"><b>x']}


def test_head_of_the_signup_page_answers_like_get(make_client: MakeClient) -> None:
    client = make_client()
    head = client.head("/join")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-security-policy"] == client.get("/join").headers["content-security-policy"]


def _get_paths(routes: list[BaseRoute]) -> Iterator[str]:
    """A path for each GET route (and the static files)."""
    for route in routes:
        if isinstance(route, Mount):
            # The static files, or the FastAPI app mounted below the campaign pages.
            yield from (
                (route.path + path for path in _get_paths(route.routes))
                if route.routes
                else [route.path + "/style.css"]
            )
        elif (included := getattr(route, "original_router", None)) is not None:  # FastAPI's include_router
            yield from _get_paths(included.routes)
        elif "GET" in (getattr(route, "methods", None) or ()) and "{name}" not in route.path:
            # (/assets/{name}, a campaign's logo or stylesheet: tests/test_branding.py)
            yield re.sub(r"\{keyword(:\w+)?\}", "join", route.path)


def test_head_answers_like_get_on_every_get_route(make_client: MakeClient) -> None:
    # Sandbox: the front page lists the campaigns. With the metrics on, and their token
    # on every request.
    client = make_client(token=None, metrics_token="a-metrics-token-of-32-characters")
    client.headers["authorization"] = "Bearer a-metrics-token-of-32-characters"
    paths = list(_get_paths(client.app.routes))
    assert {"/healthz", "/", "/join", "/join/thanks", "/api/v1/campaigns/join", "/openapi.json", "/metrics"} <= set(
        paths
    )
    for path in paths:
        get, head = client.get(path), client.head(path)
        assert (path, head.status_code) == (path, 200)
        assert head.content == b""
        # The same headers, Content-Length included: what GET would send.
        assert dict(head.headers) == dict(get.headers), path


def test_an_unexpected_failure_while_signing_up_is_a_calm_500_page(
    make_client: MakeClient, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug with internal details")

    monkeypatch.setattr(client.app.state.resources.delivery, "submit", broken)  # type: ignore[attr-defined]
    # As a browser sees it: the server's error handler answers, nothing is re-raised.
    browser = TestClient(client.app, raise_server_exceptions=False, follow_redirects=False)
    answer = submit(browser, "/join", PHONE)

    assert answer.status_code == 500
    assert "Your signup was not saved" in answer.text
    assert "internal details" not in answer.text and "Traceback" not in answer.text
    assert upstream.requests == []


def test_the_signup_answer_carries_the_campaigns_headers(make_client: MakeClient) -> None:
    client = make_client()
    thanked, corrected = submit(client, "/join", PHONE), submit(client, "/join", "not a number")
    assert thanked.status_code == 303 and corrected.status_code == 422
    for answer in (thanked, corrected):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    # The form shown again is a page of the campaign, framed where the campaign allows.
    assert "frame-ancestors" in corrected.headers["content-security-policy"]
