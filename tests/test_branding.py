"""A campaign's look: its logo, accent colour, theme, button text and back link, served
by the service itself through stylesheets and images (no inline style, no third party),
and refused at start-up, naming file, campaign and key, when a key cannot be used."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.campaigns import CampaignsError, load_campaigns
from app.web.pages import RESERVED_PATHS
from tests.support.campaigns import CAMPAIGNS_TOML
from tests.support.page import Page
from tests.support.visitor import Visitor

from .conftest import MakeClient

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10"/></svg>'

BRANDED = CAMPAIGNS_TOML.replace(
    "[campaigns.Alerts]",
    """logo = "brand/logo.png"
accent_color = "#7a1fa2"
theme = "dark"
button_text = "Text me the deals"
back_url = "https://bakery.example/"

[campaigns.Alerts]""",
)


def branded(tmp_path: Path, text: str = BRANDED, logo: bytes = PNG, name: str = "logo.png") -> Path:
    (tmp_path / "brand").mkdir(exist_ok=True)
    (tmp_path / "brand" / name).write_bytes(logo)
    path = tmp_path / "campaigns.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_branded_page_shows_its_logo_colour_theme_and_words(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(campaigns=branded(tmp_path), public_url="https://texts.example.com")

    answer = client.get("/join")
    page = Page(answer.text)

    root = page.find("html")
    assert root.attrs["data-theme"] == "dark"
    (logo,) = page.find_all("img", class_="logo")
    assert logo.attrs["alt"] == "Test Bakery Deals" and logo.attrs["src"].startswith("/assets/")
    sheets = [link.attrs["href"] for link in page.find_all("link", rel="stylesheet")]
    assert sheets[0] == "/static/style.css" and sheets[1].startswith("/assets/") and sheets[1].endswith(".css")
    assert page.find("button").text.strip() == "Text me the deals"
    assert page.find("meta", name="theme-color").attrs["content"] == "#7a1fa2"
    assert page.find("meta", property="og:image").attrs["content"] == "https://texts.example.com" + logo.attrs["src"]
    assert page.find("meta", property="og:title").attrs["content"] == "Get our deals by text"
    assert page.find("meta", name="description").attrs["content"] == "Weekly offers, straight to your phone."
    assert page.find("link", rel="icon").attrs["href"] == logo.attrs["src"]
    # All through files the service serves: no inline style, nothing from elsewhere.
    assert "style=" not in answer.text and "<style" not in answer.text
    assert all(url.startswith(("/", "https://example.com/")) for url in page.urls())

    image = client.get(logo.attrs["src"])
    assert image.status_code == 200 and image.content == PNG and image.headers["content-type"] == "image/png"
    assert "immutable" in image.headers["cache-control"]
    css = client.get(sheets[1])
    assert css.text == ":root{--accent:#7a1fa2}\n" and css.headers["content-type"].startswith("text/css")
    assert client.head(sheets[1]).status_code == 200
    assert client.get("/assets/0000.png").status_code == 404

    thanks = client.get(Visitor(client).submit().headers["location"])
    back = [a for a in Page(thanks.text).find_all("a") if a.attrs["href"] == "https://bakery.example/"]
    assert back and back[0].text == "Back to Test Bakery Deals"


def test_an_unbranded_page_has_the_default_look(make_client: MakeClient) -> None:
    page = Page(make_client().get("/join").text)

    assert page.find("html").attrs["data-theme"] == "auto"
    assert page.find_all("img") == []
    assert page.find("link", rel="icon").attrs["href"] == "/static/favicon.svg"
    assert page.find("button").text.strip() == "Sign up for texts"


@pytest.mark.parametrize(
    ("key", "value", "logo", "expected"),
    [
        ("logo", '"brand/missing.png"', PNG, "key 'logo': no such file"),
        ("logo", '"brand/logo.gif"', PNG, "key 'logo': must be a .png, .svg, .webp file"),
        ("logo", '"brand/logo.png"', b"GIF89a" + b"\x00" * 20, "key 'logo': logo.png is not a image/png file"),
        ("logo", '"brand/logo.png"', PNG + b"\x00" * 110_000, "key 'logo': logo.png is 107 KB; at most 100 KB"),
        ("accent_color", '"blue"', PNG, "key 'accent_color': must be a hex colour"),
        ("accent_color", '"#ffcc00"', PNG, "key 'accent_color': #ffcc00 has a contrast of 1.5:1"),
        ("theme", '"sepia"', PNG, "key 'theme'"),
        ("back_url", '"javascript:alert(1)"', PNG, "key 'back_url'"),
        ("button_text", '""', PNG, "key 'button_text'"),
    ],
)
def test_a_branding_key_that_cannot_be_used_stops_start_up_naming_it(
    tmp_path: Path, key: str, value: str, logo: bytes, expected: str
) -> None:
    text = CAMPAIGNS_TOML.replace("[campaigns.Alerts]", f"{key} = {value}\n\n[campaigns.Alerts]")
    path = branded(tmp_path, text, logo=logo)

    with pytest.raises(CampaignsError) as refused:
        load_campaigns(path, reserved=RESERVED_PATHS)

    message = str(refused.value)
    assert message.startswith(f"{path}: campaign 'JOIN': ") and expected in message, message


def test_an_svg_logo_is_served_as_svg_under_the_default_csp(make_client: MakeClient, tmp_path: Path) -> None:
    text = CAMPAIGNS_TOML.replace("[campaigns.Alerts]", 'logo = "brand/logo.svg"\n\n[campaigns.Alerts]')
    client = make_client(campaigns=branded(tmp_path, text, logo=SVG, name="logo.svg"))

    (logo,) = Page(client.get("/join").text).find_all("img", class_="logo")
    served = client.get(logo.attrs["src"])

    assert served.content == SVG and served.headers["content-type"] == "image/svg+xml"
    # Opened on its own, an SVG may run no script: the default CSP allows none.
    assert "default-src 'none'" in served.headers["content-security-policy"]


def test_contrast_is_wcag_s_ratio() -> None:
    from app.branding import accent, contrast

    # Known values: #767676 is the lightest grey with AA contrast on white.
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert accent("#767676") == "#767676" and accent("#0B57D0") == "#0b57d0" and accent("#333") == "#333333"
    with pytest.raises(ValueError, match=r"4\.5:1"):
        accent("#777777")
