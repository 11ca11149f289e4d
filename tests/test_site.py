"""The Site: one campaigns file's campaigns, disclosures and pages, found by keyword in
any case."""

from __future__ import annotations

from app.campaigns import parse_campaigns
from app.consent import Disclosure
from app.main import make_templates
from app.site import Listing, PageKey, PrerenderedPage, Site
from app.web.pages import build_site

from .conftest import CAMPAIGNS_TOML


def test_every_campaign_is_found_with_its_disclosure_and_page_in_any_case() -> None:
    site = build_site(make_templates(), parse_campaigns(CAMPAIGNS_TOML, source="test"))

    for keyword in ("JOIN", "join", "Join"):
        listing = site.listing(keyword)
        assert listing is not None and listing.campaign.keyword == "JOIN"
        assert site.campaign(keyword) is listing.campaign
        page = site.page(keyword)
        assert page is not None
        # The page shows exactly the disclosure its consent records point at.
        assert listing.disclosure.text in page.body(query_string=b"", token="t").decode()
    assert [c.keyword for c in site.campaigns] == ["JOIN", "Alerts"]
    # What form tokens and limit counts name the campaign by: one key for every case.
    listing, page = site.listing("JOIN"), site.page("Join")
    assert listing is not None and page is not None and listing.key == page.key == "join"
    assert site.listing("nope") is None and site.campaign("nope") is None and site.page("nope") is None
    # Variants are entries beside the plain page: the embed's is built, none is made up.
    embed = site.page("join", "embed")
    assert embed is not None and listing.disclosure.text in embed.body(query_string=b"", token="t").decode()
    assert site.page("join", "poster-sized") is None and site.page("join", language="es") is None


def test_a_variant_is_an_entry_of_the_same_site() -> None:
    campaigns = parse_campaigns(CAMPAIGNS_TOML, source="test")
    plain = PrerenderedPage("join", b"a", b"b", b"c", {}, [])
    spanish = PrerenderedPage("join", b"x", b"y", b"z", {}, [])
    listings = [Listing(c, Disclosure.of(c.title)) for c in campaigns.values()]
    site = Site(listings, {PageKey("JOIN"): plain, PageKey("JOIN", language="es"): spanish})

    assert site.page("join") is plain and site.page("JOIN", language="es") is spanish
