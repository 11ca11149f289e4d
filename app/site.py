"""The site: the campaigns of one loaded campaigns file, as the service shows them.

A `Site` is built once per campaigns file (`app.web.pages.build_site`, which renders with
the templates) and never changed: a reload builds a new one and swaps it whole
(`app.state.site`), so a request sees one file's campaigns, disclosures and pages,
never a mix. Keywords ignore case, and this is the one place a visitor's keyword is
folded: everything else is handed the `Listing` or the `Campaign` it names, and form
tokens and limit counts name a campaign by its `key`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qsl, urlencode

from markupsafe import escape

from .branding import Asset
from .campaigns import Campaign
from .consent import Disclosure, source_params

# The page variants the site prerenders. Today each campaign has one page; the embed
# and each language become further entries beside it, not new tables.
PLAIN = "plain"
# The form alone, for an iframe on the business's own site (`/embed/{keyword}`).
EMBED = "embed"
VARIANTS = (PLAIN, EMBED)
ENGLISH = "en"


def variant_path(campaign: Campaign, variant: str) -> str:
    """Where a campaign's page of `variant` is: `/JOIN`, `/embed/JOIN`."""
    return campaign.path if variant == PLAIN else f"/{variant}{campaign.path}"


def source_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The page's source parameters as the form action's query ("" when none): they
    ride along so the consent record knows which poster or link the person came from."""
    source = source_params(pairs)
    return f"?{urlencode(source)}" if source else ""


@dataclass(frozen=True, slots=True)
class PrerenderedPage:
    """A campaign's signup page, rendered once around two holes: each view only
    splices in the source parameters and a fresh form token (app.web.pages.prerender)."""

    # The campaign's key (`Listing.key`), which the page's form tokens name.
    key: str
    before_query: bytes
    before_token: bytes
    rest: bytes
    headers: dict[str, str]
    # The same headers, and the security headers every response carries, ready for ASGI.
    raw_headers: list[tuple[bytes, bytes]]

    def body(self, *, query_string: bytes, token: str) -> bytes:
        query = b""
        if query_string:
            pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
            query = str(escape(source_query(pairs))).encode()
        return self.before_query + query + self.before_token + token.encode() + self.rest


@dataclass(frozen=True, slots=True)
class Brand:
    """A campaign's own files (app.branding): its logo, its stylesheet (its colour)."""

    logo: Asset | None = None
    stylesheet: Asset | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """One campaign as the site shows it. Its pages show exactly `disclosure`, and each
    consent record made on them points at its hash."""

    campaign: Campaign
    disclosure: Disclosure
    brand: Brand = Brand()

    @property
    def key(self) -> str:
        """The campaign's keyword folded: what its form tokens and its limit counts are
        named by, the same for /JOIN and /join."""
        return _fold(self.campaign.keyword)


class PageKey(NamedTuple):
    keyword: str
    variant: str = PLAIN
    language: str = ENGLISH


def _fold(keyword: str) -> str:
    return keyword.lower()


class Site:
    """Every campaign of one campaigns file with its disclosure and prerendered pages.

    Immutable: built whole, swapped whole."""

    __slots__ = ("_assets", "_listings", "_pages")

    def __init__(self, listings: Iterable[Listing], pages: Mapping[PageKey, PrerenderedPage]) -> None:
        self._listings: dict[str, Listing] = {_fold(item.campaign.keyword): item for item in listings}
        self._assets: dict[str, Asset] = {
            asset.name: asset
            for item in self._listings.values()
            for asset in (item.brand.logo, item.brand.stylesheet)
            if asset is not None
        }
        self._pages: dict[tuple[str, str, str], PrerenderedPage] = {
            (_fold(key.keyword), key.variant, key.language): page for key, page in pages.items()
        }

    def asset(self, name: str) -> Asset | None:
        """A campaign's logo or stylesheet by the last part of its URL."""
        return self._assets.get(name)

    def listing(self, keyword: str) -> Listing | None:
        return self._listings.get(_fold(keyword))

    def campaign(self, keyword: str) -> Campaign | None:
        listing = self._listings.get(_fold(keyword))
        return listing.campaign if listing is not None else None

    def page(self, keyword: str, variant: str = PLAIN, language: str = ENGLISH) -> PrerenderedPage | None:
        """The prerendered page of `keyword`'s campaign; None for no such campaign
        (or no such variant of it)."""
        return self._pages.get((_fold(keyword), variant, language))

    @property
    def listings(self) -> tuple[Listing, ...]:
        """In the campaigns file's order."""
        return tuple(self._listings.values())

    @property
    def campaigns(self) -> tuple[Campaign, ...]:
        return tuple(item.campaign for item in self._listings.values())
