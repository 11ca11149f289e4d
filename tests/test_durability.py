"""Never lose a signup: crash safety, and several replicas sharing PostgreSQL and Redis.

Everything runs as real processes on loopback (tests/support/servers.py): the app under
uvicorn, the fake ProTexting (`python -m app.sandbox`), and the operator's `optin`
command. A crash is a SIGKILL: the process gets no chance to finish, release or flush.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.storage import create_engine
from tests.support.servers import CAMPAIGNS, ROOT, Server, app_server, fake_protexting, set_down

from .conftest import Page

TOKEN = "tok-durability-0123456789"


# The abuse limits and the too-fast trap would stop a test's burst from one address;
# they are not what these tests are about.
NO_LIMITS = {
    "OPTIN_MIN_FILL_SECONDS": "0",
    "OPTIN_LIMIT_PER_IP": "",
    "OPTIN_LIMIT_PER_NUMBER": "",
    "OPTIN_LIMIT_PER_PREFIX": "",
}

# Valid US numbers, none of them one the fake answers with a scripted refusal
# (12015550100-0104).
SCRIPTED = {f"1201555010{n}" for n in range(5)}


def _numbers(count: int, start: int = 2000) -> list[str]:
    numbers = [f"1201555{n:04d}" for n in range(start, start + count)]
    assert not SCRIPTED & set(numbers)
    return numbers


def _campaigns(tmp_path: Path) -> Path:
    path = tmp_path / "campaigns.toml"
    path.write_text(CAMPAIGNS, encoding="utf-8")
    return path


def _fake_state(fake: Server) -> dict[str, Any]:
    """What the fake ProTexting received: {"calls": [...], "throttled": N}."""
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        response = client.get(fake.url + "/_fake/calls")
    response.raise_for_status()
    return response.json()


def _received(fake: Server) -> Counter[str]:
    return Counter(str(call["PhoneNumber"]) for call in _fake_state(fake)["calls"])


def _wait_for(check: Callable[[], bool], *, timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what()}", pytrace=False)
        time.sleep(0.1)


OPTIN = Path(sys.executable).with_name("optin")


def _optin_env(database_url: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    child = {k: v for k, v in os.environ.items() if not k.startswith(("OPTIN_", "PROTEXTING_"))}
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    child["OPTIN_DATABASE_URL"] = database_url
    child.update(env or {})
    return child


def optin(
    *args: str, database_url: str, env: Mapping[str, str] | None = None, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run the operator's `optin` command as an operator would, with a clean environment."""
    return subprocess.run(
        [str(OPTIN), *args], cwd=cwd, env=_optin_env(database_url, env), capture_output=True, text=True, timeout=60
    )


def status_counts(database_url: str, cwd: Path) -> dict[tuple[str, str], int]:
    """`optin status`, parsed: {(campaign, state): count}."""
    result = optin("status", database_url=database_url, cwd=cwd)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    if lines == ["no signups yet"]:
        return {}
    assert lines[0].split() == ["campaign", "state", "count"], result.stdout
    counts = {}
    for line in lines[1:]:
        campaign, state, count = line.split()
        counts[(campaign, state)] = int(count)
    return counts


def form_data(html: str, phone: str) -> dict[str, str]:
    """What a browser posts from the signup page: its named inputs (the hidden form
    token, the empty honeypot) with the number typed in."""
    data = {e.attrs["name"]: e.attrs.get("value", "") for e in Page(html).find_all("input") if e.attrs.get("name")}
    data["phone"] = phone
    return data


def sign_up(client: httpx.Client, phone: str) -> httpx.Response:
    """Open the page and submit the number, as a person does."""
    page = client.get("/JOIN")
    assert page.status_code == 200, page.status_code
    return client.post("/JOIN", data=form_data(page.text, phone))


async def sign_up_async(client: httpx.AsyncClient, phone: str) -> httpx.Response:
    page = await client.get("/JOIN")
    assert page.status_code == 200, page.status_code
    return await client.post("/JOIN", data=form_data(page.text, phone))


def _leased(database_url: str) -> int:
    """How many signups some process holds under a lease right now."""

    async def count() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                query = text("SELECT count(*) FROM signups WHERE leased_by IS NOT NULL AND state = 'pending'")
                return int((await conn.execute(query)).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


# -- crash safety -----------------------------------------------------------------


def test_every_accepted_signup_survives_a_crash_and_is_delivered_once(tmp_path: Path, database_url: str) -> None:
    # Slow enough answers that the worker is caught holding leases when it is killed.
    fake = fake_protexting(tmp_path, token=TOKEN, down=True, latency_ms=200)
    app = app_server(
        tmp_path,
        token=TOKEN,
        fake=fake,
        campaigns=_campaigns(tmp_path),
        env={
            "OPTIN_DATABASE_URL": database_url,
            "PROTEXTING_RATE_LIMIT": "100/second",
            "OPTIN_INLINE_DEADLINE_SECONDS": "0.5",
            "OPTIN_RETRY_BASE_SECONDS": "0.2",
            "OPTIN_RETRY_MAX_SECONDS": "1",
            # Held rows of the killed process come due again quickly (the shortest
            # lease a 1 s call allows).
            "OPTIN_UPSTREAM_DEADLINE_SECONDS": "1",
            "OPTIN_LEASE_SECONDS": "3",
            # The fake stays down for a while: nothing may be given up meanwhile.
            "OPTIN_DELIVERY_MAX_ATTEMPTS": "1000",
            **NO_LIMITS,
        },
    )
    numbers = _numbers(20)
    with (
        fake,
        app,
        httpx.Client(base_url=app.url, trust_env=False, timeout=10.0, follow_redirects=False) as client,
        ThreadPoolExecutor(5) as pool,
    ):
        responses = list(pool.map(lambda number: sign_up(client, number), numbers))
        for number, response in zip(numbers, responses, strict=True):
            assert response.status_code == 303, (number, response.status_code, response.text[:500])
            assert response.headers["location"] == "/JOIN/thanks?pending=1", number

        # ProTexting is down: nothing has been taken yet, every signup is waiting.
        assert _fake_state(fake)["calls"] == []
        # Kill the app while its worker holds signups under lease, retrying them.
        _wait_for(lambda: _leased(database_url) > 0, timeout=10, what=lambda: "the worker to hold a lease")
        app.kill()
        assert app.returncode == -9
        set_down(fake, False)
        app.start()

        _wait_for(
            lambda: set(_received(fake)) >= set(numbers),
            timeout=30,
            what=lambda: f"every number at ProTexting; missing {sorted(set(numbers) - set(_received(fake)))}",
        )
        _wait_for(
            lambda: status_counts(database_url, tmp_path) == {("JOIN", "delivered"): len(numbers)},
            timeout=15,
            what=lambda: f"optin status to show all delivered; it shows {status_counts(database_url, tmp_path)}",
        )
        # Nothing was accepted before the crash (ProTexting was down), so nothing may
        # have been sent twice: exactly once each, and nothing else.
        received = _received(fake)
        assert received == Counter({number: 1 for number in numbers}), {n: c for n, c in received.items() if c != 1}
    assert "Traceback" not in app.stderr, app.stderr


# -- scale-out ----------------------------------------------------------------------


def test_two_replicas_share_the_queue_and_the_pace(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    # ProTexting's leaky bucket: 10 calls, refilled at 10 per second. Slow enough that
    # a burst outruns it (two replicas each keeping a pace of their own get 429s here).
    fake = fake_protexting(tmp_path, token=TOKEN, rate_limit="10/1")
    campaigns = _campaigns(tmp_path)
    env = {
        "OPTIN_DATABASE_URL": postgres_url,
        "OPTIN_REDIS_URL": redis_url,
        "OPTIN_REDIS_PREFIX": redis_prefix,
        "PROTEXTING_RATE_LIMIT": "10 per 1 second",
        "OPTIN_INLINE_DEADLINE_SECONDS": "1",
        "OPTIN_RETRY_BASE_SECONDS": "0.2",
        "OPTIN_RETRY_MAX_SECONDS": "1",
        **NO_LIMITS,
    }
    replicas = [
        app_server(tmp_path, token=TOKEN, fake=fake, campaigns=campaigns, env=env, name=name)
        for name in ("app-a", "app-b")
    ]
    numbers = _numbers(100, start=3000)

    async def burst() -> list[tuple[str, int, str]]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        headers = {"User-Agent": "burst"}
        clients = [
            httpx.AsyncClient(base_url=r.url, trust_env=False, timeout=30.0, limits=limits, headers=headers)
            for r in replicas
        ]
        try:

            async def one(index: int, number: str) -> tuple[str, int, str]:
                response = await sign_up_async(clients[index % 2], number)
                return number, response.status_code, response.headers.get("location", "")

            return await asyncio.gather(*(one(i, n) for i, n in enumerate(numbers)))
        finally:
            for client in clients:
                await client.aclose()

    with fake, ExitStack() as stack:
        # Start both replicas at once, as an orchestrator would (and to save time):
        # both run the migrations at start-up against the same empty database.
        for replica in replicas:
            stack.callback(replica.stop)
        with ThreadPoolExecutor(len(replicas)) as pool:
            list(pool.map(Server.start, replicas))
        answers = asyncio.run(burst())
        bad = [(number, status) for number, status, _ in answers if status != 303]
        assert not bad, f"{len(bad)} signups not answered 303: {bad[:10]}"
        assert {location for _, _, location in answers} <= {"/JOIN/thanks", "/JOIN/thanks?pending=1"}

        _wait_for(
            lambda: set(_received(fake)) >= set(numbers),
            timeout=40,
            what=lambda: f"every number at ProTexting; {len(set(numbers) - set(_received(fake)))} missing",
        )
        _wait_for(
            lambda: status_counts(postgres_url, tmp_path) == {("JOIN", "delivered"): len(numbers)},
            timeout=15,
            what=lambda: f"optin status to show all delivered; it shows {status_counts(postgres_url, tmp_path)}",
        )
        state = _fake_state(fake)
        received = Counter(str(call["PhoneNumber"]) for call in state["calls"])
        assert received == Counter({number: 1 for number in numbers}), {n: c for n, c in received.items() if c != 1}
        # The shared pace held across both processes: ProTexting never had to say 429.
        assert state["throttled"] == 0, f"ProTexting answered 429 {state['throttled']} times"

    for replica in replicas:
        assert "Traceback" not in replica.stderr, replica.stderr


def test_a_worker_of_its_own_delivers_for_web_replicas_that_run_none(tmp_path: Path, postgres_url: str) -> None:
    fake = fake_protexting(tmp_path, token=TOKEN, down=True)
    shared = {
        "OPTIN_DATABASE_URL": postgres_url,
        "PROTEXTING_RATE_LIMIT": "100/second",
        "OPTIN_RETRY_BASE_SECONDS": "0.2",
        "OPTIN_RETRY_MAX_SECONDS": "1",
    }
    app = app_server(
        tmp_path,
        token=TOKEN,
        fake=fake,
        campaigns=_campaigns(tmp_path),
        env={**shared, "OPTIN_RUN_WORKER": "false", "OPTIN_INLINE_DEADLINE_SECONDS": "0.5", **NO_LIMITS},
    )
    numbers = _numbers(5, start=4000)
    with fake, app:
        with httpx.Client(base_url=app.url, trust_env=False, timeout=10.0, follow_redirects=False) as client:
            for number in numbers:
                response = sign_up(client, number)
                assert (response.status_code, response.headers.get("location")) == (303, "/JOIN/thanks?pending=1")
        set_down(fake, False)
        # The web process runs no worker: what it could not deliver inline waits.
        time.sleep(1.5)
        assert _fake_state(fake)["calls"] == []

        env = {"PROTEXTING_ACCESS_TOKEN": TOKEN, "PROTEXTING_API_URL": fake.url + "/v1", **shared}
        log = (tmp_path / "worker.stderr.log").open("w+", encoding="utf-8")
        worker = subprocess.Popen(
            [str(OPTIN), "worker"], cwd=tmp_path, env=_optin_env(postgres_url, env), stdout=log, stderr=log
        )
        try:
            _wait_for(
                lambda: set(_received(fake)) >= set(numbers),
                timeout=20,
                what=lambda: f"the worker to deliver every signup; got {sorted(_received(fake))}",
            )
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=15) == 0  # a clean stop on SIGTERM
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            log.seek(0)
            output = log.read()
            log.close()
        assert "delivery worker" in output and "running" in output
        assert "Traceback" not in output, output
        assert _received(fake) == Counter({number: 1 for number in numbers})
