"""The console in a real browser (Debian's chromium through Playwright): it works with
JavaScript off, and axe-core finds nothing on any of its pages.
Screenshots for a person to look at: /tmp/console-campaigns.png, /tmp/console-funnel.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.axe import violations
from tests.support.browser import chromium
from tests.support.servers import Server, app_server
from tests.support.visitor import Visitor
from tests.test_admin import HASH, PASSWORD

PAGES = ("/admin", "/admin/funnel", "/admin/queue", "/admin/export", "/admin/audit")
SCREENSHOTS = Path("/tmp")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with app_server(
        tmp_path_factory.mktemp("console"), env={"OPTIN_ADMIN_PASSWORD_HASH": HASH, "OPTIN_MIN_FILL_SECONDS": "0"}
    ) as server:
        with httpx.Client(base_url=server.url, trust_env=False, follow_redirects=False) as client:
            for n, path in enumerate(("/join?src=poster-1", "/join?src=flyer", "/join")):
                Visitor(client, path).submit(f"(201) 555-01{n:02}")
                client.get(path)
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _log_in(page: Page, app: Server) -> None:
    page.goto(app.url + "/admin")
    expect(page).to_have_url(app.url + "/admin/login")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(app.url + "/admin")
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")


def test_the_console_works_without_javascript(app: Server, browser: Browser) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        _log_in(page, app)
        page.screenshot(path=str(SCREENSHOTS / "console-campaigns.png"), full_page=True)
        page.get_by_label("Placement (src)").first.fill("poster-12")
        page.get_by_role("button", name="Make links").first.click()
        expect(page.get_by_role("link", name="PNG").first).to_have_attribute("href", "/qr/JOIN.png?src=poster-12")
        page.get_by_role("link", name="Funnel").click()
        page.get_by_label("Period").select_option("today")
        page.get_by_role("button", name="Show").click()
        expect(page.get_by_role("rowheader", name="poster-1")).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "console-funnel.png"), full_page=True)
        page.get_by_role("link", name="Audit log").click()
        expect(page.get_by_role("cell", name="login", exact=True).first).to_be_visible()
        page.get_by_role("button", name="Log out").click()
        expect(page).to_have_url(app.url + "/admin/login")
        page.goto(app.url + "/admin/queue")
        expect(page).to_have_url(app.url + "/admin/login")
    finally:
        context.close()


def test_no_console_page_has_an_accessibility_violation(app: Server, browser: Browser) -> None:
    # axe is a script: the context lets it past the console's CSP, which allows none.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    try:
        page.goto(app.url + "/admin/login")
        assert violations(page) == []
        _log_in(page, app)
        for path in PAGES:
            page.goto(app.url + path)
            assert violations(page) == [], path
        page.goto(app.url + "/admin/funnel?period=custom&since=2020-02-01&until=2020-01-01")
        assert violations(page) == []
    finally:
        context.close()
