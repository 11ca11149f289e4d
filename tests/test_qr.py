"""QR codes of a campaign's page: what a phone reads from them, what they refuse, and
how they are cached."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import segno
from PIL import Image

from tests.support.page import Page
from tests.support.qr import picture_of, read_qr, svg_modules
from tests.support.records import exported, settled
from tests.support.visitor import Visitor

from .conftest import MakeClient

PUBLIC_URL = "https://texts.example.com"
SVG = "{http://www.w3.org/2000/svg}"


def test_a_phone_reads_the_png_as_the_page_url_and_a_signup_through_it_records_the_src(
    make_client: MakeClient, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path}/qr.db"
    client = make_client(public_url=PUBLIC_URL, database_url=database_url)

    response = client.get("/qr/join.png?src=poster-12")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    (code,) = read_qr(response.content)
    # The campaign's keyword as the campaigns file writes it, and nothing but the src.
    assert code.text == "https://texts.example.com/JOIN?src=poster-12"
    assert code.ec_level == "M"

    # The person scans it and signs up on the page it opens.
    url = urlsplit(code.text)
    assert Visitor(client, f"{url.path}?{url.query}").submit().status_code == 303
    settled(client)
    (record,) = exported(database_url, tmp_path)
    assert record["source"] == {"src": "poster-12"}
    assert record["page_url"] == code.text


def test_without_a_src_the_code_is_just_the_page_url(make_client: MakeClient) -> None:
    client = make_client(public_url=PUBLIC_URL)

    (code,) = read_qr(client.get("/qr/Alerts.png").content)

    assert code.text == "https://texts.example.com/Alerts"


def test_the_code_has_a_quiet_zone_of_four_modules(make_client: MakeClient) -> None:
    client = make_client(public_url=PUBLIC_URL)

    picture = Image.open(io.BytesIO(client.get("/qr/join.png?src=p&scale=1").content)).convert("L")

    expected = segno.make_qr("https://texts.example.com/JOIN?src=p", error="m", boost_error=False)
    side = len(expected.matrix) + 8
    assert picture.size == (side, side)
    light = {
        picture.getpixel((x, y)) for x in range(side) for y in range(side) if min(x, y, side - 1 - x, side - 1 - y) < 4
    }
    assert light == {255}
    assert picture.getpixel((4, 4)) == 0  # the finder pattern's corner, just inside


def test_the_svg_is_svg_that_draws_the_same_code(make_client: MakeClient) -> None:
    client = make_client(public_url=PUBLIC_URL)

    response = client.get("/qr/JOIN.svg?src=table-3&scale=3")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    root = ET.fromstring(response.content)
    assert root.tag == f"{SVG}svg"
    matrix = segno.make_qr("https://texts.example.com/JOIN?src=table-3", error="m", boost_error=False).matrix
    side = len(matrix) + 8
    # Its own size for when it is opened alone, and a viewBox so a page can size it.
    assert (root.attrib["width"], root.attrib["height"]) == (str(side * 3), str(side * 3))
    assert root.attrib["viewBox"] == f"0 0 {side * 3} {side * 3}"
    (path,) = root.iter(f"{SVG}path")
    drawn = svg_modules(path.attrib["d"])
    assert drawn == {(x + 4, y + 4) for y, row in enumerate(matrix) for x, dark in enumerate(row) if dark}
    # And drawn as pixels, a phone reads it.
    (code,) = read_qr(picture_of(drawn, side))
    assert code.text == "https://texts.example.com/JOIN?src=table-3"


@pytest.mark.parametrize(("scale", "pixels"), [(None, 10), ("1", 1), ("40", 40)])
def test_scale_is_pixels_a_module(make_client: MakeClient, scale: str | None, pixels: int) -> None:
    client = make_client(public_url=PUBLIC_URL)
    query = f"?scale={scale}" if scale else ""

    picture = Image.open(io.BytesIO(client.get(f"/qr/join.png{query}").content))

    side = len(segno.make_qr("https://texts.example.com/JOIN", error="m", boost_error=False).matrix) + 8
    assert picture.size == (side * pixels, side * pixels)


@pytest.mark.parametrize("kind", ["svg", "png"])
@pytest.mark.parametrize("src", ["", "a" * 65, "poster 12", "poster/12", "pöster", "<b>x</b>", "a%2Fb"])
def test_a_src_that_is_not_a_placement_tag_is_refused_with_a_clear_message(
    make_client: MakeClient, kind: str, src: str
) -> None:
    response = make_client().get(f"/qr/join.{kind}", params={"src": src})

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    text = " ".join(Page(response.text).find("main").text.split())
    assert "src must be 1 to 64 letters, digits, dots, dashes or underscores" in text
    assert "<b>" not in response.text


@pytest.mark.parametrize("src", ["a", "A" * 64, "poster-12", "shop_window.3"])
def test_every_placement_tag_is_taken(make_client: MakeClient, src: str) -> None:
    (code,) = read_qr(make_client().get("/qr/join.png", params={"src": src}).content)

    assert code.text == f"http://127.0.0.1:8000/JOIN?src={src}"


@pytest.mark.parametrize("kind", ["svg", "png"])
@pytest.mark.parametrize("scale", ["0", "41", "-1", "1.5", "ten", "", "٣"])
def test_a_scale_out_of_bounds_is_refused(make_client: MakeClient, kind: str, scale: str) -> None:
    response = make_client().get(f"/qr/join.{kind}", params={"scale": scale})

    assert response.status_code == 400
    assert "scale must be a whole number from 1 to 40" in response.text


@pytest.mark.parametrize("path", ["/qr/nope.png", "/qr/nope.svg", "/qr/JOIN.gif", "/qr/JOIN"])
def test_an_unknown_keyword_or_kind_is_the_404_page(make_client: MakeClient, path: str) -> None:
    response = make_client().get(path)

    assert response.status_code == 404
    assert Page(response.text).find("h1").text == "Page not found"


@pytest.mark.parametrize("kind", ["svg", "png"])
def test_the_code_is_cached_and_revalidated_by_its_etag(make_client: MakeClient, kind: str) -> None:
    client = make_client()
    path = f"/qr/join.{kind}?src=poster-12"

    first = client.get(path)

    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')  # strong
    cache_control = {part.strip() for part in first.headers["cache-control"].split(",")}
    assert "public" in cache_control
    (max_age,) = (int(part.split("=")[1]) for part in cache_control if part.startswith("max-age="))
    assert max_age >= 86400
    # The same code again is the same bytes, in any case of its keyword.
    assert client.get(f"/qr/JOIN.{kind}?src=poster-12").content == first.content
    for tag in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get(path, headers={"if-none-match": tag})
        assert again.status_code == 304, tag
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == first.headers["cache-control"]
    assert client.get(path, headers={"if-none-match": '"other"'}).status_code == 200
    # Another placement is another code, with another tag.
    assert client.get(f"/qr/join.{kind}?src=poster-13").headers["etag"] != etag


def test_head_answers_like_get_without_the_body(make_client: MakeClient) -> None:
    client = make_client()

    head = client.head("/qr/join.png?src=poster-12")
    get = client.get("/qr/join.png?src=poster-12")

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == get.headers["etag"]
    assert head.headers["content-type"] == "image/png"
    assert client.head("/qr/nope.png").status_code == 404
