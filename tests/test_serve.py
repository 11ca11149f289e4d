"""The service started the documented way, as a real server on loopback: the client
address it records cannot be picked by the client, and its own log lines are shown."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from tests.support.campaigns import write_campaigns
from tests.support.servers import PLAIN_UVICORN, SERVE, Server, app_server, child_environment
from tests.support.visitor import Visitor

FORGED = "203.0.113.9"
WARNING = "X-Forwarded-For received from 127.0.0.1 but OPTIN_TRUSTED_PROXIES is unset"


def _sign_up(client: httpx.Client, phone: str, *, headers: Mapping[str, str] = {}, **extra: str) -> httpx.Response:
    """Open the page and send the form as a browser does, with `headers` on the POST."""
    return Visitor(client).submit(phone, headers=headers, **extra)


def _exported(workdir: Path) -> list[dict[str, object]]:
    """The consent records, as `optin export` gives them to the operator."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "export", "--format", "jsonl"],
        cwd=workdir, env=child_environment({}), capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, follow_redirects=False, trust_env=False, timeout=10.0)


@pytest.mark.parametrize(("trusted", "recorded"), [(None, "127.0.0.1"), ("127.0.0.1", FORGED)])
def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(
    tmp_path: Path, trusted: str | None, recorded: str
) -> None:
    env = {"OPTIN_MIN_FILL_SECONDS": "0", "OPTIN_LIMIT_PER_IP": "2/minute"}
    if trusted is not None:
        env["OPTIN_TRUSTED_PROXIES"] = trusted
    with app_server(tmp_path, campaigns=write_campaigns(tmp_path), env=env) as app, _client(app) as client:
        answers = [
            _sign_up(client, f"(201) 555-012{n}", headers={"X-Forwarded-For": address}).status_code
            for n, address in enumerate((FORGED, FORGED, "198.51.100.1"))
        ]
    # A client on loopback (a local tunnel, a TCP terminator) that names a new address
    # each time is still one client, limited as one: unless 127.0.0.1 is the proxy.
    assert answers == ([303, 303, 303] if trusted else [303, 303, 429])
    expected = [recorded, recorded, "198.51.100.1"] if trusted else [recorded, recorded]
    assert [record["client_ip"] for record in _exported(tmp_path)] == expected
    # Told once, however many requests carry the header, and only when nothing is trusted.
    assert app.stderr.count(WARNING) == (0 if trusted else 1)
    if not trusted:
        assert "set OPTIN_TRUSTED_PROXIES to the proxy's address" in app.stderr


@pytest.mark.parametrize("command", [SERVE, PLAIN_UVICORN], ids=["optin serve", "uvicorn"])
def test_the_services_info_lines_are_shown_however_it_is_started(tmp_path: Path, command: tuple[str, ...]) -> None:
    env = {"OPTIN_MIN_FILL_SECONDS": "0"}
    with (
        app_server(tmp_path, campaigns=write_campaigns(tmp_path), env=env, command=command) as app,
        _client(app) as client,
    ):
        # A bot fills the hidden field in: answered like a success, and logged at INFO.
        assert _sign_up(client, "(201) 555-0123", website="http://spam.example").status_code == 303
    assert "INFO app.guard: bot trap 'honeypot' caught a submission to JOIN from 127.0.0.1" in app.stderr
    # Once each: no second handler on the way.
    assert app.stderr.count("bot trap 'honeypot'") == 1


def test_the_log_level_setting_quietens_them(tmp_path: Path) -> None:
    env = {"OPTIN_MIN_FILL_SECONDS": "0"}
    with (
        app_server(tmp_path, campaigns=write_campaigns(tmp_path), env=env, log_level="warning") as app,
        _client(app) as client,
    ):
        assert _sign_up(client, "(201) 555-0123", website="http://spam.example").status_code == 303
    assert "bot trap" not in app.stderr
    assert "WARNING app.main: PROTEXTING_ACCESS_TOKEN is not set: sandbox mode" in app.stderr
