"""OPTIN_LOG_FORMAT: text by default; in JSON mode every line the service writes, its
own and uvicorn's (errors and access), is one JSON object, and each request has an id,
sent back in X-Request-ID and carried by every line logged for it. The id is taken
from X-Request-ID only when a trusted proxy sends it."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.settings import Settings, SettingsError, load_settings
from app.web.request_ids import RequestIds
from tests.support.campaigns import write_campaigns
from tests.support.servers import Server, app_server, wait_until
from tests.support.visitor import Visitor

from .conftest import TOKEN, FakeUpstream, TestClient

GENERATED = re.compile(r"[0-9a-f]{32}")


def _lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as the JSON object it must be."""
    objects = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(parsed, dict), line
        assert {"time", "level", "logger", "message"} <= parsed.keys(), line
        objects.append(parsed)
    return objects


@contextmanager
def _app(
    campaigns_file: Path, *, client: tuple[str, int] = ("203.0.113.9", 4711), **settings: Any
) -> Iterator[TestClient]:
    active = Settings(
        _env_file=None,
        protexting_access_token=TOKEN,
        campaigns_path=campaigns_file,
        database_url=f"sqlite+aiosqlite:///{campaigns_file.parent / 'optin.db'}",
        run_worker=False,
        secret_key="test-signing-key-0123456789",
        min_fill_seconds=0,
        **settings,
    )
    app = create_app(active, upstream_transport=httpx.MockTransport(FakeUpstream()))
    with TestClient(app, client=client, follow_redirects=False) as test_client:
        yield test_client


def _layers(app: Any) -> list[type]:
    """The classes of the middleware stack Starlette built, outermost first."""
    layers, layer = [], app.middleware_stack
    while layer is not None and hasattr(layer, "app"):
        layers.append(type(layer))
        layer = layer.app
    return layers


def test_the_log_format_is_text_unless_json_is_asked_for(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().log_format == "text"
    monkeypatch.setenv("OPTIN_LOG_FORMAT", " JSON ")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("OPTIN_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="OPTIN_LOG_FORMAT: 'xml' is not one of text, json"):
        load_settings()


def test_in_text_mode_requests_carry_no_id_and_pass_no_extra_layer(clean_env: Path, campaigns_file: Path) -> None:
    with _app(campaigns_file) as client:
        page = client.get("/join")
        assert page.status_code == 200
        assert "x-request-id" not in page.headers
        assert RequestIds not in _layers(client.app)


def test_in_json_mode_every_answer_carries_a_fresh_id_whatever_the_client_says(
    clean_env: Path, campaigns_file: Path
) -> None:
    with _app(campaigns_file, log_format="json") as client:
        page = client.get("/join")
        chosen = client.get("/join", headers={"X-Request-ID": "chosen-by-the-client"})
        missing = client.get("/no-such-campaign")
        signup = Visitor(client).submit("(201) 555-0123")

    ids = [answer.headers["x-request-id"] for answer in (page, chosen, missing, signup)]
    assert (page.status_code, missing.status_code, signup.status_code) == (200, 404, 303)
    assert all(GENERATED.fullmatch(i) for i in ids), ids
    assert len(set(ids)) == len(ids)


def test_a_trusted_proxys_request_id_is_kept_and_a_bad_one_replaced(clean_env: Path, campaigns_file: Path) -> None:
    with _app(campaigns_file, client=("10.0.0.7", 4711), log_format="json", trusted_proxies="10.0.0.0/8") as client:
        kept = client.get("/join", headers={"X-Request-ID": "edge-7f3a-0001"})
        too_long = client.get("/join", headers={"X-Request-ID": "x" * 200})
        made = client.get("/join")

    assert kept.headers["x-request-id"] == "edge-7f3a-0001"
    assert GENERATED.fullmatch(too_long.headers["x-request-id"])
    assert GENERATED.fullmatch(made.headers["x-request-id"])


def test_optin_serve_in_json_mode_writes_only_json_lines_with_request_ids_campaigns_and_outcomes(
    tmp_path: Path,
) -> None:
    env = {"OPTIN_LOG_FORMAT": "json", "OPTIN_MIN_FILL_SECONDS": "0", "OPTIN_TRUSTED_PROXIES": "127.0.0.1"}
    with (
        app_server(tmp_path, campaigns=write_campaigns(tmp_path), env=env) as app,
        httpx.Client(base_url=app.url, trust_env=False, timeout=10.0) as client,
    ):
        signup = Visitor(client).submit("(201) 555-0123", headers={"X-Request-ID": "proxy-id-1"})
        trapped = Visitor(client).submit("(201) 555-0124", website="http://spam.example")
        missing = client.get("/nowhere")
        wait_until(lambda: "delivered after" in app.stderr, timeout=10, what="the delivery's line")
    assert signup.status_code == 303 and trapped.status_code == 303 and missing.status_code == 404

    errors, access = _lines(app.stderr), _lines(app.stdout)
    # uvicorn's own lines, start to finish.
    messages = [line["message"] for line in errors if line["logger"] == "uvicorn.error"]
    assert "Application startup complete." in messages and "Application shutdown complete." in messages

    # The access lines, each with the id its answer carried, and their parts as fields.
    by_id = {line["request_id"]: line for line in access}
    assert by_id["proxy-id-1"]["method"] == "POST" and by_id["proxy-id-1"]["status"] == 303
    assert by_id[trapped.headers["x-request-id"]]["path"] == "/JOIN"
    assert by_id[missing.headers["x-request-id"]]["status"] == 404
    assert all(line["level"] == "INFO" and line["logger"] == "uvicorn.access" for line in access)

    # The service's own lines: the signup's outcome and the bot trap, with their request.
    (delivered,) = [line for line in errors if line["logger"] == "app.delivery" and "delivered" in line["message"]]
    assert (delivered["campaign"], delivered["outcome"], delivered["request_id"]) == ("JOIN", "delivered", "proxy-id-1")
    (caught,) = [line for line in errors if line["logger"] == "app.guard"]
    assert caught["campaign"] == "JOIN" and caught["outcome"] == "bot-trapped"
    assert caught["request_id"] == trapped.headers["x-request-id"]
    # The warning of the settings module (no token: sandbox mode) is JSON too.
    assert any(line["logger"] == "app.main" and line["level"] == "WARNING" for line in errors)


def test_optin_worker_in_json_mode_writes_only_json_lines(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    worker = Server(
        "worker",
        [sys.executable, "-m", "app.cli", "worker"],
        workdir=tmp_path,
        env={"OPTIN_LOG_FORMAT": "json", "OPTIN_DATABASE_URL": database},
        ready_path=None,
    )
    with worker:  # stopped by SIGTERM on the way out
        wait_until(lambda: "running" in worker.stderr, timeout=20, what="the worker's start")
    (running,) = [line for line in _lines(worker.stderr) if "running" in line["message"]]
    assert running["logger"] == "app.cli" and "Ctrl-C to stop" in running["message"]
