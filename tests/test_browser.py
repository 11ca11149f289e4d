"""A real browser on the signup page: headless Debian chromium driven by Playwright.

The app runs as a real server in sandbox mode (no token: ProTexting is faked inside the
app) with the demo campaigns file. Playwright cannot download its own browser here, so
it launches the chromium at OPTIN_CHROMIUM (`make test` installs it and sets that).
The page has no script of its own; the flow runs once with JavaScript on and once off.
The test is synchronous on purpose: Playwright's sync API runs its own event loop.
Screenshots for a person to look at: /tmp/signup.png and /tmp/signup-error.png.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, Request, expect, sync_playwright

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.servers import LOOPBACK, Server, app_server
from tests.support.visitor import token_of

SCREENSHOT = Path("/tmp/signup.png")
SCREENSHOT_ERROR = Path("/tmp/signup-error.png")
PHONE_VIEWPORT = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with app_server(tmp_path_factory.mktemp("browser")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"No chromium at {CHROMIUM}. Run `make test` (it installs Debian's chromium with apt) "
            "or set OPTIN_CHROMIUM to a chromium binary.",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _host(url: str) -> str | None:
    return urlsplit(url).hostname


# Each run signs up its own number: the app would take a repeat as a duplicate.
@pytest.mark.parametrize(
    ("javascript", "number"), [(True, "(201) 555-0123"), (False, "(201) 555-0124")], ids=["javascript", "no-javascript"]
)
def test_signup_in_a_phone_browser(app: Server, browser: Browser, javascript: bool, number: str) -> None:
    context = browser.new_context(
        viewport=PHONE_VIEWPORT,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        java_script_enabled=javascript,
    )
    requests: list[str] = []

    def record(request: Request) -> None:
        requests.append(request.url)

    context.on("request", record)
    page = context.new_page()
    try:
        _sign_up(page, app, number=number, screenshots=javascript)
    finally:
        context.close()

    assert requests, "the browser made no requests at all"
    elsewhere = [url for url in requests if _host(url) != LOOPBACK]
    assert elsewhere == [], f"the page asked hosts other than {LOOPBACK}: {elsewhere}"
    # The stylesheet is served by the app itself, not a CDN.
    assert f"{app.url}/static/style.css" in requests


def _sign_up(page: Page, app: Server, *, number: str, screenshots: bool) -> None:
    page.goto(app.url + "/join")
    expect(page.get_by_role("heading", level=1)).to_have_text("Get our deals by text")
    phone = page.get_by_label("Mobile number")
    button = page.get_by_role("button", name="Sign up for texts")
    expect(phone).to_be_visible()
    expect(button).to_be_visible()
    if screenshots:
        page.screenshot(path=str(SCREENSHOT), full_page=True)

    # The compliance disclosure sits between the field and the button.
    disclosure = page.locator("#disclosure")
    expect(disclosure).to_contain_text("Msg & data rates may apply")
    assert _top(phone) < _top(disclosure) < _top(button)

    # A person takes a moment to read and type; the bot trap's minimum fill time
    # (OPTIN_MIN_FILL_SECONDS, 2 s by default) must never catch them.
    page.wait_for_timeout(2100)

    # A number that cannot be right: the same page again, the message beside the field.
    phone.fill("555")
    button.click()
    expect(phone).to_have_attribute("aria-invalid", "true")
    expect(phone).to_have_value("555")
    described_by = phone.get_attribute("aria-describedby") or ""
    assert "phone-error" in described_by.split()
    for element_id in described_by.split():
        expect(page.locator(f"#{element_id}")).to_be_visible()
    error = page.locator("#phone-error")
    expect(error).to_have_text("That isn't a valid United States phone number. Check the digits and try again.")
    # "Beside the field": just below the input, above the disclosure and the button.
    assert _bottom(phone) <= _top(error) < _top(disclosure) < _top(button)
    if screenshots:
        page.screenshot(path=str(SCREENSHOT_ERROR), full_page=True)

    # Fixed: the thanks page.
    phone.fill(number)
    button.click()
    # The demo campaign speaks English and Spanish: the thanks page keeps the language too.
    expect(page).to_have_url(re.compile(re.escape(app.url + "/JOIN/thanks?to=1-") + r"\d{4}\.[\w-]+&lang=en$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Check your phone")
    expect(page.locator(".number")).to_have_text(f"We texted •••-•••-{number[-4:]}")
    expect(page.locator("main")).to_contain_text("We've sent a text to confirm your signup to Corner Bakery Deals")


def _top(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not laid out"
    return box["y"]


def _bottom(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None, f"{locator} is not laid out"
    return box["y"] + box["height"]


# -- embedded on another site, and forged from another site ---------------------------


@pytest.fixture
def other_site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A web server on another origin (another host name, another port): the shop that
    embeds the form, or a page that tries to forge it."""
    root = tmp_path / "shop"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # "localhost" is another site than "127.0.0.1" to the browser.
        yield f"http://localhost:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_the_form_works_inside_an_iframe_on_another_site(
    app: Server, browser: Browser, other_site: tuple[str, Path]
) -> None:
    shop, root = other_site
    (root / "index.html").write_text(
        f'<!doctype html><title>Shop</title><h1>Our shop</h1><iframe title="Sign up" src="{app.url}/join?src=shop" width="400" height="900"></iframe>'
    )
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(shop + "/index.html")
        frame = page.frame_locator("iframe")
        phone = frame.get_by_label("Mobile number")
        expect(phone).to_be_visible()
        page.wait_for_timeout(2100)  # a person reading the page
        phone.fill("(201) 555-0133")
        frame.get_by_role("button", name="Sign up for texts").click()
        expect(frame.get_by_role("heading", level=1)).to_have_text("Check your phone")
    finally:
        context.close()


def test_a_form_forged_on_another_site_is_refused(app: Server, browser: Browser, other_site: tuple[str, Path]) -> None:
    shop, root = other_site
    # The forger even has a genuine token, fetched from our page by its server.
    token = token_of(httpx.get(app.url + "/join", trust_env=False).text)
    (root / "forge.html").write_text(
        f'<!doctype html><title>Win a prize</title><form method="post" action="{app.url}/join">'
        f'<input type="hidden" name="form_token" value="{token}">'
        '<input name="phone" value="(201) 555-0134"><button>Claim prize</button></form>'
    )
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(shop + "/forge.html")
        page.wait_for_timeout(2100)
        page.get_by_role("button", name="Claim prize").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("This form can't be sent from here")
    finally:
        context.close()
