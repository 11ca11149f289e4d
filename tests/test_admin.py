"""The operator's console: who may use it (app.admin.auth, app.admin.gate).

Each test runs the real app in process, its console on with a password hashed by
argon2id (cheap parameters, to keep the suite fast: the hash carries them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from starlette.routing import BaseRoute, Route
from starlette.testclient import TestClient

from app.admin.auth import ABSOLUTE_SECONDS, IDLE_SECONDS, LOGIN_COOKIE, SESSION_COOKIE
from tests.conftest import FakeUpstream, MakeClient, _created, answers
from tests.support.campaigns import DEMO_CAMPAIGNS
from tests.support.clocks import Clock
from tests.support.page import Page
from tests.support.records import ok, optin, settled
from tests.support.visitor import Visitor

PASSWORD = "correct horse battery staple"
HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
# What a console page shows that a stranger must not see.
SECRETS_SHOWN = ("Get our deals by text", "Store alerts", "12015550123", "optin-export", "Audit log")


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


# -- the views -------------------------------------------------------------------

FUNNEL_COLUMNS = (
    "views",
    "submissions",
    "invalid",
    "bot_trapped",
    "rate_limited",
    "delivered",
    "queued",
    "held",
    "rejected",
    "failed",
    "opt_outs",
    "conversion",
)


def funnel_table(html: str) -> dict[str, dict[str, str]]:
    """The funnel's table as the operator reads it: {"join": {...}, "join/poster-1": {...}}."""
    table: dict[str, dict[str, str]] = {}
    campaign = ""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S):
        heading = re.search(r"<th[^>]*>(.*?)</th>", row, re.S)
        assert heading is not None
        name = re.sub(r"&nbsp;|\s", "", heading.group(1))
        cells = dict(zip(FUNNEL_COLUMNS, re.findall(r"<td>(.*?)</td>", row, re.S), strict=True))
        if "&nbsp;" in heading.group(1):  # a source, indented under its campaign
            table[f"{campaign}/{name}"] = cells
        else:
            campaign = name
            table[name] = cells
    return table


def test_the_funnel_counts_what_a_scripted_set_of_visits_did(make_client: MakeClient) -> None:
    client = make_client(admin_password_hash=HASH, limit_per_number="1/hour")
    views: dict[str, int] = {}

    def view(path: str, src: str, times: int = 1) -> None:
        for _ in range(times):
            assert client.get(path).status_code == 200
        views[src] = views.get(src, 0) + times

    def sign_up(path: str, src: str, phone: str, **fields: str) -> int:
        views[src] = views.get(src, 0) + 1  # the visitor opens the page first
        return Visitor(client, path).submit(phone, **fields).status_code

    view("/join?src=poster-1", "poster-1", 5)
    view("/embed/JOIN?src=poster-1", "poster-1", 2)  # the embed counts with its page
    view("/join?src=flyer&utm_source=x", "flyer", 3)
    view("/join", "", 2)
    view("/alerts?src=poster-1", "alerts", 4)
    assert sign_up("/join?src=poster-1", "poster-1", "(201) 555-0123") == 303  # delivered
    assert sign_up("/join?src=poster-1", "poster-1", "(201) 555-0123") == 429  # the number's limit
    assert sign_up("/join?src=flyer", "flyer", "12") == 422  # invalid number
    assert sign_up("/join?src=flyer", "flyer", "(201) 555-0124", website="http://spam") == 303  # trapped
    assert sign_up("/join", "", "(201) 555-0125") == 303  # delivered, no src
    # Opt-outs: one from JOIN's own page, reached from poster-1; one from /stop, the account's.
    assert Visitor(client, "/JOIN/stop?src=poster-1").submit("(201) 555-0130").status_code == 303
    assert Visitor(client, "/stop").submit("(201) 555-0131").status_code == 303

    assert log_in(client).status_code == 303
    page = client.get("/admin/funnel?period=today")
    assert page.status_code == 200
    table = funnel_table(page.text)
    join_views = views["poster-1"] + views["flyer"] + views[""]
    assert table["join"] == {
        "views": str(join_views),
        "submissions": "5",
        "invalid": "1",
        "bot_trapped": "1",
        "rate_limited": "1",
        "delivered": "2",
        "queued": "0",
        "held": "0",
        "rejected": "0",
        "failed": "0",
        "opt_outs": "1",
        "conversion": f"{2 / join_views * 100:.1f}%",
    }
    assert (table["join/poster-1"]["opt_outs"], table["join/flyer"]["opt_outs"]) == ("1", "0")
    assert table["(opt-outs)"]["opt_outs"] == "1"
    assert (table["join/poster-1"]["views"], table["join/poster-1"]["submissions"]) == (str(views["poster-1"]), "2")
    assert (table["join/poster-1"]["delivered"], table["join/poster-1"]["rate_limited"]) == ("1", "1")
    assert (table["join/flyer"]["views"], table["join/flyer"]["invalid"], table["join/flyer"]["bot_trapped"]) == (
        str(views["flyer"]),
        "1",
        "1",
    )
    assert table["join/flyer"]["delivered"] == "0"
    assert (table["join/(none)"]["views"], table["join/(none)"]["delivered"]) == (str(views[""]), "1")
    assert table["alerts"]["views"] == str(views["alerts"]) and table["alerts/poster-1"]["submissions"] == "0"
    # The chart is drawn on the server, and says what it shows.
    assert f": {join_views + views['alerts']} views, 2 signups</title>" in page.text
    assert re.search(r"<title>\d\d:00: \d+ views, \d+ signups</title>", page.text)


def test_the_funnel_of_a_past_period_has_none_of_today(signed_in: TestClient) -> None:
    signed_in.get("/join?src=poster-1")
    page = signed_in.get("/admin/funnel?period=custom&since=2020-01-01&until=2020-01-31")
    assert page.status_code == 200 and "Nothing counted in this period yet." in page.text
    for bad in ("period=year", "period=custom&since=2020-02-01&until=2020-01-01", "period=custom&since=x"):
        refused = signed_in.get(f"/admin/funnel?{bad}")
        assert refused.status_code == 400 and 'class="error"' in refused.text, bad


def test_the_campaigns_view_has_each_campaigns_kit(signed_in: TestClient) -> None:
    page = signed_in.get("/admin")
    assert page.status_code == 200
    base = "http://127.0.0.1:8000"
    for keyword in ("JOIN", "Alerts"):
        assert f'href="{base}/{keyword}"' in page.text and f'href="{base}/embed/{keyword}"' in page.text
        assert f'href="/qr/{keyword}.svg"' in page.text and f'href="/qr/{keyword}.png"' in page.text
        assert f'href="/{keyword}/poster?format=a4"' in page.text
        assert (
            f"data-optin-campaign=&#34;{keyword}&#34;" in page.text or f'data-optin-campaign="{keyword}"' in page.text
        )
    placed = signed_in.get("/admin?campaign=join&src=poster-12")
    assert f'href="{base}/JOIN?src=poster-12"' in placed.text and 'href="/qr/JOIN.png?src=poster-12"' in placed.text
    assert 'href="/JOIN/poster?format=tent&amp;src=poster-12"' in placed.text
    assert "data-optin-src=&#34;poster-12&#34;" in placed.text
    for link in ("/qr/JOIN.svg?src=poster-12", "/JOIN/poster?format=tent&src=poster-12"):
        assert signed_in.get(link).status_code == 200, link
    refused = signed_in.get("/admin?campaign=join&src=no spaces")
    assert refused.status_code == 400 and "src must be" in refused.text


def test_the_campaigns_view_previews_each_language(make_client: MakeClient) -> None:
    # The demo campaigns speak English and Spanish.
    client = make_client(admin_password_hash=HASH, campaigns=DEMO_CAMPAIGNS)
    assert log_in(client).status_code == 303
    page = client.get("/admin?campaign=join&src=poster-12").text
    base = "http://127.0.0.1:8000"
    for link in (f"{base}/JOIN?src=poster-12&amp;lang=es", f"{base}/embed/JOIN?src=poster-12&amp;lang=es"):
        assert f'href="{link}"' in page, link
    spanish = client.get("/JOIN?src=poster-12&lang=es")
    assert spanish.status_code == 200 and 'lang="es"' in spanish.text


def test_the_audit_log_shows_every_console_action(console: TestClient) -> None:
    assert log_in(console, "wrong").status_code == 401
    assert log_in(console).status_code == 303
    signed_in = console
    csrf = csrf_of(signed_in.get("/admin").text)
    signed_in.post("/admin/queue/retry", data={"csrf": csrf})
    assert (
        signed_in.post("/admin/export", data={"csrf": csrf, "format": "jsonl", "campaign": "JOIN"}).status_code == 200
    )
    page = signed_in.get("/admin/audit").text
    rows = re.findall(
        r"<tr><th scope=\"row\">([^<]+)</th><td class=\"text\">([^<]+)</td><td class=\"text\">([^<]*)</td><td class=\"text\">([^<]*)</td></tr>",
        page,
    )
    actions = [action for _at, action, _address, _detail in rows]
    assert actions == ["export", "retry", "login", "login failed"]
    assert all(address == "testclient" for _at, _action, address, _detail in rows)
    assert rows[0][3] == "format=jsonl, campaign=JOIN" and rows[1][3] == "all failed signups: 0 queued again"
    signed_in.post("/admin/logout", data={"csrf": csrf})
    log_in(signed_in)
    assert re.findall(r"<td class=\"text\">(log\w+)</td>", signed_in.get("/admin/audit").text)[:2] == [
        "login",
        "logout",
    ]


def test_a_failed_signup_retried_from_the_console_is_delivered(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client(admin_password_hash=HASH, delivery_max_attempts=1)
    upstream.respond = answers(503, {"Message": "down"})
    assert Visitor(client, "/join?src=poster-1").submit("(201) 555-0123").status_code == 303
    settled(client)
    assert log_in(client).status_code == 303
    page = client.get("/admin/queue")
    assert ">failed</th><td>1</td>" in page.text
    (job,) = re.findall(r'name="job" value="(\d+)"', page.text)
    assert "12015550123" in page.text and "HTTP 503" in page.text  # the number and its last error

    upstream.respond = _created
    response = client.post("/admin/queue/retry", data={"csrf": csrf_of(page.text), "job": job})
    assert response.status_code == 303 and response.headers["location"] == "/admin/queue?retried=1"
    client.portal.call(client.app.state.resources.delivery.drain)
    assert len(upstream.requests) == 2 and str(upstream.bodies[-1]["PhoneNumber"]).endswith("2015550123")
    after = client.get(response.headers["location"]).text
    assert "1 signup(s) queued again." in after and ">delivered</th><td>1</td>" in after
    assert "No failed or held signups." in after


def test_a_held_signup_is_sent_again_from_the_console_once_the_set_up_is_fixed(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    client = make_client(admin_password_hash=HASH)
    # ProTexting refuses the business's set-up, not the number: the signup is held.
    upstream.respond = answers(422, [{"field": "GroupIds", "message": "Group Ids is invalid."}])
    assert Visitor(client, "/join").submit("(201) 555-0123").status_code == 303
    settled(client)
    assert log_in(client).status_code == 303
    page = client.get("/admin/queue")
    assert ">held</th><td>1</td>" in page.text and "Send again" in page.text
    (job,) = re.findall(r'name="job" value="(\d+)"><input type="hidden" name="held"', page.text)
    # A plain retry (of failed signups) leaves it held.
    plain = client.post("/admin/queue/retry", data={"csrf": csrf_of(page.text), "job": job})
    assert plain.headers["location"] == "/admin/queue?retried=0"

    upstream.respond = _created
    response = client.post("/admin/queue/retry", data={"csrf": csrf_of(page.text), "job": job, "held": "1"})
    assert response.headers["location"] == "/admin/queue?retried=1"
    client.portal.call(client.app.state.resources.delivery.drain)
    after = client.get(response.headers["location"]).text
    assert ">delivered</th><td>1</td>" in after and "No failed or held signups." in after
    assert "signup " + job + ": 1 queued again" in client.get("/admin/audit").text


def test_the_queue_says_while_delivery_is_paused(signed_in: TestClient) -> None:
    assert "Delivery is paused" not in signed_in.get("/admin/queue").text
    signed_in.portal.call(signed_in.app.state.resources.delivery.pacer.pause, 600)
    page = signed_in.get("/admin/queue").text
    assert "Delivery is paused for about 10 more minute(s)" in page and 'role="status"' in page


@pytest.mark.parametrize("fields", [{"format": "csv"}, {"format": "jsonl", "campaign": "JOIN", "since": "2020-01-01"}])
def test_the_console_export_is_the_command_lines(signed_in: TestClient, tmp_path: Path, fields: dict[str, str]) -> None:
    for n, path in enumerate(("/join?src=poster-1", "/join", "/alerts?src=x")):
        assert Visitor(signed_in, path).submit(f"(201) 555-01{n:02}").status_code == 303
    settled(signed_in)
    csrf = csrf_of(signed_in.get("/admin/export").text)
    response = signed_in.post("/admin/export", data={"csrf": csrf, **fields})
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith('attachment; filename="optin-export-')
    args = [f"--{name}={value}" for name, value in fields.items()]
    database_url = signed_in.app.state.resources.settings.database_url
    ok(optin("export", *args, "--output", "cli.out", database_url=database_url, cwd=tmp_path))
    cli = (tmp_path / "cli.out").read_bytes()
    assert response.content == cli and cli.count(b"1201555") == (3 if fields["format"] == "csv" else 2)


def test_a_bad_export_filter_is_the_form_again_saying_what_to_change(signed_in: TestClient) -> None:
    csrf = csrf_of(signed_in.get("/admin/export").text)
    for bad in ({"format": "xls"}, {"since": "yesterday"}):
        response = signed_in.post("/admin/export", data={"csrf": csrf, **bad})
        assert response.status_code == 400 and 'class="error"' in response.text


def test_the_funnel_shows_opt_outs_once_they_are_counted(signed_in: TestClient) -> None:
    assert signed_in.get("/join?src=poster-1").status_code == 200
    asked = []

    async def opt_outs(since: Any, until: Any, campaign: str | None) -> list[tuple[str, str, int]]:
        asked.append(campaign)
        return [("join", "poster-1", 2)]

    signed_in.app.state.console.opt_outs = opt_outs
    table = funnel_table(signed_in.get("/admin/funnel?period=7d&campaign=join").text)
    assert asked == ["join"]
    assert table["join"]["opt_outs"] == "2" and table["join/poster-1"]["opt_outs"] == "2"


@pytest.mark.parametrize("value", ["hunter2", PasswordHasher(type=Type.I, memory_cost=1024).hash(PASSWORD)])
def test_a_password_hash_that_is_not_argon2id_stops_start_up_without_echoing_it(value: str) -> None:
    from app.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="argon2id") as raised:
        load_settings(admin_password_hash=value)
    assert value not in str(raised.value)


def test_a_numbers_proof_of_consent_is_looked_up_and_the_lookup_audited_masked(signed_in: TestClient) -> None:
    assert Visitor(signed_in, "/join?src=poster-1").submit("(201) 555-0123").status_code == 303
    settled(signed_in)
    page = signed_in.get("/admin/proof")
    assert page.status_code == 200 and 'href="/admin/proof"' in signed_in.get("/admin").text
    found = signed_in.post("/admin/proof", data={"csrf": csrf_of(page.text), "phone": " +1 (201) 555-0123 "})
    assert found.status_code == 200
    assert "1 record(s) for +1 (201) 555-0123" in found.text
    # The record with the exact disclosure its page showed, and where the person came from.
    assert "By submitting this form, you agree to receive recurring automated marketing text" in found.text
    assert "poster-1" in found.text
    nothing = signed_in.post("/admin/proof", data={"csrf": csrf_of(page.text), "phone": "12015550999"})
    assert "0 record(s)" in nothing.text
    assert signed_in.post("/admin/proof", data={"csrf": csrf_of(page.text), "phone": ""}).status_code == 400
    audit = signed_in.get("/admin/audit").text
    # Kept masked: the audit log must not undo an `optin forget` of the number.
    assert (
        '<td class="text">number looked up</td><td class="text">testclient</td><td class="text">•••0123</td>' in audit
    )
    assert "555-0123" not in audit and "5550123" not in audit
