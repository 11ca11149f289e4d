"""Phone numbers: whatever way a person types a number, ProTexting gets E.164 digits, and
a number the campaign cannot text is refused with a message the person can act on."""

from __future__ import annotations

import phonenumbers
import pytest
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from app.phone import MAX_LENGTH, NUMBER_TYPES, PhoneError, normalise
from app.web.messages import say

COUNTRY_NAMES = {
    "US": "United States",
    "CA": "Canada",
    "GB": "United Kingdom",
    "DE": "Germany",
    "FR": "France",
    "MX": "Mexico",
    "BR": "Brazil",
    "IN": "India",
    "AU": "Australia",
    "JP": "Japan",
    "ES": "Spain",
    "ZA": "South Africa",
}
TYPES = [PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.FIXED_LINE_OR_MOBILE]
FORMATS = [PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164]
# Where a test is about how a number is written, not what kind of line it is.
ANY_TYPE = tuple(NUMBER_TYPES)
# What phonenumbers calls the types a marketing text can reach.
TEXTABLE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}

# The example numbers phonenumbers ships, so the cases follow its metadata, not our guesses.
EXAMPLES = [
    pytest.param(region, kind, style, id=f"{region}-{kind}-{style}")
    for region in COUNTRY_NAMES
    for kind in TYPES
    for style in FORMATS
]


def example(region: str, kind: int) -> phonenumbers.PhoneNumber:
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None, f"phonenumbers ships no {kind} example for {region}"
    return number


def e164_digits(number: phonenumbers.PhoneNumber) -> str:
    return f"{number.country_code}{number.national_number}"


def refusal(
    raw: str, *, default_country: str = "US", countries: tuple[str, ...] = ("US",), **rules: tuple[str, ...]
) -> str:
    """The words the person reads beside the field (the edge's, for the refusal's code)."""
    with pytest.raises(PhoneError) as caught:
        normalise(raw, default_country=default_country, countries=countries, **rules)
    problem = caught.value.problem
    assert problem.field == "phone" and problem.code.startswith("phone.")
    return say(problem)


@pytest.mark.parametrize(("region", "kind", "style"), EXAMPLES)
def test_example_numbers_are_accepted_in_every_written_form(region: str, kind: int, style: int) -> None:
    number = example(region, kind)
    typed = phonenumbers.format_number(number, style)

    result = normalise(typed, default_country=region, countries=[region], types=ANY_TYPE)

    assert result == e164_digits(number)
    assert result.isdigit()


@pytest.mark.parametrize(
    ("region", "kind", "style"), [p for p in EXAMPLES if p.values[2] != PhoneNumberFormat.NATIONAL]
)
def test_international_forms_are_accepted_whatever_the_default_country(region: str, kind: int, style: int) -> None:
    number = example(region, kind)
    typed = phonenumbers.format_number(number, style)

    result = normalise(typed, default_country="US", countries=["US", region], types=ANY_TYPE)

    assert result == e164_digits(number)


@pytest.mark.parametrize(
    ("region", "kind", "style"), [p for p in EXAMPLES if p.values[2] != PhoneNumberFormat.NATIONAL]
)
def test_example_numbers_from_another_country_are_refused_naming_the_allowed_ones(
    region: str, kind: int, style: int
) -> None:
    allowed = ("FR", "DE") if region not in ("FR", "DE") else ("GB", "JP")
    typed = phonenumbers.format_number(example(region, kind), style)

    message = refusal(typed, default_country=allowed[0], countries=allowed, types=ANY_TYPE)

    names = [COUNTRY_NAMES[code] for code in allowed]
    assert message == f"Sorry, this program only texts numbers in {names[0]} or {names[1]}."


@pytest.mark.parametrize(
    "typed",
    [
        "(201) 555-0123",
        "201-555-0123",
        "201.555.0123",
        "201 555 0123",
        "2015550123",
        "  2015550123  ",
        "1 201 555 0123",
        "+1 (201) 555-0123",
        "+12015550123",
    ],
)
def test_us_numbers_as_people_type_them(typed: str) -> None:
    assert normalise(typed, default_country="US", countries=["US"]) == "12015550123"


@pytest.mark.parametrize("typed", ["", "   ", "\t\n"])
def test_an_empty_field_asks_for_the_number(typed: str) -> None:
    assert refusal(typed) == "Enter your mobile number."


@pytest.mark.parametrize("typed", ["call me", "abc", "my number", "--", "+"])
def test_text_that_is_not_a_number_is_refused(typed: str) -> None:
    assert refusal(typed) == "That doesn't look like a phone number. Check it and try again."


def test_an_unknown_country_code_is_refused() -> None:
    assert refusal("+999 1234 5678") == "That doesn't look like a phone number. Check it and try again."


def test_a_long_value_is_refused_before_parsing() -> None:
    assert refusal("1" * (MAX_LENGTH + 1)) == "That is too long to be a phone number."
    assert refusal("2" * 41) == "That is too long to be a phone number."


def test_forty_characters_is_still_parsed() -> None:
    typed = "+1" + " " * 24 + "(201) 555-0123"
    assert len(typed) == MAX_LENGTH

    assert normalise(typed, default_country="US", countries=["US"]) == "12015550123"


@pytest.mark.parametrize("typed", ["2015550", "1234567890", "201555012345", "+1 555 555 5555"])
def test_an_invalid_us_number_names_the_country(typed: str) -> None:
    message = refusal(typed)

    assert "United States" in message
    assert "isn't a valid" in message


def test_an_invalid_foreign_number_names_its_own_country() -> None:
    assert "United Kingdom" in refusal("+44 12", countries=("US", "GB"))


def test_a_canadian_number_is_accepted_where_canada_is_allowed() -> None:
    assert normalise("(506) 234-5678", default_country="US", countries=["US", "CA"]) == "15062345678"


def test_a_canadian_number_is_refused_where_only_the_us_is_allowed() -> None:
    assert refusal("(506) 234-5678") == "Sorry, this program only texts numbers in United States."


def test_three_allowed_countries_are_listed_with_commas_and_or() -> None:
    message = refusal("+44 7400 123456", countries=("US", "CA", "MX"))

    assert message == "Sorry, this program only texts numbers in United States, Canada or Mexico."


# --- what kind of line ---------------------------------------------------------------

LINE_KINDS = [
    pytest.param(region, kind, id=f"{region}-{kind}")
    for region in COUNTRY_NAMES
    for kind in [*TYPES, PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE]
]
REFUSED_WORDS = {
    PhoneNumberType.FIXED_LINE: "landline",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
}


@pytest.mark.parametrize(("region", "kind"), LINE_KINDS)
def test_by_default_only_numbers_that_can_take_texts_are_accepted(region: str, kind: int) -> None:
    number = example(region, kind)
    typed = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    # Judge the line as phonenumbers does: some countries cannot tell mobiles from landlines.
    actual = phonenumbers.number_type(number)
    countries = ("US", "CA") if region in ("US", "CA") else (region,)

    if actual in TEXTABLE:
        assert normalise(typed, default_country=region, countries=countries) == e164_digits(number)
    else:
        message = refusal(typed, default_country=region, countries=countries)
        assert message.endswith("Please use a mobile number.")
        assert REFUSED_WORDS[actual] in message


def test_a_campaign_may_allow_landlines() -> None:
    landline = phonenumbers.format_number(example("GB", PhoneNumberType.FIXED_LINE), PhoneNumberFormat.NATIONAL)

    assert "landline" in refusal(landline, default_country="GB", countries=("GB",))
    assert normalise(landline, default_country="GB", countries=["GB"], types=("mobile", "fixed_line")) == "441212345678"


def test_the_voip_refusal_reads_as_english() -> None:
    voip = phonenumbers.format_number(example("GB", PhoneNumberType.VOIP), PhoneNumberFormat.INTERNATIONAL)

    assert refusal(voip, default_country="GB", countries=("GB",)).startswith(
        "That looks like an internet (VoIP) number"
    )


# --- which check speaks first ---------------------------------------------------------


def test_a_uk_landline_on_a_us_page_is_told_the_country_not_the_line() -> None:
    landline = phonenumbers.format_number(example("GB", PhoneNumberType.FIXED_LINE), PhoneNumberFormat.INTERNATIONAL)

    assert refusal(landline) == "Sorry, this program only texts numbers in United States."


def test_a_foreign_toll_free_number_is_told_the_country() -> None:
    toll_free = phonenumbers.format_number(example("GB", PhoneNumberType.TOLL_FREE), PhoneNumberFormat.INTERNATIONAL)

    assert (
        refusal(toll_free, countries=("US", "CA"))
        == "Sorry, this program only texts numbers in United States or Canada."
    )


def test_a_toll_free_800_number_on_a_canadian_page_is_told_it_is_toll_free() -> None:
    # phonenumbers files +1 800 under the US, but it is as Canadian as it is American:
    # "toll-free" is what the person can act on, not "only Canada".
    message = refusal("+1 800 266 2278", default_country="CA", countries=("CA",))

    assert message.startswith("That looks like a toll-free number")
