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
from .i18n import DEFAULT_LANGUAGE

# The page variants the site prerenders: each campaign has a page of each variant in
# each of its languages.
PLAIN = "plain"
# The form alone, for an iframe on the business's own site (`/embed/{keyword}`).
EMBED = "embed"
VARIANTS = (PLAIN, EMBED)
ENGLISH = DEFAULT_LANGUAGE


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
        # One join: chained `+` would copy the page's bytes into a new object four times.
        return b"".join((self.before_query, query, self.before_token, token.encode(), self.rest))


@dataclass(frozen=True, slots=True)
class Brand:
    """A campaign's own files (app.branding): its logo, its stylesheet (its colour)."""

    logo: Asset | None = None
    stylesheet: Asset | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """One campaign as the site shows it in one language: `campaign` in that language's
    words (`Campaign.in_language`). Its pages show exactly `disclosure`, and each
    consent record made on them points at its hash and names `language`."""

    campaign: Campaign
    disclosure: Disclosure
    brand: Brand = Brand()
    language: str = ENGLISH

    @property
    def languages(self) -> tuple[str, ...]:
        """Every language the campaign is offered in, its default first."""
        return self.campaign.languages

    @property
    def key(self) -> str:
        """The campaign's keyword folded: what its form tokens and its limit counts are
        named by, the same for /JOIN and /join."""
        return _fold(self.campaign.keyword)


class PageKey(NamedTuple):
    keyword: str
    variant: str = PLAIN
    language: str = ENGLISH


@dataclass(frozen=True, slots=True)
class Pages:
    """A campaign's page of one variant in each of its languages: what a page view
    picks from (app.web.languages.pick), with the default ready when there is no choice."""

    default: PrerenderedPage
    by_language: Mapping[str, PrerenderedPage]
    # The campaign's languages, default first; more than one means a choice to make.
    languages: tuple[str, ...]
    multilingual: bool


def _fold(keyword: str) -> str:
    return keyword.lower()


class Site:
    """Every campaign of one campaigns file with its disclosure and prerendered pages.

    Immutable: built whole, swapped whole."""

    __slots__ = ("_assets", "_listings", "_localized", "_pages", "_pages_of")

    def __init__(self, listings: Iterable[Listing], pages: Mapping[PageKey, PrerenderedPage]) -> None:
        """`listings`: each campaign in each of its languages (the default language's
        stands for the campaign); `pages`: their prerendered pages."""
        self._localized: dict[tuple[str, str], Listing] = {}
        self._listings: dict[str, Listing] = {}
        for item in listings:
            key = _fold(item.campaign.keyword)
            self._localized[key, item.language] = item
            if item.language == item.campaign.default_language:
                self._listings[key] = item
        self._assets: dict[str, Asset] = {
            asset.name: asset
            for item in self._listings.values()
            for asset in (item.brand.logo, item.brand.stylesheet)
            if asset is not None
        }
        self._pages: dict[tuple[str, str, str], PrerenderedPage] = {
            (_fold(key.keyword), key.variant, key.language): page for key, page in pages.items()
        }
        self._pages_of: dict[tuple[str, str], Pages] = {}
        for (key, variant, _), page in self._pages.items():
            if (key, variant) in self._pages_of or key not in self._listings:
                continue
            languages = self._listings[key].languages
            by_language = {
                lang: self._pages[key, variant, lang] for lang in languages if (key, variant, lang) in self._pages
            }
            default = by_language.get(languages[0], page)
            self._pages_of[key, variant] = Pages(default, by_language, languages, len(by_language) > 1)

    def asset(self, name: str) -> Asset | None:
        """A campaign's logo or stylesheet by the last part of its URL."""
        return self._assets.get(name)

    def listing(self, keyword: str, language: str | None = None) -> Listing | None:
        """The campaign of `keyword` in `language`; in its default language when it is
        not offered in that one (or None is asked)."""
        key = _fold(keyword)
        if language is not None:
            found = self._localized.get((key, language))
            if found is not None:
                return found
        return self._listings.get(key)

    def campaign(self, keyword: str) -> Campaign | None:
        listing = self._listings.get(_fold(keyword))
        return listing.campaign if listing is not None else None

    def page(self, keyword: str, variant: str = PLAIN, language: str = ENGLISH) -> PrerenderedPage | None:
        """The prerendered page of `keyword`'s campaign; None for no such campaign
        (or no such variant or language of it)."""
        return self._pages.get((_fold(keyword), variant, language))

    def pages(self, keyword: str, variant: str = PLAIN) -> Pages | None:
        """`keyword`'s page of `variant` in each language: a page view's one lookup."""
        return self._pages_of.get((_fold(keyword), variant))

    @property
    def listings(self) -> tuple[Listing, ...]:
        """Each campaign in its default language, in the campaigns file's order."""
        return tuple(self._listings.values())

    @property
    def every_language(self) -> tuple[Listing, ...]:
        """Each campaign in each of its languages: every disclosure the site shows."""
        return tuple(self._localized.values())

    @property
    def campaigns(self) -> tuple[Campaign, ...]:
        return tuple(item.campaign for item in self._listings.values())
