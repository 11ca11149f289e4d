"""Phone numbers: what a person typed, checked against a campaign's rules.

`normalise()` turns the typed text into the form ProTexting wants, digits with the
country code first (E.164 without the "+"), or raises `PhoneError` with a message
written for the person who typed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import phonenumbers
import pycountry
from phonenumbers import NumberParseException

# Number types by their phonenumbers names, lower-cased: what a campaign may allow.
NUMBER_TYPES: dict[str, int] = {
    name.lower(): value for name, value in vars(phonenumbers.PhoneNumberType).items() if name.isupper()
}
# Those that can receive marketing texts; premium rate, shared cost, toll free, pager,
# UAN and the like are what SMS-pumping bots submit, so they are refused by default.
DEFAULT_NUMBER_TYPES = ("mobile", "fixed_line_or_mobile")

_TYPE_WORDS = {
    "fixed_line": "a landline",
    "mobile": "a mobile",
    "fixed_line_or_mobile": "a landline or mobile",
    "toll_free": "a toll-free",
    "premium_rate": "a premium-rate",
    "shared_cost": "a shared-cost",
    "voip": "an internet (VoIP)",
    "personal_number": "a personal-forwarding",
    "pager": "a pager",
    "uan": "a company (UAN)",
    "voicemail": "a voicemail",
    "unknown": "an unrecognised",
}

# Longer than any real number with spaces, dashes and an extension prefix; anything
# longer is not a phone number and is refused before phonenumbers parses it.
MAX_LENGTH = 40


class PhoneError(Exception):
    """The typed number cannot be used; `message` is shown beside the field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Regions phonenumbers knows that ISO 3166 (and so pycountry) does not.
_NOT_IN_ISO_3166 = {"AC": "Ascension Island", "TA": "Tristan da Cunha", "XK": "Kosovo"}


@lru_cache(maxsize=512)
def country_name(region: str) -> str:
    """English name of an ISO region code, as people say it ("South Korea", not
    "Korea, Republic of"). From pycountry: phonenumbers' own geocoder would do, but
    it holds every carrier and place name in memory (about 100 MB)."""
    country = pycountry.countries.get(alpha_2=region)
    if country is None:
        return _NOT_IN_ISO_3166.get(region, region)
    return getattr(country, "common_name", None) or country.name


def _countries_phrase(regions: Sequence[str]) -> str:
    names = [country_name(region) for region in regions]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def normalise(
    raw: str,
    *,
    default_country: str,
    countries: Sequence[str],
    types: Sequence[str] = DEFAULT_NUMBER_TYPES,
) -> str:
    """Return `raw` as E.164 digits without "+", or raise `PhoneError`.

    `types` are the allowed number types, by `NUMBER_TYPES` name."""
    text = raw.strip()
    if not text:
        raise PhoneError("Enter your mobile number.")
    if len(text) > MAX_LENGTH:
        raise PhoneError("That is too long to be a phone number.")
    try:
        number = phonenumbers.parse(text, default_country)
    except NumberParseException:
        raise PhoneError("That doesn't look like a phone number. Check it and try again.") from None

    if not phonenumbers.is_valid_number(number):
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if region == phonenumbers.UNKNOWN_REGION:
            raise PhoneError("That doesn't look like a phone number. Check it and try again.")
        raise PhoneError(f"That isn't a valid {country_name(region)} phone number. Check the digits and try again.")

    # The kind of line first: a toll-free +1 800 number is filed under the US by
    # phonenumbers, and "toll-free" is the useful thing to tell a Canadian.
    kind = phonenumbers.number_type(number)
    if kind not in {NUMBER_TYPES[name] for name in types}:
        name = next((n for n, v in NUMBER_TYPES.items() if v == kind), "unknown")
        raise PhoneError(
            f"That looks like {_TYPE_WORDS.get(name, 'an unrecognised')} number, which can't receive these texts. "
            "Please use a mobile number."
        )

    found = phonenumbers.region_code_for_number(number)
    if found not in countries:
        raise PhoneError(f"Sorry, this program only texts numbers in {_countries_phrase(countries)}.")

    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).removeprefix("+")


def load_metadata(regions: Sequence[str]) -> None:
    """Load phonenumbers' metadata of these regions now rather than on the first
    signup from each (it is read lazily, a few ms per region): start-up then holds it
    among what it freezes out of the collector's scans (app.main)."""
    for region in regions:
        example = phonenumbers.example_number(region)
        if example is not None:
            phonenumbers.is_valid_number(example)
            country_name(region)
