"""The domain's signup knows nothing of HTTP: given a `Visit` and a `Submission` it
returns a `Result` whose problems are codes, and the edge chooses the words."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from app.guard import CrossSiteRequest
from app.problems import Problem
from app.signup import Result, Status, Submission, sign_up
from app.visit import Visit
from app.web.messages import say

from .conftest import FakeUpstream, MakeClient, answers

GOOD = "(201) 555-0123"
# Where our own page posts from (the tests' OPTIN_PUBLIC_URL is the default).
OWN = Visit(client_ip="198.51.100.7", user_agent="phone", origin="http://127.0.0.1:8000", fetch_site=None, source={})


def run(client: Any, submission: Submission, visit: Visit = OWN) -> Result:
    resources, site = client.app.state.resources, client.app.state.site
    listing = site.listing("JOIN")
    result: Result = client.portal.call(lambda: sign_up(resources, visit, listing, submission))
    return result


def submission(client: Any, phone: str = GOOD, **fields: Any) -> Submission:
    token = client.app.state.resources.guard.tokens.issue("join")
    return Submission(phone=phone, token=token, **fields)


def test_a_signup_made_from_a_visit_alone_is_delivered_and_recorded_from_it(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    client = make_client()
    visit = Visit(
        client_ip="203.0.113.9", user_agent="Poster/1", origin=None, fetch_site=None, source={"src": "window"}
    )

    assert run(client, submission(client), visit) == Result(Status.DELIVERED, phone="12015550123")
    assert [body["PhoneNumber"] for body in upstream.bodies] == ["12015550123"]

    async def export() -> list[dict[str, Any]]:
        return [row async for row in client.app.state.resources.delivery.outbox.export()]

    rows = client.portal.call(export)
    assert [(r["client_ip"], r["user_agent"], r["page_url"]) for r in rows] == [
        ("203.0.113.9", "Poster/1", "http://127.0.0.1:8000/JOIN?src=window")
    ]


@pytest.mark.parametrize(
    ("typed", "code", "params"),
    [
        ("", "phone.missing", {}),
        ("not a number", "phone.not_a_number", {}),
        ("+44 7911 123456", "phone.country_not_served", {"regions": ("US",)}),
        ("(800) 555-0199", "phone.type_not_allowed", {"number_type": "toll_free"}),
    ],
)
def test_a_number_the_campaign_cannot_text_is_refused_with_a_code_and_nothing_is_sent(
    make_client: MakeClient, upstream: FakeUpstream, typed: str, code: str, params: dict[str, Any]
) -> None:
    client = make_client()

    result = run(client, submission(client, typed))

    assert result == Result(Status.REFUSED, (Problem("phone", code, params),))
    assert say(result.problems[0])  # the edge has words for it
    assert upstream.requests == []


def test_protextings_refusal_of_the_number_is_a_result_in_our_words_not_its_own(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    upstream.respond = answers(422, [{"field": "PhoneNumber", "message": "The number opted out."}])
    client = make_client()

    result = run(client, submission(client))

    assert result == Result(Status.REFUSED, (Problem("phone", "protexting.number_refused"),))


def test_protextings_refusal_of_the_set_up_is_a_held_result(make_client: MakeClient, upstream: FakeUpstream) -> None:
    upstream.respond = answers(422, [{"field": "GroupIds", "message": "Group Ids is invalid."}])
    client = make_client()

    assert run(client, submission(client)) == Result(Status.HELD, phone="12015550123")


def test_a_trap_and_a_second_press_are_results_not_errors(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client()
    assert run(client, submission(client, honeypot="http://spam.example")) == Result(Status.TRAPPED)

    again = submission(client)
    assert run(client, again) == Result(Status.DELIVERED, phone="12015550123")
    # The same token and number: the first's answer.
    assert run(client, again) == Result(Status.DELIVERED, phone="12015550123")
    other = Submission(phone="(201) 555-0124", token=again.token)
    assert run(client, other) == Result(Status.REFUSED, (Problem("token", "token.used"),))
    assert len(upstream.requests) == 1


def test_the_guard_refuses_a_visit_from_another_site(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client()
    forged = Visit(client_ip="198.51.100.7", user_agent="x", origin="https://evil.example", fetch_site=None, source={})
    told = Visit(client_ip="198.51.100.7", user_agent="x", origin=None, fetch_site="cross-site", source={})

    for visit in (forged, told):
        with pytest.raises(CrossSiteRequest):
            run(client, submission(client), visit)
    assert upstream.requests == []


# The edge (app/web/), the storage (app/storage/) and the composition may import the
# web framework and SQLAlchemy; the domain (the rest of app/) may not. The fake
# ProTexting is a web app of its own.
EDGE = {"main", "cli", "sandbox"}
# Settings validates a database URL with SQLAlchemy's parser; services composes storage.
ALLOWED = {"settings": {"sqlalchemy"}, "services": set()}
FRAMEWORKS = {"starlette", "fastapi", "sqlalchemy"}


def test_the_domain_imports_neither_the_web_framework_nor_sqlalchemy() -> None:
    app = Path(__file__).resolve().parent.parent / "app"
    offenders = {}
    for module in sorted(app.glob("*.py")):
        if module.stem in EDGE:
            continue
        imported = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
        found = (imported & FRAMEWORKS) - ALLOWED.get(module.stem, set())
        if found:
            offenders[module.stem] = sorted(found)
    assert offenders == {}
