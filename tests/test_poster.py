"""The print kit: `/{keyword}/poster`, a page that prints to one sheet with everything
the rules for a printed SMS call to action ask for.

The page is read as HTML in-process; then printed to PDF by Debian's chromium (as the
browser test starts it, see tests/test_browser.py) and read back with pypdf: one page
of the format's size, its text holding the disclosure and the rest; and its QR code,
as chromium draws it for print, read by zxing-cpp.
"""

from __future__ import annotations

import io
import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Response, sync_playwright
from pypdf import PdfReader
from starlette.testclient import TestClient

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS
from tests.support.campaigns import CAMPAIGNS, CAMPAIGNS_TOML, write_campaigns
from tests.support.page import Page
from tests.support.qr import read_qr
from tests.support.servers import Server, app_server

from .conftest import MakeClient

PUBLIC_URL = "https://texts.example.com"
DISCLOSURE = (
    "By submitting this form, you agree to receive recurring automated marketing text messages from "
    "Test Bakery Deals at the number provided. Up to 4 msgs/month. Msg & data rates may apply. Reply HELP "
    "for help and STOP to cancel. Consent is not a condition of purchase. Terms and Privacy Policy."
)
WITH_SMS = CAMPAIGNS_TOML.replace("\n[campaigns.Alerts]", 'sms_number = "12345"\n\n[campaigns.Alerts]')


def words(text: str) -> str:
    # Print turns "ff" into a ligature and breaks lines anywhere; a reader sees words.
    return " ".join(unicodedata.normalize("NFKC", text).split())


@pytest.fixture
def client(make_client: MakeClient, tmp_path: Path) -> TestClient:
    return make_client(public_url=PUBLIC_URL, campaigns=write_campaigns(tmp_path / "sms", WITH_SMS))


# --- the page -----------------------------------------------------------------------------


def test_the_poster_says_everything_a_printed_call_to_action_must(client: TestClient) -> None:
    response = client.get("/join/poster?src=poster-12")

    assert response.status_code == 200
    page = Page(response.text)
    text = words(" ".join(e.text for e in page.find_all("main")))
    assert page.find("h1").text == "Get our deals by text"
    assert "Weekly offers, straight to your phone." in text
    qr = page.find("img", **{"class": "qr"})
    assert qr.attrs["src"] == "/qr/JOIN.svg?src=poster-12"
    assert "https://texts.example.com/JOIN?src=poster-12" in qr.attrs["alt"]
    assert words(page.find("p", **{"class": "url"}).text) == "texts.example.com/JOIN"
    assert words(page.find("p", **{"class": "text-to"}).text) == "Or text JOIN to 12345"
    # The whole disclosure, exactly as the page shows it, and its links written out.
    assert DISCLOSURE in text
    assert "Terms: https://example.com/sms-terms" in text
    assert "Privacy Policy: https://example.com/privacy" in text


def test_the_poster_is_a_plain_page_the_strict_csp_lets_through(client: TestClient) -> None:
    response = client.get("/join/poster")

    page = Page(response.text)
    assert not page.find_all("script")
    assert not page.find_all("style")
    assert not [e for e in page.elements if "style" in e.attrs]
    assert [link.attrs["href"] for link in page.find_all("link", rel="stylesheet")] == ["/static/poster.css"]
    assert "style-src 'self'" in response.headers["content-security-policy"]
    # Without a src, the code is the bare page URL.
    assert page.find("img", **{"class": "qr"}).attrs["src"] == "/qr/JOIN.svg"


def test_the_signup_page_does_not_load_the_posters_stylesheet(client: TestClient) -> None:
    page = Page(client.get("/join").text)

    assert [link.attrs["href"] for link in page.find_all("link", rel="stylesheet")] == ["/static/style.css"]


def test_without_an_sms_number_the_poster_prints_no_text_to_line(make_client: MakeClient) -> None:
    html = make_client().get("/join/poster").text

    assert not Page(html).find_all("p", **{"class": "text-to"})
    assert "Or text" not in html


def test_the_poster_links_its_other_formats_with_the_same_src(client: TestClient) -> None:
    page = Page(client.get("/join/poster?src=poster-12&format=a4").text)

    links = {words(a.text): a.attrs for a in page.find_all("a") if "/poster?" in a.attrs["href"]}
    assert links["Letter"]["href"] == "/JOIN/poster?src=poster-12&format=letter"
    assert links["A4"]["href"] == "/JOIN/poster?src=poster-12&format=a4"
    assert links["A4"]["aria-current"] == "page"
    assert links["Table tent"]["href"] == "/JOIN/poster?src=poster-12&format=tent"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("format=legal", "format must be letter, a4 or tent"),
        ("format=", "format must be letter, a4 or tent"),
        ("src=poster%2012", "src must be 1 to 64 letters"),
        ("src=" + "a" * 65, "src must be 1 to 64 letters"),
    ],
)
def test_a_bad_format_or_src_is_refused_with_a_clear_message(client: TestClient, query: str, message: str) -> None:
    response = client.get(f"/join/poster?{query}")

    assert response.status_code == 400
    assert message in words(Page(response.text).find("main").text)


def test_an_unknown_keyword_has_no_poster(client: TestClient) -> None:
    response = client.get("/nope/poster")

    assert response.status_code == 404
    assert Page(response.text).find("h1").text == "Page not found"


def test_head_of_the_poster_answers_like_get(client: TestClient) -> None:
    head = client.head("/join/poster?format=tent")

    assert head.status_code == 200
    assert head.content == b""


# --- printed ------------------------------------------------------------------------------

# PDF points (1/72 in) of each format's sheet.
SHEETS = {"letter": (612, 792), "a4": (595.3, 841.9), "tent": (612, 792)}
FIVE_CM_IN_CSS_PX = 5 / 2.54 * 96


@pytest.fixture(scope="module")
def printing_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("poster")
    campaigns = write_campaigns(
        workdir, CAMPAIGNS + 'description = "Fresh bread deals every Friday."\nsms_number = "12345"\n'
    )
    with app_server(workdir, campaigns=campaigns) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"No chromium at {CHROMIUM}. Run `make test` or set OPTIN_CHROMIUM.", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.parametrize("sheet", sorted(SHEETS))
def test_the_poster_prints_on_one_sheet_of_its_format(printing_app: Server, browser: Browser, sheet: str) -> None:
    page = browser.new_page()
    refused: list[str] = []
    failed: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    def response(answer: Response) -> None:
        # (chromium asks for /favicon.ico by itself; the page names no icon.)
        if answer.status >= 400 and not answer.url.endswith("/favicon.ico"):
            failed.append(f"{answer.status} {answer.url}")

    page.on("console", console)
    page.on("response", response)
    try:
        page.goto(f"{printing_app.url}/join/poster?src=poster-12&format={sheet}")
        pdf = page.pdf(prefer_css_page_size=True, print_background=True)
    finally:
        page.close()

    assert refused == []  # nothing the CSP had to refuse: no inline style, no script
    assert failed == []  # the stylesheet and the code loaded
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert (float(box.width), float(box.height)) == pytest.approx(SHEETS[sheet], abs=1)
    text = words(reader.pages[0].extract_text())
    assert "Get our deals by text" in text
    assert "Fresh bread deals every Friday." in text
    assert f"{printing_app.url}/JOIN" in text  # the short URL (http:// kept: it is not https)
    assert "Or text JOIN to 12345" in text
    disclosure = DISCLOSURE.replace("Test Bakery Deals", "Corner Bakery Deals")
    assert disclosure in text
    assert "Terms: https://example.com/sms-terms" in text
    assert "Privacy Policy: https://example.com/privacy" in text


@pytest.mark.parametrize("sheet", sorted(SHEETS))
def test_the_printed_code_is_large_and_reads_as_the_page_url_with_its_src(
    printing_app: Server, browser: Browser, sheet: str
) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 1200})
    try:
        page.emulate_media(media="print")
        page.goto(f"{printing_app.url}/join/poster?src=poster-12&format={sheet}")
        codes = page.locator("img.qr")
        # A tent card prints the code twice, one upside down: each is read.
        for index in range(codes.count()):
            code = codes.nth(index)
            box = code.bounding_box()
            assert box is not None
            assert min(box["width"], box["height"]) >= FIVE_CM_IN_CSS_PX
            (read,) = read_qr(code.screenshot())
            assert read.text == f"{printing_app.url}/JOIN?src=poster-12"
    finally:
        page.close()
