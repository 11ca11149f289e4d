"""Signing up by text: a campaign's `sms_number` and `sms_keyword`, checked at start-up,
and the "Or text JOIN to 12345" link the signup page offers with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.campaigns import TextTo, parse_campaigns
from tests.support.campaigns import CAMPAIGNS_TOML, write_campaigns
from tests.support.page import Page
from tests.support.visitor import submit

from .conftest import MakeClient
from .test_campaigns import SOURCE, campaign_toml, refused


def with_sms(keys: str) -> str:
    """The tests' campaigns file with `keys` (TOML lines) added to JOIN."""
    return CAMPAIGNS_TOML.replace("\n[campaigns.Alerts]", f"{keys}\n\n[campaigns.Alerts]")


# --- the campaigns file -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "number", "shown"),
    [
        ('"12345"', "12345", "12345"),
        ('"123456"', "123456", "123456"),
        ("12345", "12345", "12345"),  # a TOML integer reads as well
        ('"+1 201 555 0123"', "+12015550123", "(201) 555-0123"),
        ('"(201) 555-0123"', "+12015550123", "(201) 555-0123"),  # in default_country
        ('"+44 20 7946 0958"', "+442079460958", "+44 20 7946 0958"),  # abroad: written in full
    ],
)
def test_a_short_code_or_a_phone_number_is_taken_and_normalised(value: str, number: str, shown: str) -> None:
    campaign = parse_campaigns(campaign_toml(sms_number=value), source=SOURCE)["join"]

    assert campaign.sms_number == number
    assert campaign.text_to == TextTo(keyword="JOIN", number=number, shown=shown)


def test_the_keyword_to_text_is_the_campaigns_own_unless_set() -> None:
    own = parse_campaigns(campaign_toml("Deals", sms_number='"12345"'), source=SOURCE)["deals"]
    other = parse_campaigns(campaign_toml("Deals", sms_number='"12345"', sms_keyword='"BREAD"'), source=SOURCE)["deals"]
    none = parse_campaigns(campaign_toml("Deals"), source=SOURCE)["deals"]

    assert own.text_to is not None and own.text_to.keyword == "Deals"
    assert other.text_to is not None and other.text_to.keyword == "BREAD"
    assert none.sms_number is None and none.text_to is None


@pytest.mark.parametrize("value", ['"1234"', '"1234567"', '"+1 555"', '"call us"', '""', "true", "[12345]"])
def test_a_bad_sms_number_is_refused_naming_the_key(value: str) -> None:
    message = refused(campaign_toml(sms_number=value))

    assert "campaign 'JOIN'" in message
    assert "key 'sms_number'" in message


def test_the_refusal_says_what_an_sms_number_may_be() -> None:
    message = refused(campaign_toml(sms_number='"1234"'))

    assert "short code of 5 or 6 digits or a phone number" in message
    assert "'1234'" in message


@pytest.mark.parametrize("value", ['"two words"', '"-JOIN"', '""', '"J' + "O" * 64 + '"', "5"])
def test_a_bad_sms_keyword_is_refused_naming_the_key(value: str) -> None:
    message = refused(campaign_toml(sms_number='"12345"', sms_keyword=value))

    assert "campaign 'JOIN'" in message
    assert "key 'sms_keyword'" in message


def test_an_sms_keyword_without_a_number_is_refused() -> None:
    message = refused(campaign_toml(sms_keyword='"BREAD"'))

    assert "campaign 'JOIN'" in message
    assert "key 'sms_keyword'" in message
    assert "sms_number" in message


def test_the_link_is_rfc_5724s_with_the_body_percent_encoded() -> None:
    assert TextTo(keyword="JOIN", number="12345", shown="12345").uri == "sms:12345?body=JOIN"
    assert TextTo(keyword="JOIN NOW&", number="+12015550123", shown="").uri == "sms:+12015550123?body=JOIN%20NOW%26"


# --- the signup page ----------------------------------------------------------------------


def text_to_link(html: str) -> tuple[str, str]:
    (link,) = [a for a in Page(html).find_all("a") if a.attrs["href"].startswith("sms:")]
    return link.attrs["href"], " ".join(link.text.split())


def test_the_signup_page_offers_the_text_to_link(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(campaigns=write_campaigns(tmp_path / "sms", with_sms('sms_number = "12345"')))

    html = client.get("/join?src=poster-12").text

    assert text_to_link(html) == ("sms:12345?body=JOIN", "text JOIN to 12345")
    paragraph = Page(html).find("p", **{"class": "text-to"})
    assert " ".join(paragraph.text.split()) == "Or text JOIN to 12345"
    # After the form, outside it: the form's button stays the page's first call to action.
    assert html.index('class="text-to"') > html.index("</form>")
    # Only the campaign with a number offers it.
    assert not [a for a in Page(client.get("/alerts").text).find_all("a") if a.attrs["href"].startswith("sms:")]


def test_a_phone_number_is_linked_in_full_and_shown_as_people_write_it(make_client: MakeClient, tmp_path: Path) -> None:
    text = with_sms('sms_number = "201-555-0123"\nsms_keyword = "DEALS"')
    client = make_client(campaigns=write_campaigns(tmp_path / "sms", text))

    assert text_to_link(client.get("/join").text) == ("sms:+12015550123?body=DEALS", "text DEALS to (201) 555-0123")


def test_the_form_shown_again_after_an_error_still_offers_it(make_client: MakeClient, tmp_path: Path) -> None:
    client = make_client(campaigns=write_campaigns(tmp_path / "sms", with_sms('sms_number = "12345"')))

    response = submit(client, "/join", "555")

    assert response.status_code == 422
    assert text_to_link(response.text) == ("sms:12345?body=JOIN", "text JOIN to 12345")


def test_without_an_sms_number_the_page_has_no_text_to_link(make_client: MakeClient) -> None:
    html = make_client().get("/join").text

    assert "sms:" not in html
    assert "text-to" not in html
