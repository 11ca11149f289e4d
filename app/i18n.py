"""Languages: the catalogs every visitor-facing word comes from, and which one a visitor gets.

The words live in gettext catalogs (app/locale/LANG/LC_MESSAGES/messages.po, compiled to
.mo beside them; `make messages` extracts and updates them with Babel). English is the
source language: its msgids are the English words, so an English string missing from a
catalog still reads right.

A campaign offers the languages it has texts for (app.campaigns); a visitor gets the
one `?lang=` names, else the best of their Accept-Language among those, else the
campaign's default. Nothing here knows HTTP: the edge hands in the header's value.
"""

from __future__ import annotations

import functools
import gettext
import re
from collections.abc import Sequence

from . import packaged

# The languages this service has catalogs for; a campaign may offer any of them.
LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"
# The languages' own names, for the link that switches to them.
NAMES = {"en": "English", "es": "Español"}

# The words a confirm_message must carry in each language for carriers to accept it:
# one of each group (Spanish programs honour ALTO and AYUDA as well as STOP and HELP).
STOP_WORDS = {"en": ("STOP",), "es": ("ALTO", "STOP")}
HELP_WORDS = {"en": ("HELP",), "es": ("AYUDA", "HELP")}

_DOMAIN = "messages"


def N_(message: str) -> str:
    """Marks `message` for the catalogs (make messages); it is translated where shown."""
    return message


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog of `language` (English's msgids when it has none)."""
    return gettext.translation(_DOMAIN, packaged("locale"), languages=[language], fallback=True)


def has_words(text: str, words: Sequence[str]) -> bool:
    """Whether `text` holds one of `words` as a word of its own, in capitals as carriers print them."""
    return any(re.search(rf"\b{re.escape(word)}\b", text) for word in words)


# A language range of Accept-Language (RFC 9110 12.5.4) with its optional weight.
_RANGE = re.compile(r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([01](?:\.\d{0,3})?))?\s*$")
_MAX_RANGES = 20


# A page view of a campaign in several languages reads the header; browsers send the
# same few values over and over, so the answer is kept by the header's text (and the
# campaign's languages). Bounded: a client cannot grow it.
@functools.lru_cache(maxsize=256)
def negotiate(header: str, offered: tuple[str, ...]) -> str | None:
    """The first of `offered` that the Accept-Language `header` prefers, or None.

    Our own few lines rather than a library's: Babel's `negotiate_locale` takes the
    preferences already parsed and ordered, and does not read weights; the header's
    grammar is small. Only the primary subtag is compared (es-MX and es-US both get
    "es"), since a catalog is one per language. A weight of 0 refuses a language; a
    malformed range is skipped, never an error.
    """
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:_MAX_RANGES]):
        found = _RANGE.match(part)
        if found is None:
            continue
        weight = float(found.group(2)) if found.group(2) is not None else 1.0
        ranked.append((-weight, position, found.group(1).split("-")[0].lower()))
    ranked.sort()
    refused = {language for weight, _, language in ranked if weight == 0}
    for weight, _, language in ranked:
        if weight == 0:
            break
        if language == "*":
            return next((item for item in offered if item not in refused), None)
        if language in offered:
            return language
    return None
