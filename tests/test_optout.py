"""The web opt-out: /stop and /{keyword}/stop, the JSON twin, and the call that follows."""

from __future__ import annotations

import json

from tests.support.clocks import Clock, use_clock
from tests.support.page import Page
from tests.support.records import settled
from tests.support.visitor import Visitor, form_fields

from .conftest import FakeUpstream, MakeClient, answers, json_response

PHONE = "(201) 555-0123"
DIGITS = "12015550123"


def drain(client: object) -> None:
    """Let the worker deliver what is due, as `optin worker --once` does."""
    client.portal.call(client.app.state.resources.delivery.drain)  # type: ignore[attr-defined]


def records(client: object) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        outbox = client.app.state.resources.delivery.outbox  # type: ignore[attr-defined]
        return [row async for row in outbox.export()]

    return client.portal.call(read)  # type: ignore[attr-defined,no-any-return]


def opt_out_calls(upstream: FakeUpstream) -> list[dict[str, object]]:
    return [json.loads(r.content) for r in upstream.requests if r.url.path.endswith("/contacts/opt-out")]


def opt_in_calls(upstream: FakeUpstream) -> list[dict[str, object]]:
    return [json.loads(r.content) for r in upstream.requests if r.url.path.endswith("/contacts-opt-in/create")]


def test_a_person_stops_every_text_and_their_waiting_signup_is_never_sent(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    upstream.respond = answers(503, {"name": "Service Unavailable", "message": "down", "code": 0, "status": 503})
    client = make_client()
    signed = Visitor(client, "/join").submit(PHONE)
    assert signed.headers["location"].startswith("/JOIN/thanks?pending=1")  # stored, waiting for ProTexting
    settled(client)

    page = client.get("/stop")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    notice = Page(page.text).find("p", id="notice").text
    # What stops: every text of the account, every program; and the one text that may follow.
    assert "every text message from Test Bakery Deals and Test Bakery Alerts" in notice
    assert "one last text" in notice
    response = Visitor(client, "/stop").submit(PHONE, headers={"User-Agent": "Phone/1.0"})
    assert (response.status_code, response.headers["location"]) == (303, "/stop/done")
    done = client.get("/stop/done").text
    assert "every" in done and "one last text confirming" in done

    upstream.respond = lambda request: json_response(201, {"Id": 1, "Number": DIGITS, "OptedOut": 1})
    drain(client)
    # ProTexting was told to opt the number out, and never sent the waiting signup.
    assert opt_out_calls(upstream) == [{"PhoneNumber": DIGITS}]
    assert len(opt_in_calls(upstream)) == 1  # the one attempt while the person waited (503)
    signup, stopped = records(client)
    assert (signup["kind"], signup["state"]) == ("opt_in", "cancelled")
    assert (stopped["kind"], stopped["state"], stopped["phone"]) == ("opt_out", "delivered", DIGITS)
    assert stopped["user_agent"] == "Phone/1.0" and stopped["client_ip"] == "testclient"
    assert stopped["page_url"] == "http://127.0.0.1:8000/stop" and stopped["language"] == "en"
    assert "every" in str(stopped["disclosure_text"]) and "one last text" in str(stopped["disclosure_text"])


def test_the_same_number_twice_is_sent_once(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client()
    for _ in range(2):
        assert Visitor(client, "/stop").submit(PHONE).status_code == 303
    drain(client)
    assert opt_out_calls(upstream) == [{"PhoneNumber": DIGITS}]
    assert [r["state"] for r in records(client)] == ["delivered", "duplicate"]


def test_a_signup_after_an_opt_out_is_new_consent_and_is_sent(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client()
    Visitor(client, "/stop").submit(PHONE)
    drain(client)
    thanks = Visitor(client, "/join").submit(PHONE).headers["location"]
    assert thanks.startswith("/JOIN/thanks") and "pending" not in thanks  # sent while the person waited
    settled(client)
    assert [call["PhoneNumber"] for call in opt_in_calls(upstream)] == [DIGITS]


def test_every_signup_page_and_thanks_page_links_to_its_opt_out_page(make_client: MakeClient) -> None:
    client = make_client()
    for path in ("/join", "/JOIN/thanks", "/embed/join"):
        links = [a.attrs["href"] for a in Page(client.get(path).text).find_all("a")]
        assert "/JOIN/stop" in links, (path, links)
    # The embed opens it in a tab of its own: the opt-out page is never framed.
    [link] = [a for a in Page(client.get("/embed/join").text).find_all("a") if a.attrs["href"] == "/JOIN/stop"]
    assert link.attrs["target"] == "_blank"
    assert "frame-ancestors 'none'" in client.get("/JOIN/stop").headers["content-security-policy"]


def test_a_campaigns_opt_out_page_wears_its_look_and_records_it(make_client: MakeClient) -> None:
    client = make_client()
    page = client.get("/join/stop")
    assert page.status_code == 200
    assert "not only Test Bakery Deals" in Page(page.text).find("p", id="notice").text
    assert Visitor(client, "/join/stop").submit(PHONE).headers["location"] == "/JOIN/stop/done"
    [stopped] = records(client)
    assert (stopped["campaign"], stopped["page_url"]) == ("JOIN", "http://127.0.0.1:8000/JOIN/stop")
    assert client.get("/nope/stop").status_code == 404


def test_the_opt_out_form_is_guarded_as_a_signup_is(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client()
    html = client.get("/stop").text
    # No token, another site's page, the honeypot, a number that will not do.
    assert client.post("/stop", data={"phone": PHONE}).status_code == 400
    forged = client.post("/stop", data=form_fields(html, PHONE), headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    trapped = client.post("/stop", data=form_fields(html, PHONE, website="http://spam"))
    assert (trapped.status_code, trapped.headers["location"]) == (303, "/stop/done")
    bad = Visitor(client, "/stop").submit("555")
    assert bad.status_code == 422
    assert Page(bad.text).find("p", id="phone-error").text
    assert Page(bad.text).find("input", id="phone").attrs["value"] == "555"
    # A token of a signup page does not open this one, nor one of this the signup's.
    signup_token = Page(client.get("/join").text).find("input", name="form_token").attrs["value"]
    assert client.post("/stop", data={"phone": PHONE, "form_token": signup_token}).status_code == 400
    assert records(client) == [] and upstream.requests == []


def test_opt_outs_count_against_the_address_limit(make_client: MakeClient) -> None:
    client = make_client(limit_per_ip="2/minute")
    assert [Visitor(client, "/stop").submit(PHONE).status_code for _ in range(3)] == [303, 303, 429]


def test_the_json_api_records_an_opt_out_as_guarded(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client()
    info = client.get("/api/v1/opt-outs").json()
    assert "every" in info["notice_html"]
    answer = client.post("/api/v1/opt-outs", json={"phone": PHONE, "token": info["token"]})
    assert (answer.status_code, answer.json()) == (202, {"state": "pending"})
    bad = client.post(
        "/api/v1/opt-outs", json={"phone": "555", "token": client.get("/api/v1/opt-outs").json()["token"]}
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "phone"
    forged = client.post(
        "/api/v1/opt-outs", json={"phone": PHONE, "token": info["token"]}, headers={"Origin": "https://evil.example"}
    )
    assert forged.status_code == 403
    assert client.post("/api/v1/opt-outs", json={"phone": PHONE, "token": "forged"}).status_code == 403
    drain(client)
    assert opt_out_calls(upstream) == [{"PhoneNumber": DIGITS}]


def test_the_sandbox_answers_the_opt_out(make_client: MakeClient) -> None:
    client = make_client(token=None)
    assert Visitor(client, "/stop").submit(PHONE).status_code == 303
    drain(client)
    assert [r["state"] for r in records(client)] == ["delivered"]


def test_an_opt_out_sent_too_fast_is_asked_to_confirm_and_a_bot_twice_is_trapped(make_client: MakeClient) -> None:
    client = make_client(min_fill_seconds=2)
    clock = use_clock(client, Clock())
    html = client.get("/stop").text
    again = client.post("/stop", data=form_fields(html, PHONE))
    # The form again, the number kept, asking to press once more; nothing recorded yet.
    assert again.status_code == 200 and "once more to confirm" in again.text
    assert Page(again.text).find("input", id="phone").attrs["value"] == PHONE
    assert records(client) == []
    # A bot sends the confirming form at once: trapped, answered as a person is.
    trapped = client.post("/stop", data=form_fields(again.text, PHONE))
    assert (trapped.status_code, trapped.headers["location"]) == (303, "/stop/done") and records(client) == []
    # A person presses it a moment later: recorded.
    clock.advance(3)
    done = client.post("/stop", data=form_fields(again.text, PHONE))
    assert done.status_code == 303 and [r["kind"] for r in records(client)] == ["opt_out"]
