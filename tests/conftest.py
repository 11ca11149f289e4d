"""Shared fixtures: a campaigns file, a recording fake ProTexting, and an app factory.

The fake upstream is an `httpx.MockTransport` handler plugged in at the one seam the app
offers (`create_app(..., upstream_transport=...)`), so every test runs the real pages,
phone rules and ProTexting client, and only the paid third party is faked.
"""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.middleware import Middleware

# Starlette now prefers `httpx2` for its TestClient and warns, once, at import when it
# finds only `httpx`. The suite runs with warnings as errors and may not add a
# dependency, so this one import-time notice is silenced here, and nowhere else.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "Using `httpx` with `starlette.testclient`", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.support.campaigns import CAMPAIGNS_TOML

# Distinctive, so a leak is found by a plain substring search.
TOKEN = "tok-SECRET-1234567890"
API_URL = "https://api.protexting.test/v1"

# Every environment name the service reads, so no outer setting reaches a test.
ENV_NAMES = tuple(
    field.validation_alias for field in Settings.model_fields.values() if isinstance(field.validation_alias, str)
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No service variable from the outer environment, and no stray `.env` in the cwd."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def campaigns_file(tmp_path: Path) -> Path:
    path = tmp_path / "campaigns.toml"
    path.write_text(CAMPAIGNS_TOML, encoding="utf-8")
    return path


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def contact(phone: str, group_ids: list[int]) -> dict[str, Any]:
    """The 201 body one copy of the provider's page shows."""
    return {
        "Id": 1,
        "Number": phone,
        "OptedOut": 0,
        "FirstName": "",
        "LastName": "",
        "GroupIds": group_ids,
        "CustomFieldIds": [],
    }


def _created(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return json_response(201, contact(body["PhoneNumber"], body.get("GroupIds", [])), {"X-Rate-Limit-Limit": "60"})


@dataclass
class FakeUpstream:
    """A `MockTransport` handler that records every request and answers with `respond`.

    `respond` may return a response or raise an httpx exception; by default it answers
    201 with the contact, as ProTexting does.
    """

    respond: Callable[[httpx.Request], httpx.Response] = _created
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.respond(request)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


def raises(exc_type: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    """A `respond` that fails the way a transport does, with the full URL in the message
    (some transports do put it there; the app must still never show it)."""

    def respond(request: httpx.Request) -> httpx.Response:
        raise exc_type(f"failed talking to {request.url}", request=request)

    return respond


def answers(
    status: int, payload: Any = None, *, text: str | None = None, headers: dict[str, str] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """A `respond` that always gives this status and JSON body (or raw text)."""

    def respond(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return json_response(status, payload, headers)

    return respond


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released, by this process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MakeClient = Callable[..., TestClient]

_DEFAULT = object()


@pytest.fixture
def make_client(clean_env: Path, campaigns_file: Path, upstream: FakeUpstream) -> Iterator[MakeClient]:
    """Build the app around a fake upstream and enter its lifespan; closed at teardown.

    `make_client()` talks to the `upstream` fixture with `TOKEN`. Pass `handler=` for
    another fake, `handler=None` for the real network (with `api_url=`), or `token=None`
    for sandbox mode, `middleware=` to wrap the app's own. Each app gets its own
    database, so apps never see each other's signups, and no background worker: what a
    visitor sees comes from the request alone. Any other keyword is a `Settings` field.
    """
    with ExitStack() as stack:
        made = 0

        def make(
            *,
            handler: Any = _DEFAULT,
            token: str | None = TOKEN,
            api_url: str = API_URL,
            campaigns: Path = campaigns_file,
            middleware: Sequence[Middleware] = (),
            **settings: Any,
        ) -> TestClient:
            nonlocal made
            made += 1
            settings = {
                "database_url": f"sqlite+aiosqlite:///{clean_env / f'optin-{made}.db'}",
                "run_worker": False,
                "secret_key": "test-signing-key-0123456789",
                # A test fills the form in at once; a person never would.
                "min_fill_seconds": 0,
            } | settings
            active = Settings(
                _env_file=None,
                protexting_access_token=token,
                protexting_api_url=api_url,
                campaigns_path=campaigns,
                **settings,
            )
            if handler is _DEFAULT:
                handler = upstream
            transport = httpx.MockTransport(handler) if handler is not None else None
            app = create_app(active, upstream_transport=transport, middleware=middleware)
            client = TestClient(app, follow_redirects=False)
            return stack.enter_context(client)

        yield make


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv holding the wheel built from this checkout
    (tests/support/wheel.py): one per session, shared by the package and container tests."""
    from tests.support.wheel import install_wheel

    return install_wheel(tmp_path_factory.mktemp("installed"))


# Databases and Redis for the storage, delivery and scale-out tests (tests/support/databases.py).
from tests.support.databases import (  # noqa: E402,F401
    database_url,
    postgres_database,
    postgres_url,
    redis_prefix,
    redis_url,
)
