"""Phone numbers: what a person typed, checked against a campaign's rules.

`normalise()` turns the typed text into the form ProTexting wants, digits with the
country code first (E.164 without the "+"), or raises `PhoneError` with a code and
parameters; the edge (`app.web.messages`) says it in the visitor's words.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException

from .problems import Problem, Refusal

# Number types by their phonenumbers names, lower-cased: what a campaign may allow.
NUMBER_TYPES: dict[str, int] = {
    name.lower(): value for name, value in vars(phonenumbers.PhoneNumberType).items() if name.isupper()
}
# Those that can receive marketing texts; premium rate, shared cost, toll free, pager,
# UAN and the like are what SMS-pumping bots submit, so they are refused by default.
DEFAULT_NUMBER_TYPES = ("mobile", "fixed_line_or_mobile")

# Longer than any real number with spaces, dashes and an extension prefix; anything
# longer is not a phone number and is refused before phonenumbers parses it.
MAX_LENGTH = 40


class PhoneError(Refusal):
    """The typed number cannot be used. Its problem's code, one of:

    phone.missing               nothing typed
    phone.too_long              longer than MAX_LENGTH
    phone.not_a_number          not a phone number anywhere
    phone.invalid_in_country    not valid in `region`, the country its digits name
    phone.country_not_served    a valid number outside `regions`, the campaign's countries
    phone.type_not_allowed      a `number_type` (a NUMBER_TYPES name) the campaign refuses

    in that order of checks: the first that fails is the one reported.
    """

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(f"phone.{code}")
        self.problem = Problem("phone", f"phone.{code}", params)


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
        raise PhoneError("missing")
    if len(text) > MAX_LENGTH:
        raise PhoneError("too_long")
    try:
        number = phonenumbers.parse(text, default_country)
    except NumberParseException:
        raise PhoneError("not_a_number") from None

    # What `is_valid_number` does, with the region it finds kept: each lookup of a
    # number's region matches it against its country's patterns (about 6 us), and the
    # country check below needs the same region.
    found = phonenumbers.region_code_for_number(number)
    if found is None or not phonenumbers.is_valid_number_for_region(number, found):
        region = phonenumbers.region_code_for_country_code(number.country_code or 0)
        if region == phonenumbers.UNKNOWN_REGION:
            raise PhoneError("not_a_number")
        raise PhoneError("invalid_in_country", region=region)

    # The country first: a UK landline on a US page is told the page is for US
    # numbers, which no other number of theirs would change, before what kind of line
    # it is. A number valid in one of the campaign's countries counts as of it: a
    # toll-free +1 800 number is filed under the US by phonenumbers but is valid in
    # Canada too, and "toll-free" is the useful thing to tell a Canadian.
    if found not in countries and not any(phonenumbers.is_valid_number_for_region(number, c) for c in countries):
        raise PhoneError("country_not_served", regions=tuple(countries))

    kind = phonenumbers.number_type(number)
    if kind not in _allowed(tuple(types)):
        name = next((n for n, v in NUMBER_TYPES.items() if v == kind), "unknown")
        raise PhoneError("type_not_allowed", number_type=name)

    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).removeprefix("+")


@functools.lru_cache(maxsize=64)
def _allowed(types: tuple[str, ...]) -> frozenset[int]:
    return frozenset(NUMBER_TYPES[name] for name in types)


def load_metadata(regions: Sequence[str]) -> None:
    """Load phonenumbers' metadata of these regions now rather than on the first
    signup from each (it is read lazily, a few ms per region): start-up then holds it
    among what it freezes out of the collector's scans (app.main)."""
    for region in regions:
        example = phonenumbers.example_number(region)
        if example is not None:
            phonenumbers.is_valid_number(example)
