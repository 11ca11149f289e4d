"""No input yields a 5xx: hypothesis on phone and form parsing, schemathesis on the API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.phone import PhoneError, normalise
from app.web.messages import say
from tests.support.blackhole import Relay
from tests.support.campaigns import CAMPAIGNS_TOML, write_campaigns
from tests.support.servers import Server, app_server

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.text(max_size=80), st.sampled_from(["US", "CA", "GB", "MX", "DE"]))
def test_any_text_is_a_number_or_a_phone_error(text: str, region: str) -> None:
    try:
        digits = normalise(text, default_country=region, countries=[region])
    except PhoneError as exc:
        assert say(exc.problem)  # something the person can read
    else:
        assert digits.isdigit() and 8 <= len(digits) <= 15


@FAST
@given(st.text(alphabet="0123456789+-(). ", min_size=10, max_size=20))
def test_a_number_normalises_the_same_however_it_is_spaced(text: str) -> None:
    try:
        once = normalise(text, default_country="US", countries=["US"])
    except PhoneError:
        return
    assert normalise(" ".join(once), default_country="US", countries=["US"]) == once  # pure digits again


@pytest.fixture(scope="module")
def protexting() -> Iterator[Relay]:
    """Where the fuzz server would reach ProTexting, were it not sandboxed: a port that
    counts every connection made to it (and answers none)."""
    with Relay() as hole:
        yield hole


@pytest.fixture(scope="module")
def fuzz_app(tmp_path_factory: pytest.TempPathFactory, protexting: Relay) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("fuzz")
    campaigns = write_campaigns(workdir, CAMPAIGNS_TOML)
    env = {
        "OPTIN_MIN_FILL_SECONDS": "0",
        "OPTIN_LIMIT_PER_IP": "",
        "OPTIN_LIMIT_PER_NUMBER": "",
        "OPTIN_LIMIT_PER_PREFIX": "",
        "OPTIN_LIMIT_PER_CAMPAIGN": "",
    }
    # No token: sandbox mode, no texts, ever; PROTEXTING_API_URL set all the same, to
    # see that nothing goes there.
    with app_server(workdir, campaigns=campaigns, env=env, api_url=protexting.url("http", "/v1")) as app:
        yield app


@pytest.fixture(scope="module")
def server(fuzz_app: Server) -> str:
    return fuzz_app.url


@pytest.fixture(scope="module")
def http(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, trust_env=False, timeout=10) as client:
        yield client


@FAST
@given(
    body=st.binary(max_size=2048),
    kind=st.sampled_from(
        ["application/x-www-form-urlencoded", "multipart/form-data", "application/json", "text/plain", ""]
    ),
)
def test_any_body_posted_to_the_form_gets_an_answer_below_500(http: httpx.Client, body: bytes, kind: str) -> None:
    response = http.post("/join", content=body, headers={"content-type": kind} if kind else {})
    assert response.status_code < 500, response.text[:300]


@FAST
@given(
    fields=st.dictionaries(st.sampled_from(["phone", "form_token", "website", "x"]), st.text(max_size=200), max_size=4)
)
def test_any_form_fields_get_an_answer_below_500(http: httpx.Client, fields: dict[str, str]) -> None:
    response = http.post("/join", data=fields)
    assert response.status_code < 500, response.text[:300]


def test_the_json_api_never_answers_5xx(server: str, http: httpx.Client) -> None:
    """Every operation of the OpenAPI schema, with bodies schemathesis generates from it."""
    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} == {
        "/api/v1/campaigns/{keyword}",
        "/api/v1/campaigns/{keyword}/opt-ins",
        "/api/v1/opt-outs",
    }
    seen: set[int] = set()

    for operation in operations:

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            # Most cases name a real campaign and half carry a real token, so generated
            # bodies reach the number rules and the delivery path, not only the 404
            # and the token check.
            salt = len(repr(case.body)) + len(str(case.path_parameters))
            if salt % 4 and case.path_parameters:
                case.path_parameters = {"keyword": ("join", "JOIN", "Alerts")[salt % 3]}
            if isinstance(case.body, dict) and case.path.endswith("/opt-ins") and salt % 2:
                info = http.get(f"/api/v1/campaigns/{case.path_parameters['keyword']}")
                if info.status_code == 200:
                    case.body["token"] = info.json()["token"]
            if isinstance(case.body, dict) and case.path.endswith("/opt-outs") and salt % 2:
                case.body["token"] = http.get("/api/v1/opt-outs").json()["token"]
            response = case.call(base_url=server)
            seen.add(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
            )

        run()
    assert max(seen) < 500
    assert {403, 422} <= seen, seen  # both the guard and the number rules were reached


def test_the_fuzz_server_is_sandboxed_and_kept_away_from_protexting(
    fuzz_app: Server, http: httpx.Client, protexting: Relay
) -> None:
    # Last in this file: by now every fuzz test above has run against this server.
    assert "Sandbox: no texts are sent" in http.get("/join").text
    assert "sandbox mode, no texts are sent" in fuzz_app.stderr
    assert protexting.connections == 0, "the fuzzed server called the PROTEXTING_API_URL it was given"
