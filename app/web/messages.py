"""The words a visitor reads for each problem code: chosen here, at the edge, and
nowhere else (`app.problems`). The form and the JSON API say some things differently:
a person is asked to press the button again, a developer to fetch a new token.

English only for now: a second language becomes a catalog looked up by the same codes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import pycountry

from ..problems import Problem

# Regions phonenumbers knows that ISO 3166 (and so pycountry) does not.
_NOT_IN_ISO_3166 = {"AC": "Ascension Island", "TA": "Tristan da Cunha", "XK": "Kosovo"}

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


def _wait(seconds: int) -> str:
    """The real wait, "Try again in 3 minutes", rounded up (never too early): in seconds
    under a minute, minutes up to 55, hours beyond."""
    if seconds < 60:
        count, unit = seconds, "second"
    elif seconds <= 55 * 60:
        count, unit = -(-seconds // 60), "minute"
    else:
        count, unit = -(-seconds // 3600), "hour"
    return f"Try again in {count} {unit}{'' if count == 1 else 's'}."


_NOT_A_NUMBER = "That doesn't look like a phone number. Check it and try again."

# Code -> the words, made from the problem's parameters.
_WORDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "phone.missing": lambda _: "Enter your mobile number.",
    "phone.too_long": lambda _: "That is too long to be a phone number.",
    "phone.not_a_number": lambda _: _NOT_A_NUMBER,
    "phone.invalid_in_country": lambda p: (
        f"That isn't a valid {country_name(p['region'])} phone number. Check the digits and try again."
    ),
    "phone.type_not_allowed": lambda p: (
        f"That looks like {_TYPE_WORDS.get(p['number_type'], 'an unrecognised')} number, which can't receive "
        "these texts. Please use a mobile number."
    ),
    "phone.country_not_served": lambda p: (
        f"Sorry, this program only texts numbers in {_countries_phrase(p['regions'])}."
    ),
    "token.expired": lambda _: (
        "This page was open for a long time. Please check your number and press the button again."
    ),
    "token.used": lambda _: "This form was sent already. To sign up the number below, please press the button again.",
    "token.used_stop": lambda _: (
        "This form was sent already. To stop texts to the number below, please press the button again."
    ),
    "captcha.failed": lambda _: "Please complete the check below the number, then press the button again.",
    "limit.ip": lambda p: f"We've had a lot of signups from this connection just now. {_wait(p['seconds'])}",
    "limit.number": lambda p: f"This number was signed up several times just now. {_wait(p['seconds'])}",
    "limit.prefix": lambda p: f"We've had a lot of signups for numbers like this one just now. {_wait(p['seconds'])}",
    "limit.campaign": lambda p: f"This signup has taken all the signups it can for now. {_wait(p['seconds'])}",
    "fill.too_fast": lambda _: "Please check your number below and press the button once more to confirm.",
    # ProTexting's refusals of the number, in our words (its own stay in the record).
    "protexting.opted_out": lambda p: (
        f"This number opted out of texts from {p['program']}, so it can't be signed up here. "
        f"To join again, text {p['keyword']} to {p['number']}."
        if "number" in p
        else f"This number opted out of texts from {p['program']}, so it can't be signed up here. "
        "To join again, text START to the number our texts came from."
    ),
    "protexting.blocked": lambda p: (
        f"This number can't get texts from {p['program']}. Please use another mobile number."
    ),
    "protexting.number_refused": lambda _: (
        "We can't send texts to this number. Check it, or use another mobile number."
    ),
}

# Where the JSON API says it otherwise: its reader is a developer.
_API_WORDS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "token.expired": lambda _: "The token is too old: fetch a new one.",
    "token.used": lambda _: (
        "The token was used for a signup already: fetch a new one from GET /api/v1/campaigns/{keyword}."
    ),
    "token.used_stop": lambda _: (
        "The token was used for another number already: fetch a new one from GET /api/v1/opt-outs."
    ),
    "captcha.failed": lambda _: "The CAPTCHA was not passed.",
    "fill.too_fast": lambda p: (
        "Sent sooner than a person fills a form in after the token was issued: send it again, with the same "
        f"token, in {p['retry_after']} second(s) (Retry-After)."
    ),
}


def say(problem: Problem, *, api: bool = False) -> str:
    """The words for `problem`; for the JSON API's reader when `api`."""
    words = (_API_WORDS.get(problem.code) if api else None) or _WORDS[problem.code]
    return words(problem.params)
