"""Limits hold across replicas: two app processes sharing one Redis count together."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.support.campaigns import CAMPAIGNS_TOML
from tests.support.servers import Server, app_server, calls, fake_protexting
from tests.support.visitor import Visitor, form_fields, without_number


def _post_form(base: str, phone: str) -> httpx.Response:
    with httpx.Client(base_url=base, trust_env=False, timeout=10, follow_redirects=False) as client:
        return Visitor(client).submit(phone)


def test_two_replicas_share_the_per_address_limit_through_redis(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS_TOML, encoding="utf-8")
    env = {
        "OPTIN_REDIS_URL": redis_url,
        "OPTIN_REDIS_PREFIX": redis_prefix,
        "OPTIN_LIMIT_PER_IP": "3/minute",
        "OPTIN_MIN_FILL_SECONDS": "0",
        # Both replicas must verify each other's form tokens.
        "OPTIN_SECRET_KEY": "shared-replica-key-0123456789",
        "OPTIN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/optin.db",
    }
    with (
        app_server(tmp_path, campaigns=campaigns, env=env, name="a") as a,
        app_server(tmp_path, campaigns=campaigns, env=env, name="b") as b,
    ):
        codes = [
            _post_form(a.url, "(201) 555-0161").status_code,
            _post_form(b.url, "(201) 555-0162").status_code,
            _post_form(a.url, "(201) 555-0163").status_code,
            _post_form(b.url, "(201) 555-0164").status_code,
        ]
    # Alone, each replica would have allowed all of its two; together they allow three.
    assert codes == [303, 303, 303, 429]


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str, redis_prefix: str) -> Iterator[tuple[Server, Server, Server]]:
    """The fake ProTexting and two app servers sharing one Redis, with the per-block
    limit at 10 an hour and nothing else in the way (the tests' numbers are none of
    the fake's scripted refusals, 555-0100 to 0104)."""
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS_TOML, encoding="utf-8")
    env = {
        "OPTIN_REDIS_URL": redis_url,
        "OPTIN_REDIS_PREFIX": redis_prefix,
        "OPTIN_LIMIT_PER_IP": "",
        "OPTIN_LIMIT_PER_PREFIX": "10/hour",
        "OPTIN_MIN_FILL_SECONDS": "0",
        "PROTEXTING_RATE_LIMIT": "1000/second",
        # Settled before the answer, however busy the machine: a 303 is a text sent.
        "OPTIN_INLINE_DEADLINE_SECONDS": "30",
        "OPTIN_SECRET_KEY": "shared-replica-key-0123456789",
        "OPTIN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/optin.db",
    }
    with ExitStack() as stack:
        fake = stack.enter_context(fake_protexting(tmp_path, token="t"))
        a, b = (
            stack.enter_context(app_server(tmp_path, fake=fake, token="t", campaigns=campaigns, env=env, name=n))
            for n in "ab"
        )
        yield fake, a, b


async def _post_all(posts: list[tuple[str, dict[str, str]]]) -> list[httpx.Response]:
    """POST every (url, form) at once."""
    limits = httpx.Limits(max_connections=len(posts))
    async with httpx.AsyncClient(trust_env=False, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post(url, data=form) for url, form in posts))


def _form(base: str) -> dict[str, str]:
    with httpx.Client(trust_env=False, timeout=10) as client:
        page = client.get(base + "/join").text
    return form_fields(page, phone=None)


def test_sixty_signups_at_once_in_one_block_through_two_replicas_pass_exactly_ten(
    replicas: tuple[Server, Server, Server],
) -> None:
    fake, a, b = replicas
    posts = [((a if n % 2 else b).url + "/join", {**_form(a.url), "phone": f"(201) 555-02{n:02d}"}) for n in range(60)]
    answers = asyncio.run(_post_all(posts))
    codes = [answer.status_code for answer in answers]
    assert (codes.count(303), codes.count(429)) == (10, 50)
    assert {without_number(answer.headers["location"]) for answer in answers if answer.status_code == 303} == {
        "/JOIN/thanks"
    }
    assert len(calls(fake)) == 10


def test_one_token_sent_with_thirty_numbers_to_two_replicas_signs_up_one(
    replicas: tuple[Server, Server, Server],
) -> None:
    fake, a, b = replicas
    form = _form(a.url)
    # Each number in a block of its own, so only the token stands in the way.
    posts = [((a if n % 2 else b).url + "/join", {**form, "phone": f"(201) 555-{n:02d}50"}) for n in range(30)]
    codes = [answer.status_code for answer in asyncio.run(_post_all(posts))]
    assert (codes.count(303), codes.count(409)) == (1, 29)
    assert len(calls(fake)) == 1
