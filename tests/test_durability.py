"""Never lose a signup: crash safety, and several replicas sharing PostgreSQL and Redis.

Everything runs as real processes on loopback (tests/support/servers.py): the app under
uvicorn, the fake ProTexting (`python -m app.sandbox`), and the operator's `optin`
command. A crash is a SIGKILL: the process gets no chance to finish, release or flush.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy import text

from app.storage import create_engine
from tests.support.campaigns import write_campaigns
from tests.support.records import OPTIN, fake_state, received, status_counts
from tests.support.servers import Server, app_server, fake_protexting, happens, set_down, wait_until
from tests.support.visitor import AsyncVisitor, Visitor, without_number

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


def sign_up(client: httpx.Client, phone: str) -> httpx.Response:
    return Visitor(client, "/JOIN").submit(phone)


async def sign_up_async(client: httpx.AsyncClient, phone: str) -> httpx.Response:
    return await AsyncVisitor(client, "/JOIN").submit(phone)


def _leased(database_url: str) -> int:
    """How many signups some process holds under a lease right now."""

    async def count() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                query = text("SELECT count(*) FROM jobs WHERE leased_by IS NOT NULL AND state = 'pending'")
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
        campaigns=write_campaigns(tmp_path),
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
            assert without_number(response.headers["location"]) == "/JOIN/thanks?pending=1", number

        # ProTexting is down: nothing has been taken yet, every signup is waiting.
        assert fake_state(fake)["calls"] == []
        # Kill the app while its worker holds signups under lease, retrying them.
        wait_until(lambda: _leased(database_url) > 0, timeout=10, what=lambda: "the worker to hold a lease")
        app.kill()
        assert app.returncode == -9
        set_down(fake, False)
        app.start()

        wait_until(
            lambda: set(received(fake)) >= set(numbers),
            timeout=30,
            what=lambda: f"every number at ProTexting; missing {sorted(set(numbers) - set(received(fake)))}",
        )
        wait_until(
            lambda: status_counts(database_url, tmp_path) == {("JOIN", "delivered"): len(numbers)},
            timeout=15,
            what=lambda: f"optin status to show all delivered; it shows {status_counts(database_url, tmp_path)}",
        )
        # Nothing was accepted before the crash (ProTexting was down), so nothing may
        # have been sent twice: exactly once each, and nothing else.
        got = received(fake)
        assert got == Counter({number: 1 for number in numbers}), {n: c for n, c in got.items() if c != 1}
    assert "Traceback" not in app.stderr, app.stderr


# -- scale-out ----------------------------------------------------------------------


def test_two_replicas_share_the_queue_and_the_pace(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    # ProTexting's leaky bucket: 10 calls, refilled at 10 per second. Slow enough that
    # a burst outruns it (two replicas each keeping a pace of their own get 429s here).
    fake = fake_protexting(tmp_path, token=TOKEN, rate_limit="10/1")
    campaigns = write_campaigns(tmp_path)
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
        assert {without_number(location) for _, _, location in answers} <= {"/JOIN/thanks", "/JOIN/thanks?pending=1"}

        wait_until(
            lambda: set(received(fake)) >= set(numbers),
            timeout=40,
            what=lambda: f"every number at ProTexting; {len(set(numbers) - set(received(fake)))} missing",
        )
        wait_until(
            lambda: status_counts(postgres_url, tmp_path) == {("JOIN", "delivered"): len(numbers)},
            timeout=15,
            what=lambda: f"optin status to show all delivered; it shows {status_counts(postgres_url, tmp_path)}",
        )
        state = fake_state(fake)
        got = Counter(str(call["PhoneNumber"]) for call in state["calls"])
        assert got == Counter({number: 1 for number in numbers}), {n: c for n, c in got.items() if c != 1}
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
        campaigns=write_campaigns(tmp_path),
        env={**shared, "OPTIN_RUN_WORKER": "false", "OPTIN_INLINE_DEADLINE_SECONDS": "0.5", **NO_LIMITS},
    )
    numbers = _numbers(5, start=4000)
    with fake, app:
        with httpx.Client(base_url=app.url, trust_env=False, timeout=10.0, follow_redirects=False) as client:
            for number in numbers:
                response = sign_up(client, number)
                assert (response.status_code, without_number(response.headers.get("location", ""))) == (
                    303,
                    "/JOIN/thanks?pending=1",
                )
        set_down(fake, False)
        # The web process runs no worker: what it could not deliver inline waits (a
        # worker would have retried within the backoff's 1 s cap).
        assert not happens(lambda: fake_state(fake)["calls"] != [], within=1.5)

        env = {"PROTEXTING_ACCESS_TOKEN": TOKEN, "PROTEXTING_API_URL": fake.url + "/v1", **shared}
        worker = Server("worker", [str(OPTIN), "worker"], workdir=tmp_path, env=env, ready_path=None)
        with worker:
            wait_until(
                lambda: set(received(fake)) >= set(numbers),
                timeout=20,
                what=lambda: f"the worker to deliver every signup; got {sorted(received(fake))}",
            )
            worker.stop(timeout=15)
            assert worker.returncode == 0  # a clean stop on SIGTERM
        output = worker.stdout + worker.stderr
        assert "delivery worker" in output and "running" in output
        assert "Traceback" not in output, output
        assert received(fake) == Counter({number: 1 for number in numbers})
