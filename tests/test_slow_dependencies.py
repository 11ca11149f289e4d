"""Slow dependencies fail fast: a Redis or a PostgreSQL that accepts connections and
never answers (tests/support/blackhole.py) costs a signup a short timeout, not a hang.

With such a Redis the signup is still stored and thanked, and after a few calls the
service stops asking it at all; with such a database the person gets the plain 503
within a few seconds, from the form and the JSON API alike.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.conftest import FakeUpstream, MakeClient
from tests.support.blackhole import Relay
from tests.support.campaigns import CAMPAIGNS
from tests.support.servers import app_server
from tests.support.visitor import Visitor, submit, without_number

# Generous: far above the configured timeouts (1 s here), far below a hang (today a
# signup waits as long as TCP lasts).
NOT_HANGING = 10.0


def test_with_a_redis_that_never_answers_signups_are_thanked_without_waiting_on_it(
    make_client: MakeClient, upstream: FakeUpstream, clean_env: Path
) -> None:
    with Relay() as hole:
        client = make_client(redis_url=hole.url("redis", "/0"), redis_timeout_seconds=0.2)
        first = submit(client, "/join", "(201) 555-0101")
        assert first.status_code == 303 and without_number(first.headers["location"]) == "/JOIN/thanks?pending=1"
        asked = hole.connections
        assert asked >= 1  # the first signup did try Redis, for as long as its timeout

        # The breaker is open: the next signups do not go near Redis at all.
        answers = [submit(client, "/join", f"(201) 555-01{n}") for n in range(10, 16)]
        token = client.get("/api/v1/campaigns/join").json()["token"]
        api = client.post("/api/v1/campaigns/join/opt-ins", json={"phone": "(201) 555-0177", "token": token})
        assert [without_number(a.headers["location"]) for a in answers] == ["/JOIN/thanks?pending=1"] * 6
        assert api.status_code == 202
        assert hole.connections == asked

    # Each is stored, waiting; nothing was sent while the shared pace is unknown.
    assert upstream.requests == []
    with sqlite3.connect(clean_env / "optin-1.db") as db:
        assert db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall() == [("pending", 8)]


def test_with_a_database_that_stops_answering_signups_get_the_plain_503_promptly(
    tmp_path: Path, postgres_url: str
) -> None:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS, encoding="utf-8")
    database = urlsplit(postgres_url)
    with Relay((database.hostname or "127.0.0.1", database.port or 5432)) as relay:
        env = {
            "OPTIN_DATABASE_URL": postgres_url.replace(database.netloc.split("@")[-1], f"127.0.0.1:{relay.port}"),
            "OPTIN_DATABASE_TIMEOUT_SECONDS": "1",
            "OPTIN_MIN_FILL_SECONDS": "0",
            # A burst from one address, in one block of numbers: the abuse limits are not what this is about.
            "OPTIN_LIMIT_PER_IP": "",
            "OPTIN_LIMIT_PER_PREFIX": "",
        }
        with (
            app_server(tmp_path, campaigns=campaigns, env=env) as app,
            httpx.Client(base_url=app.url, trust_env=False, timeout=NOT_HANGING) as client,
        ):
            # Sandbox mode: a signup is stored and thanked while the database answers.
            assert Visitor(client).submit("(201) 555-0123").status_code == 303
            # A form token is good for one signup: one for each (the pages need no database).
            tokens = [client.get("/api/v1/campaigns/join").json()["token"] for _ in range(20)]

            relay.freeze()
            form = Visitor(client).submit("(201) 555-0124")
            assert form.status_code == 503 and form.headers["retry-after"] == "30"
            assert "take signups this minute" in form.text
            assert "not saved" in form.text and "Traceback" not in form.text

            # A burst meanwhile: each answered within the timeout, none queued behind
            # the others' waits (the group commit's writer is not stuck on them).
            async def burst() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=app.url, trust_env=False, timeout=NOT_HANGING) as api:
                    return await asyncio.gather(
                        *(
                            api.post(
                                "/api/v1/campaigns/join/opt-ins", json={"phone": f"(201) 555-02{n}", "token": token}
                            )
                            for n, token in enumerate(tokens, start=10)
                        )
                    )

            for answer in asyncio.run(burst()):
                assert answer.status_code == 503, answer.text
                assert "not saved" in answer.json()["errors"][0]["message"]


def test_a_database_that_never_answers_stops_the_cli_within_seconds(tmp_path: Path) -> None:
    with Relay() as hole:
        url = hole.url("postgresql+asyncpg", "/nothing").replace("://", "://postgres@")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPTIN_", "PROTEXTING_"))}
        env["OPTIN_DATABASE_URL"] = url
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "status"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=NOT_HANGING * 2,
        )
    assert result.returncode == 2, result.stderr
    assert "cannot reach the database" in result.stderr and "Traceback" not in result.stderr
