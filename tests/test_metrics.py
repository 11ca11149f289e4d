"""`/metrics`: what an operator's Prometheus scrapes. It exists only with a token, answers
only that token, and counts what visitors did, by campaign and outcome, in one process
or across several workers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import app_server, wait_until
from tests.support.visitor import Visitor

from .conftest import FakeUpstream, MakeClient

METRICS_TOKEN = "a-metrics-token-of-32-characters"
BEARER = {"authorization": f"Bearer {METRICS_TOKEN}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def submissions(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        dict(labels)["outcome"]: value
        for (name, labels), value in scraped.items()
        if name == "optin_submissions_total" and dict(labels)["campaign"] == "join"
    }


def test_without_a_token_there_is_no_metrics_page(make_client: MakeClient) -> None:
    client = make_client()
    assert client.get("/metrics", headers=BEARER).status_code == 404


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong-token-wrong-token-wrong", f"Basic {METRICS_TOKEN}", f"Bearer {METRICS_TOKEN}x", "Bearer"],
)
def test_metrics_answer_only_their_token(make_client: MakeClient, authorization: str | None) -> None:
    client = make_client(metrics_token=METRICS_TOKEN)
    headers = {"authorization": authorization} if authorization else {}

    answer = client.get("/metrics", headers=headers)

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "optin_" not in answer.text


def test_the_scrape_counts_page_views_and_each_outcome_by_campaign(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    client = make_client(metrics_token=METRICS_TOKEN, limit_per_number="2/hour")
    visitor = Visitor(client)
    assert visitor.submit("(201) 555-0123").status_code == 303  # delivered
    assert visitor.submit("(201) 555-0127").status_code == 303  # delivered
    assert visitor.submit("not a number").status_code == 422
    assert visitor.submit("(201) 555-0123").status_code == 303  # the first's thanks: not sent twice
    assert visitor.submit("(201) 555-0123").status_code == 429  # the number's limit
    assert visitor.submit("(201) 555-0124", website="http://spam.example").status_code == 303  # trapped
    foreign = {"origin": "https://evil.example"}
    assert visitor.submit("(201) 555-0125", headers=foreign).status_code == 403
    assert client.post("/join", data={"phone": "(201) 555-0126", "form_token": "forged"}).status_code == 400
    client.get("/join?src=poster-1")  # views by campaign only: not by src

    scrape = client.get("/metrics", headers=BEARER)

    assert scrape.status_code == 200 and scrape.headers["content-type"].startswith("text/plain")
    scraped = samples(scrape.text)
    assert scraped[("optin_page_views_total", (("campaign", "join"),))] == 8  # seven opened by the visitor, one more
    assert submissions(scraped) == {
        "delivered": 3,
        "invalid_number": 1,
        "rate_limited": 1,
        "bot_trapped": 1,
        "cross_site": 1,
        "bad_token": 1,
    }
    assert scraped[("optin_outbox_jobs", (("state", "delivered"),))] == 2
    assert scraped[("optin_outbox_jobs", (("state", "duplicate"),))] == 1
    assert scraped[("optin_delivery_paused", ())] == 0
    assert "poster-1" not in scrape.text and METRICS_TOKEN not in scrape.text
    assert len(upstream.requests) == 2


def test_a_form_sent_too_fast_and_a_second_too_fast_are_counted_apart(make_client: MakeClient) -> None:
    from tests.support.clocks import Clock, use_clock
    from tests.support.visitor import token_of

    client = make_client(metrics_token=METRICS_TOKEN, min_fill_seconds=2)
    use_clock(client, Clock())  # it never moves: every submission is too fast
    confirm = Visitor(client).submit("(201) 555-0123")
    assert confirm.status_code == 200
    trapped = client.post("/join", data={"phone": "(201) 555-0123", "form_token": token_of(confirm.text)})
    assert trapped.status_code == 303

    scraped = samples(client.get("/metrics", headers=BEARER).text)
    assert submissions(scraped) == {"too_fast": 1, "bot_trapped": 1}


def test_a_number_refused_by_protexting_and_a_queued_signup_are_counted_apart(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    from .conftest import answers

    client = make_client(metrics_token=METRICS_TOKEN)
    upstream.respond = answers(422, [{"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."}])
    assert Visitor(client).submit().status_code == 422
    upstream.respond = answers(503, {"message": "Service Unavailable"})
    assert Visitor(client).submit("(201) 555-0199").status_code == 303

    assert submissions(samples(client.get("/metrics", headers=BEARER).text)) == {"refused": 1, "queued": 1}


def test_two_workers_in_one_process_group_give_one_total(tmp_path: Path) -> None:
    shared = tmp_path / "metrics"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"left by an earlier run")  # cleared at start
    env = {"OPTIN_METRICS_TOKEN": METRICS_TOKEN, "OPTIN_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    views = 0
    with app_server(tmp_path, env=env) as server:
        # Views on fresh connections until both workers have counted some (each writes
        # its own file), then the scrape must hold every one, whichever worker answers.
        def both_counted() -> bool:
            nonlocal views
            for _ in range(20):
                with httpx.Client(base_url=server.url) as fresh:
                    assert fresh.get("/join").status_code == 200
                views += 1
            return len(list(shared.glob("counter_*.db"))) >= 2

        wait_until(both_counted, timeout=60, what="page views answered by both workers")

        def scraped_total() -> float:
            with httpx.Client(base_url=server.url, headers=BEARER) as fresh:
                scrape = fresh.get("/metrics")
            assert scrape.status_code == 200
            return samples(scrape.text).get(("optin_page_views_total", (("campaign", "join"),)), 0)

        # Each worker moves its counts to the shared files once a second; the scrape
        # is asked again each time the server writes a line (its access log).
        wait_until(lambda: scraped_total() == views, timeout=30, what=lambda: f"{scraped_total()} of {views} views")


def test_serve_gives_several_workers_a_fresh_shared_directory(tmp_path: Path) -> None:
    from app.cli import _share_metrics

    first: dict[str, str] = {}
    second: dict[str, str] = {}
    _share_metrics(first)
    _share_metrics(second)
    made = [Path(first["PROMETHEUS_MULTIPROC_DIR"]), Path(second["PROMETHEUS_MULTIPROC_DIR"])]
    assert all(path.is_dir() and list(path.iterdir()) == [] for path in made) and made[0] != made[1]

    given = tmp_path / "chosen"
    given.mkdir()
    (given / "counter_99.db").write_bytes(b"an earlier run's")
    _share_metrics(chosen := {"PROMETHEUS_MULTIPROC_DIR": str(given)})
    assert chosen == {"PROMETHEUS_MULTIPROC_DIR": str(given)} and list(given.iterdir()) == []


def test_a_blank_metrics_token_is_no_token_and_a_short_one_is_refused(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.settings import SettingsError, load_settings

    monkeypatch.setenv("OPTIN_METRICS_TOKEN", "  ")
    assert load_settings().metrics_token is None
    monkeypatch.setenv("OPTIN_METRICS_TOKEN", "tooshort-secret")
    with pytest.raises(SettingsError, match="OPTIN_METRICS_TOKEN") as refused:
        load_settings()
    assert "tooshort-secret" not in str(refused.value)


def test_deliveries_calls_to_protexting_and_pauses_are_counted(make_client: MakeClient, upstream: FakeUpstream) -> None:
    from .conftest import answers

    client = make_client(metrics_token=METRICS_TOKEN, retry_base_seconds=0.001, retry_max_seconds=0.001)
    assert Visitor(client).submit("(201) 555-0101").status_code == 303  # 201: delivered at once
    upstream.respond = answers(422, [{"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."}])
    assert Visitor(client).submit("(201) 555-0102").status_code == 422  # rejected
    upstream.respond = answers(422, {"message": "Not enough credit.", "code": 5})
    assert Visitor(client).submit("(201) 555-0105").status_code == 303  # held: the set-up refused
    upstream.respond = answers(503, {"message": "Service Unavailable"})
    assert Visitor(client).submit("(201) 555-0103").status_code == 303  # queued: to be tried again
    upstream.respond = answers(201, {"id": 1})
    # The worker's round, as `optin worker --once` runs it: the queued signup waits for
    # the pace, then is delivered.
    client.portal.call(client.app.state.resources.delivery.drain)
    upstream.respond = answers(401, {"message": "Unauthorized"})
    assert Visitor(client).submit("(201) 555-0104").status_code == 303  # the token refused: paused

    scraped = samples(client.get("/metrics", headers=BEARER).text)

    def total(name: str, **labels: str) -> float:
        return scraped.get((name, tuple(sorted(labels.items()))), 0)

    assert {r: total("optin_deliveries_total", result=r) for r in ("delivered", "rejected", "held", "retry")} == {
        "delivered": 2,
        "rejected": 1,
        "held": 1,
        "retry": 2,
    }
    assert total("optin_setup_refusals_total", cause="credit") == 1
    assert total("optin_submissions_total", campaign="join", outcome="held") == 1
    assert total("optin_outbox_jobs", state="held") == 1
    assert {s: total("optin_protexting_responses_total", status=s) for s in ("201", "422", "503", "401")} == {
        "201": 2,
        "422": 2,
        "503": 1,
        "401": 1,
    }
    assert total("optin_protexting_request_duration_seconds_count") == 6
    assert total("optin_pacing_wait_seconds_count") == 1
    assert total("optin_delivery_pauses_total", reason="unauthorized") == 1
    assert total("optin_delivery_paused") == 1
