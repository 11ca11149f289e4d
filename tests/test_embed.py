"""The embed: a campaign's form in an iframe on the business's own site, written there by
/static/embed.js, sized by the frame's messages, and telling the host page of a signup."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Frame, Page

from tests.support.browser import HostSite, chromium
from tests.support.page import Page as Html
from tests.support.servers import Server, app_server
from tests.support.visitor import Visitor, without_number

from .conftest import FakeUpstream, MakeClient

ROOT = Path(__file__).resolve().parent.parent


def test_the_embed_is_the_form_for_a_frame_and_the_page_stays_script_free(make_client: MakeClient) -> None:
    client = make_client()

    embed = client.get("/embed/join?src=homepage")
    page = client.get("/join")

    assert embed.status_code == 200
    html = Html(embed.text)
    root = html.find("html")
    assert root.attrs["class"] == "embed" and root.attrs["data-optin-parents"] == "*"
    assert html.find("form").attrs["action"] == "/embed/JOIN?src=homepage"
    assert [s.attrs["src"] for s in html.find_all("script")] == ["/static/frame.js"]
    assert "script-src 'self'" in embed.headers["content-security-policy"]
    # Terms and Privacy open outside the frame.
    links = html.find_all("a")  # the Terms and Privacy links of the disclosure
    assert links and all(a.attrs["target"] == "_blank" and a.attrs["rel"] == "noopener" for a in links)
    assert Html(page.text).find_all("script") == []
    assert "script-src" not in page.headers["content-security-policy"]


def test_a_signup_in_the_embed_stays_in_the_frame_and_records_its_src(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    client = make_client()

    wrong = Visitor(client, "/embed/join?src=homepage").submit("555")
    assert wrong.status_code == 422
    assert Html(wrong.text).find("form").attrs["action"] == "/embed/JOIN?src=homepage"

    done = Visitor(client, "/embed/join?src=homepage").submit("(201) 555-0123")
    assert done.status_code == 303 and without_number(done.headers["location"]) == "/embed/JOIN/thanks?src=homepage"
    thanks = client.get(done.headers["location"])
    root = Html(thanks.text).find("html")
    assert (
        root.attrs["data-optin-state"] == "delivered"
        and "script-src 'self'" in thanks.headers["content-security-policy"]
    )
    assert [body["PhoneNumber"] for body in upstream.bodies] == ["12015550123"]

    async def sources() -> list[dict[str, str]]:
        return [row["source"] async for row in client.app.state.resources.delivery.outbox.export()]

    assert client.portal.call(sources) == [{"src": "homepage"}]


def test_the_embed_counts_against_the_address_like_the_form(make_client: MakeClient) -> None:
    client = make_client(limit_per_ip="1/minute")
    assert Visitor(client, "/embed/join").submit("(201) 555-0123").status_code == 303
    assert Visitor(client, "/embed/join").submit("(201) 555-0124").status_code == 429


def test_the_host_script_is_small_and_has_no_dependencies() -> None:
    script = (ROOT / "static" / "embed.js").read_bytes()
    assert len(script) < 4096
    assert b"import" not in script and b"http" not in script.replace(b"https://texts.example.com", b"")


# -- in a browser, on a host page of another origin ---------------------------------


def _campaigns(tmp_path: Path, host_origin: str) -> Path:
    path = tmp_path / "campaigns.toml"
    path.write_text(
        f"""
[campaigns.JOIN]
group_ids = [1]
title = "Get our deals by text"
program_name = "Example Shop"
message_frequency = "Up to 4 msgs/month"
cta_message = "Reply YES to join Example Shop texts."
confirm_message = "You're in! Reply STOP to opt out, HELP for help."
terms_url = "https://shop.example/terms"
privacy_url = "https://shop.example/privacy"
frame_ancestors = ["{host_origin}"]

[campaigns.JOIN.es]
title = "Reciba nuestras ofertas por mensaje de texto"
message_frequency = "Hasta 4 mensajes al mes"
cta_message = "Responda YES para recibir los mensajes de Example Shop."
confirm_message = "¡Ya está inscrito! Responda ALTO para cancelar, AYUDA para ayuda."

[campaigns.Alerts]
group_ids = [2]
title = "Alerts"
program_name = "Example Shop"
message_frequency = "Up to 4 msgs/month"
cta_message = "Reply YES to join Example Shop alerts."
confirm_message = "You're in! Reply STOP to opt out, HELP for help."
terms_url = "https://shop.example/terms"
privacy_url = "https://shop.example/privacy"
frame_ancestors = ["https://elsewhere.example"]
""",
        encoding="utf-8",
    )
    return path


def _host_page(app_url: str, campaign: str, lang: str = "") -> bytes:
    return f"""<!doctype html><html{f' lang="{lang}"' if lang else ""}><head><title>The shop</title></head><body>
<h1>The shop's home page</h1>
<script>window.signups = []; document.addEventListener("optin:signup", e => window.signups.push(e.detail));</script>
<script async src="{app_url}/static/embed.js" data-optin-campaign="{campaign}" data-optin-src="homepage"></script>
<p>Footer</p></body></html>""".encode()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Server]]:
    tmp = tmp_path_factory.mktemp("embed")
    env = {"OPTIN_MIN_FILL_SECONDS": "0"}
    with HostSite() as shop, app_server(tmp, campaigns=_campaigns(tmp, shop.origin), env=env) as app:
        shop.pages.update(
            {
                "/join.html": _host_page(app.url, "JOIN"),
                "/alerts.html": _host_page(app.url, "Alerts"),
                "/es.html": _host_page(app.url, "JOIN", lang="es-US"),
            }
        )
        yield shop.origin, app


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


def _frame(page: Page) -> Frame:
    page.wait_for_selector("iframe")
    handle = page.query_selector("iframe")
    assert handle is not None
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_load_state()
    return frame


def _sized_to_content(page: Page, frame: Frame) -> float:
    """Wait until the iframe's height is its content's (within 2 px); that height."""
    content = frame.evaluate("Math.ceil(document.documentElement.getBoundingClientRect().height)")
    page.wait_for_function(
        "h => Math.abs(document.querySelector('iframe').getBoundingClientRect().height - h) <= 2", arg=content
    )
    height: float = page.evaluate("document.querySelector('iframe').getBoundingClientRect().height")
    return height


def test_on_a_host_page_the_frame_fits_its_content_and_the_signup_reaches_the_host(
    host: tuple[str, Server], browser: Browser
) -> None:
    origin, _app = host
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(f"{origin}/join.html")
        frame = _frame(page)
        form_height = _sized_to_content(page, frame)
        assert page.evaluate("document.querySelector('iframe').title") == "Sign up for text messages"

        frame.get_by_label("Mobile number").fill("555")
        frame.get_by_role("button", name="Sign up for texts").click()
        frame.wait_for_selector("#phone-error")
        error_height = _sized_to_content(page, frame)
        assert error_height > form_height  # the message beside the field: the frame grew

        frame.get_by_label("Mobile number").fill("(201) 555-0177")
        frame.get_by_role("button", name="Sign up for texts").click()
        frame.wait_for_selector("text=Check your phone")
        _sized_to_content(page, frame)
        page.wait_for_function("window.signups.length === 1")
        assert page.evaluate("window.signups") == [{"campaign": "JOIN", "state": "delivered", "src": "homepage"}]
        page.screenshot(path="/tmp/embed-thanks.png", full_page=True)
    finally:
        context.close()


def test_on_a_spanish_host_page_the_form_is_in_spanish(host: tuple[str, Server], browser: Browser) -> None:
    origin, _app = host
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        page.goto(f"{origin}/es.html")
        frame = _frame(page)
        assert page.evaluate("document.querySelector('iframe').title") == "Inscríbase para recibir mensajes de texto"
        assert frame.evaluate("document.documentElement.lang") == "es"
        assert frame.locator("h1").inner_text() == "Reciba nuestras ofertas por mensaje de texto"
        frame.get_by_label("Número de celular").fill("(201) 555-0178")
        frame.get_by_role("button", name="Suscribirme a los mensajes").click()
        frame.wait_for_selector("text=Revise su teléfono")
        page.wait_for_function("window.signups.length === 1")
    finally:
        context.close()


def test_a_host_the_campaign_does_not_list_cannot_frame_it(host: tuple[str, Server], browser: Browser) -> None:
    origin, app = host
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{origin}/alerts.html")
        page.wait_for_selector("iframe")
        # Once the browser has asked for the frame's page, it has been answered (and refused).
        page.wait_for_function(
            "() => performance.getEntriesByType('resource').some(e => e.name.includes('/embed/Alerts'))"
        )
        handle = page.query_selector("iframe")
        assert handle is not None
        frame = handle.content_frame()
        # Blocked by the frame's CSP (frame-ancestors): the browser shows its own error
        # page in the frame, not the form.
        assert frame is not None and frame is not page.main_frame
        assert frame.query_selector("form") is None and not frame.url.startswith(app.url)
        assert page.evaluate("window.signups") == []
    finally:
        context.close()
