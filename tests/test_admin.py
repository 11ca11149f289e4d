"""The operator's console: who may use it (app.admin.auth, app.admin.gate).

Each test runs the real app in process, its console on with a password hashed by
argon2id (cheap parameters, to keep the suite fast: the hash carries them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from app.admin.auth import ABSOLUTE_SECONDS, IDLE_SECONDS, LOGIN_COOKIE, SESSION_COOKIE
from tests.conftest import MakeClient
from tests.support.clocks import Clock
from tests.support.page import Page
from tests.support.visitor import Visitor

PASSWORD = "correct horse battery staple"
HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
# What a console page shows that a stranger must not see.
SECRETS_SHOWN = ("Get our deals by text", "Store alerts", "+12015550123", "optin-export", "Audit log")


def console_routes(app: Any) -> Iterator[tuple[str, str]]:
    """(method, path) of every route under /admin the app declares, found by walking
    its routes: a route added later is walked too."""

    def walk(routes: list[BaseRoute]) -> Iterator[tuple[str, str]]:
        for route in routes:
            if isinstance(route, Route) and route.path.startswith("/admin"):
                for method in sorted(route.methods or ()):
                    if method != "HEAD":
                        yield method, route.path
            yield from walk(getattr(route, "routes", []))

    return walk(app.routes)


def csrf_of(html: str) -> str:
    (field,) = [e for e in Page(html).find_all("input") if e.attrs.get("name") == "csrf"][:1]
    return field.attrs["value"]


def log_in(client: TestClient, password: str = PASSWORD) -> Any:
    page = client.get("/admin/login")
    assert page.status_code == 200, page.status_code
    return client.post("/admin/login", data={"csrf": csrf_of(page.text), "password": password})


@pytest.fixture
def console(make_client: MakeClient) -> TestClient:
    return make_client(admin_password_hash=HASH)


@pytest.fixture
def signed_in(console: TestClient) -> TestClient:
    assert log_in(console).status_code == 303
    return console


def clock_of(client: TestClient) -> Clock:
    clock = Clock()
    client.app.state.console.sessions.clock = clock
    return clock


def test_there_are_console_routes_to_walk(console: TestClient) -> None:
    found = set(console_routes(console.app))
    assert {("GET", "/admin"), ("POST", "/admin/login"), ("POST", "/admin/logout")} <= found
    assert len(found) >= 9


def test_without_the_password_hash_every_console_path_is_not_found(make_client: MakeClient) -> None:
    client = make_client()
    for method, path in [*console_routes(client.app), ("GET", "/admin/anything")]:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert "login" not in response.text.lower()


def test_no_console_route_gives_anything_without_a_session(console: TestClient) -> None:
    Visitor(console).submit()  # a signup the console would show
    forged = {SESSION_COOKIE: "WyJ4IiwgMCwgMF0.forged"}
    for cookies in ({}, forged):
        console.cookies.clear()
        for name, value in cookies.items():
            console.cookies.set(name, value, path="/admin")
        for method, path in console_routes(console.app):
            response = console.request(method, path, data={"csrf": "x", "password": "x"} if method == "POST" else None)
            assert not any(shown in response.text for shown in SECRETS_SHOWN), (method, path)
            if path == "/admin/login":
                assert response.status_code in (200, 401, 403), (method, path, response.status_code)
            elif method == "GET":
                assert response.status_code == 303 and response.headers["location"] == "/admin/login", (method, path)
            else:
                assert response.status_code == 403, (method, path, response.status_code)


def test_the_right_password_opens_the_console_with_a_strict_session_cookie(console: TestClient) -> None:
    response = log_in(console)
    assert response.status_code == 303 and response.headers["location"] == "/admin"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(f"{SESSION_COOKIE}="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in cookie.lower() and "path=/admin" in cookie.lower()
    page = console.get("/admin")
    assert page.status_code == 200 and "Get our deals by text" in page.text
    assert page.headers["cache-control"] == "no-store"


def test_under_https_the_cookies_are_secure(make_client: MakeClient) -> None:
    client = make_client(admin_password_hash=HASH, public_url="https://texts.example")
    client.base_url = "https://texts.example"  # type: ignore[assignment]
    page = client.get("/admin/login")
    assert "secure" in page.headers["set-cookie"].lower()
    response = client.post("/admin/login", data={"csrf": csrf_of(page.text), "password": PASSWORD})
    assert response.status_code == 303
    assert all("; secure" in c.lower() for c in response.headers.get_list("set-cookie"))


def test_every_wrong_password_gets_the_same_answer(console: TestClient) -> None:
    answers = set()
    for wrong in ("", "x", PASSWORD.upper(), PASSWORD + " ", "a" * 500):
        response = log_in(console, wrong)
        assert response.status_code == 401
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
        answers.add(response.text)
    assert len(answers) == 1
    assert "That password is not right." in answers.pop()
    assert console.get("/admin").status_code == 303


def test_login_attempts_are_limited_per_address(console: TestClient) -> None:
    statuses = [log_in(console, "wrong").status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]
    # Over the limit even the right password waits.
    response = log_in(console)
    assert response.status_code == 429 and int(response.headers["retry-after"]) > 0
    assert "Too many login attempts" in response.text


def test_login_attempts_are_limited_overall_whatever_the_address(console: TestClient) -> None:
    statuses = []
    for n in range(31):
        # Another machine each time, its own cookies: only the overall limit is shared.
        other = TestClient(console.app, follow_redirects=False, client=(f"198.51.100.{n}", 40000))
        statuses.append(log_in(other, "wrong").status_code)
    assert statuses == [401] * 30 + [429]


def test_every_post_needs_its_csrf_token(signed_in: TestClient) -> None:
    good = csrf_of(signed_in.get("/admin").text)
    for method, path in console_routes(signed_in.app):
        if method != "POST":
            continue
        for token in (None, "", good[:-1] + ("0" if good[-1] != "0" else "1")):
            data = {"password": PASSWORD} | ({"csrf": token} if token is not None else {})
            response = signed_in.post(path, data=data)
            assert response.status_code == 403, (path, token, response.status_code)
    # The session is still there: nothing was done.
    assert signed_in.get("/admin").status_code == 200


def test_the_login_form_token_is_bound_to_its_own_cookie(console: TestClient) -> None:
    page = console.get("/admin/login")
    token = csrf_of(page.text)
    console.cookies.delete(LOGIN_COOKIE, path="/admin")
    assert console.post("/admin/login", data={"csrf": token, "password": PASSWORD}).status_code == 403
    # Another browser's cookie does not make this token good either.
    console.get("/admin/login")
    assert console.post("/admin/login", data={"csrf": token, "password": PASSWORD}).status_code == 403


def test_a_session_ends_after_eight_idle_hours(signed_in: TestClient) -> None:
    clock = clock_of(signed_in)
    clock.advance(IDLE_SECONDS - 60)
    assert signed_in.get("/admin").status_code == 200  # and renews the idle time
    clock.advance(IDLE_SECONDS - 60)
    assert signed_in.get("/admin").status_code == 200
    clock.advance(IDLE_SECONDS + 1)
    response = signed_in.get("/admin")
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"


def test_a_session_ends_after_twenty_four_hours_however_busy(console: TestClient) -> None:
    clock = clock_of(console)
    assert log_in(console).status_code == 303
    for _ in range(3):
        clock.advance(6 * 3600)  # never idle for long
        assert console.get("/admin").status_code == 200
    clock.advance(6 * 3600 + 1)
    assert ABSOLUTE_SECONDS == 24 * 3600
    assert console.get("/admin").status_code == 303


def test_logging_out_ends_the_session_for_every_copy_of_its_cookie(signed_in: TestClient) -> None:
    cookie = signed_in.cookies.get(SESSION_COOKIE, path="/admin")
    csrf = csrf_of(signed_in.get("/admin").text)
    response = signed_in.post("/admin/logout", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/admin/login"
    assert f"{SESSION_COOKIE}=;" in response.headers["set-cookie"]
    signed_in.cookies.set(SESSION_COOKIE, cookie, path="/admin")
    assert signed_in.get("/admin").status_code == 303


def test_the_console_cannot_be_framed_and_runs_no_script(signed_in: TestClient) -> None:
    for path in ("/admin", "/admin/funnel", "/admin/queue", "/admin/export", "/admin/audit", "/admin/login"):
        response = signed_in.get(path, follow_redirects=True)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "unsafe-inline" not in csp
        assert not re.search(r"<script|\son\w+=", response.text, re.I), path


def test_hash_password_makes_an_argon2id_hash_the_settings_take(capsys: pytest.CaptureFixture[str]) -> None:
    from app.cli import hash_password
    from app.settings import load_settings

    typed = iter([PASSWORD, PASSWORD])
    assert hash_password(lambda prompt: next(typed)) == 0
    made = capsys.readouterr().out.strip()
    assert made.startswith("$argon2id$") and PASSWORD not in made
    assert PasswordHasher().verify(made, PASSWORD)
    assert load_settings(admin_password_hash=made).admin_password_hash is not None


def test_hash_password_refuses_two_different_passwords() -> None:
    from app.cli import CommandError, hash_password

    typed = iter([PASSWORD, PASSWORD + "!"])
    with pytest.raises(CommandError, match="differ"):
        hash_password(lambda prompt: next(typed))
