"""Accessibility, proven in a real browser: axe-core in Debian's chromium on every state
of the pages, in English and Spanish, light and dark; focus and title after an error;
no sideways scrolling at 200% zoom; a signup made with the keyboard alone.

The browser talks to the app in this process: every request to http://optin.test is
answered by Starlette's TestClient (`_serve`), so a test can put the app in any state
(a ProTexting that is down, a tight limit) and still have chromium render, lay out and
run each page as a phone would. axe-core comes from npm at test time (tests/support/axe.py).
The pages' CSP forbids scripts; axe is injected with the CSP bypassed, as an extension is.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, ViewportSize, expect
from starlette.testclient import TestClient

from tests.support.axe import violations
from tests.support.browser import chromium
from tests.support.campaigns import DEMO_CAMPAIGNS

from .conftest import MakeClient, answers, closed_port

ORIGIN = "http://optin.test"
PHONE_VIEWPORT: ViewportSize = {"width": 390, "height": 844}
LANGUAGES = ["en", "es"]
# What the campaign's words and the catalogs say, to find the page's parts by.
BUTTON = {"en": "Sign up for texts", "es": "Suscribirme a los mensajes"}
FIELD = {"en": "Mobile number", "es": "Número de celular"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _serve(context: BrowserContext, client: TestClient) -> list[str]:
    """Every request of the browser to ORIGIN answered by the app in this process.

    Returns the list of what the app raised: an exception inside a route handler would
    otherwise leave the browser waiting on a request that is never answered, and the
    test would fail on a timeout that names no cause. `_opened` asserts it is empty."""
    raised: list[str] = []

    def handle(route: Route) -> None:
        request = route.request
        parts = urlsplit(request.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            answer = client.request(request.method, target, content=request.post_data_buffer, headers=headers)
        except Exception as error:
            raised.append(f"{request.method} {target}: {traceback.format_exc()}")
            route.fulfill(status=500, body=f"{type(error).__name__} in the app")
            return
        route.fulfill(status=answer.status_code, headers=dict(answer.headers), body=answer.content)

    context.route(f"{ORIGIN}/**", handle)
    return raised


def _app(make_client: MakeClient, tmp_path: Path, **settings: Any) -> TestClient:
    return make_client(campaigns=DEMO_CAMPAIGNS, public_url=ORIGIN, **settings)


@contextmanager
def _opened(
    browser: Browser,
    client: TestClient,
    *,
    dark: bool = False,
    language: str = "en",
    viewport: ViewportSize = PHONE_VIEWPORT,
    phone: bool = True,
) -> Iterator[Page]:
    """A new page of a browser that talks to `client`, light or dark, set to `language`."""
    context = browser.new_context(
        viewport=viewport,
        is_mobile=phone,
        has_touch=phone,
        bypass_csp=True,
        color_scheme="dark" if dark else "light",
        locale="es-US" if language == "es" else "en-US",
    )
    raised = _serve(context, client)
    try:
        yield context.new_page()
    finally:
        context.close()
        # Raised here even when the test failed first (a timeout, likely), whose
        # error then shows as the context of this one.
        if raised:
            raise AssertionError("the app raised:\n" + "\n".join(raised))


def _thanks(path: str, query: str) -> re.Pattern[str]:
    """The thanks page's address holding `query`'s parameters (such as "lang=es"),
    whatever else it holds (the masked number)."""
    wanted = "".join(f"(?=(.*&)?{re.escape(part)}(&|$))" for part in query.split("&"))
    return re.compile(f"^{re.escape(ORIGIN + path)}/thanks\\?{wanted}")


def _clean(page: Page, state: str) -> None:
    found = violations(page)
    assert found == [], f"{state}: {found}"


def _submit(page: Page, language: str, number: str) -> None:
    page.get_by_label(FIELD[language]).fill(number)
    page.get_by_role("button", name=BUTTON[language]).click()


def test_axe_finds_what_it_is_here_to_find(browser: Browser) -> None:
    # The check itself: a page with a nameless field and no language fails.
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<html><body><input type='tel'><img src='data:,'></body></html>")
    rules = {violation["id"] for violation in violations(page)}
    context.close()
    assert {"html-has-lang", "label", "image-alt"} <= rules


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
@pytest.mark.parametrize("language", LANGUAGES)
def test_every_state_of_the_signup_passes_axe(
    make_client: MakeClient, tmp_path: Path, browser: Browser, language: str, dark: bool
) -> None:
    client = _app(make_client, tmp_path)
    with _opened(browser, client, dark=dark, language=language) as page:
        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        expect(page.locator("html")).to_have_attribute("lang", language)
        _clean(page, "page")

        _submit(page, language, "555")
        expect(page.locator("#phone-error")).to_be_visible()
        _clean(page, "422")

        _submit(page, language, "(201) 555-0123")
        expect(page).to_have_url(_thanks("/JOIN", f"lang={language}"))
        _clean(page, "thanks")

        page.goto(f"{ORIGIN}/embed/JOIN?lang={language}")
        _clean(page, "embed")
        _submit(page, language, "(201) 555-0124")
        expect(page).to_have_url(_thanks("/embed/JOIN", f"lang={language}"))
        _clean(page, "embed thanks")

        page.goto(f"{ORIGIN}/no-such-campaign?lang={language}")
        _clean(page, "404")

        page.goto(f"{ORIGIN}/JOIN/poster?lang={language}")
        _clean(page, "poster")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_pending_thanks_and_the_429_pass_axe(
    make_client: MakeClient, tmp_path: Path, browser: Browser, language: str
) -> None:
    # ProTexting down: the signup waits in the outbox, the person reads "shortly".
    client = _app(make_client, tmp_path, handler=answers(503, {"message": "down"}), limit_per_ip="1/minute")
    with _opened(browser, client, language=language) as page:
        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        _submit(page, language, "(201) 555-0125")
        expect(page).to_have_url(_thanks("/JOIN", f"pending=1&lang={language}"))
        _clean(page, "pending thanks")

        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        with page.expect_response(lambda response: response.request.method == "POST") as refused:
            _submit(page, language, "(201) 555-0126")
        assert refused.value.status == 429
        expect(page.locator("html")).to_have_attribute("lang", language)
        _clean(page, "429")


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_form_alert_and_the_503_pass_axe(
    make_client: MakeClient, tmp_path: Path, browser: Browser, language: str
) -> None:
    from app.storage import Outbox, create_engine

    client = _app(make_client, tmp_path)
    with _opened(browser, client, language=language) as page:
        # The same form sent again for another number: the alert above the field.
        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        form = page.content()
        _submit(page, language, "(201) 555-0127")
        expect(page).to_have_url(_thanks("/JOIN", f"lang={language}"))
        page.set_content(form.replace("<head>", f'<head><base href="{ORIGIN}/JOIN">', 1))
        _submit(page, language, "(201) 555-0128")
        expect(page.locator("#form-error")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("lang", language)
        _clean(page, "form alert")

        # The database gone after start-up: the plain 503, in the page's language.
        delivery = client.app.state.resources.delivery
        gone = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/gone")
        delivery.outbox = Outbox(gone, policy=delivery.outbox.policy, lease=delivery.outbox.lease)
        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        with page.expect_response(lambda response: response.request.method == "POST") as answered:
            _submit(page, language, "(201) 555-0129")
        assert answered.value.status == 503
        expect(page.locator("html")).to_have_attribute("lang", language)
        _clean(page, "503")


STOP_BUTTON = {"en": "Stop all texts", "es": "Detener todos los mensajes"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_opt_out_pages_pass_axe(make_client: MakeClient, tmp_path: Path, browser: Browser, language: str) -> None:
    client = _app(make_client, tmp_path)
    with _opened(browser, client, language=language) as page:
        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        page.get_by_role(
            "link", name={"en": "Stop getting our texts", "es": "Dejar de recibir nuestros mensajes"}[language]
        ).click()
        expect(page.locator("html")).to_have_attribute("lang", language)
        _clean(page, "opt-out page")

        page.get_by_label(FIELD[language]).fill("555")
        page.get_by_role("button", name=STOP_BUTTON[language]).click()
        expect(page.locator("#phone-error")).to_be_visible()
        assert page.title().startswith("Error:")
        # Autofocus is applied after the page is parsed: wait for it, not read it once.
        expect(page.locator("#phone")).to_be_focused()
        _clean(page, "opt-out 422")

        page.get_by_label(FIELD[language]).fill("(201) 555-0123")
        page.get_by_role("button", name=STOP_BUTTON[language]).click()
        expect(page).to_have_url(re.compile(f"^{re.escape(ORIGIN)}/JOIN/stop/done"))
        expect(page.locator("html")).to_have_attribute("lang", language)
        _clean(page, "opted out")


@pytest.mark.parametrize("language", LANGUAGES)
def test_after_a_refused_number_the_focus_is_on_the_field_and_the_title_says_error(
    make_client: MakeClient, tmp_path: Path, browser: Browser, language: str
) -> None:
    client = _app(make_client, tmp_path)
    with _opened(browser, client, language=language) as page:
        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        title = page.title()
        assert not title.startswith("Error")
        _submit(page, language, "555")

        expect(page.locator("#phone-error")).to_be_visible()
        assert page.title() == f"Error: {title}"
        expect(page.locator("#phone")).to_be_focused()  # autofocus, applied after parsing


def test_the_dark_page_is_dark(make_client: MakeClient, tmp_path: Path, browser: Browser) -> None:
    client = _app(make_client, tmp_path)
    colours = {}
    for dark in (False, True):
        with _opened(browser, client, dark=dark) as page:
            page.goto(f"{ORIGIN}/JOIN")
            colours[dark] = page.evaluate("getComputedStyle(document.body).backgroundColor")

    def luminance(css: str) -> float:
        red, green, blue = (int(part) for part in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
        return 0.2126 * red + 0.7152 * green + 0.0722 * blue

    assert luminance(colours[True]) < 60 < 200 < luminance(colours[False])


@pytest.mark.parametrize("language", LANGUAGES)
def test_at_200_percent_zoom_nothing_scrolls_sideways(
    make_client: MakeClient, tmp_path: Path, browser: Browser, language: str
) -> None:
    # 200% zoom on a 390-pixel phone lays the page out in 195 CSS pixels; a 1280-pixel
    # desktop in 640 (WCAG 1.4.10 Reflow asks for 320).
    client = _app(make_client, tmp_path)
    for width in (195, 320, 640):
        with _opened(browser, client, viewport={"width": width, "height": 800}, phone=False) as page:
            for path in (f"/JOIN?lang={language}", f"/embed/JOIN?lang={language}", f"/JOIN/thanks?lang={language}"):
                page.goto(ORIGIN + path)
                wide = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert wide <= 0, f"{path} at {width}px scrolls {wide}px sideways"


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_signup_with_the_keyboard_alone(
    make_client: MakeClient, tmp_path: Path, browser: Browser, language: str
) -> None:
    client = _app(make_client, tmp_path)
    with _opened(browser, client, language=language, phone=False) as page:
        page.goto(f"{ORIGIN}/JOIN?lang={language}")
        # Tab until the number field has the focus, as a person would (the language
        # link may come first); never more than a handful of stops.
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "phone":
                break
        assert page.evaluate("document.activeElement.id") == "phone"
        page.keyboard.type("(201) 555-0127")
        # On to the button past the disclosure's links, each a stop of its own.
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.tagName") == "BUTTON":
                break
        assert page.evaluate("document.activeElement.textContent").strip() == BUTTON[language]
        page.keyboard.press("Enter")
        expect(page).to_have_url(_thanks("/JOIN", f"lang={language}"))
