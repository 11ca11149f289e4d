"""The words a visitor reads for each problem code: chosen here, at the edge, and
nowhere else (`app.problems`). The form and the JSON API say some things differently:
a person is asked to press the button again, a developer to fetch a new token.

The form's words are in the page's language, from the catalogs (app.i18n); the JSON
API's reader is a developer, and reads English.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import pycountry
from babel import Locale
from babel.lists import format_list

from ..i18n import DEFAULT_LANGUAGE, translations
from ..problems import Problem

# Regions phonenumbers knows that ISO 3166 (and so pycountry) does not.
_NOT_IN_ISO_3166 = {"AC": "Ascension Island", "TA": "Tristan da Cunha", "XK": "Kosovo"}

Gettext = Callable[[str], str]


def _type_words(_: Gettext) -> dict[str, str]:
    # "That looks like {a landline} number": each is said as its language says it.
    return {
        "fixed_line": _("a landline"),
        "mobile": _("a mobile"),
        "fixed_line_or_mobile": _("a landline or mobile"),
        "toll_free": _("a toll-free"),
        "premium_rate": _("a premium-rate"),
        "shared_cost": _("a shared-cost"),
        "voip": _("an internet (VoIP)"),
        "personal_number": _("a personal-forwarding"),
        "pager": _("a pager"),
        "uan": _("a company (UAN)"),
        "voicemail": _("a voicemail"),
        "unknown": _("an unrecognised"),
    }


@lru_cache(maxsize=512)
def country_name(region: str, language: str = DEFAULT_LANGUAGE) -> str:
    """Name of an ISO region code, as people say it ("South Korea", not "Korea,
    Republic of"). In English from pycountry: phonenumbers' own geocoder would do, but
    it holds every carrier and place name in memory (about 100 MB); in the other
    languages from Babel's (CLDR's) names ("Corea del Sur")."""
    if language != DEFAULT_LANGUAGE:
        name: str | None = Locale.parse(language).territories.get(region)
        if name:
            return name
    country = pycountry.countries.get(alpha_2=region)
    if country is None:
        return _NOT_IN_ISO_3166.get(region, region)
    return getattr(country, "common_name", None) or country.name


def _countries_phrase(regions: Sequence[str], language: str) -> str:
    names = [country_name(region, language) for region in regions]
    if language != DEFAULT_LANGUAGE:
        return format_list(names, style="or", locale=language)
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _wait(seconds: int, language: str) -> str:
    """ "Try again in 3 minutes": the real wait, rounded up, in seconds under a minute,
    minutes up to 55, hours beyond."""
    catalog = translations(language)
    if seconds < 60:
        count = seconds
        text = catalog.ngettext("Try again in %(count)d second.", "Try again in %(count)d seconds.", count)
    elif seconds <= 55 * 60:
        count = -(-seconds // 60)
        text = catalog.ngettext("Try again in %(count)d minute.", "Try again in %(count)d minutes.", count)
    else:
        count = -(-seconds // 3600)
        text = catalog.ngettext("Try again in %(count)d hour.", "Try again in %(count)d hours.", count)
    return text % {"count": count}


Words = Callable[[Mapping[str, Any], Gettext, str], str]

# Code -> the words, made from the problem's parameters in a language.
_WORDS: dict[str, Words] = {
    "phone.missing": lambda p, _, lang: _("Enter your mobile number."),
    "phone.too_long": lambda p, _, lang: _("That is too long to be a phone number."),
    "phone.not_a_number": lambda p, _, lang: _("That doesn't look like a phone number. Check it and try again."),
    "phone.invalid_in_country": lambda p, _, lang: (
        _("That isn't a valid %(country)s phone number. Check the digits and try again.")
        % {"country": country_name(p["region"], lang)}
    ),
    "phone.type_not_allowed": lambda p, _, lang: (
        _("That looks like %(kind)s number, which can't receive these texts. Please use a mobile number.")
        % {"kind": _type_words(_).get(p["number_type"], _("an unrecognised"))}
    ),
    "phone.country_not_served": lambda p, _, lang: (
        _("Sorry, this program only texts numbers in %(countries)s.")
        % {"countries": _countries_phrase(p["regions"], lang)}
    ),
    "token.expired": lambda p, _, lang: _(
        "This page was open for a long time. Please check your number and press the button again."
    ),
    "token.used": lambda p, _, lang: _(
        "This form was sent already. To sign up the number below, please press the button again."
    ),
    "token.used_stop": lambda p, _, lang: _(
        "This form was sent already. To stop texts to the number below, please press the button again."
    ),
    "captcha.failed": lambda p, _, lang: _("Please complete the check below the number, then press the button again."),
    "limit.ip": lambda p, _, lang: (
        _("We've had a lot of signups from this connection just now.") + " " + _wait(p["seconds"], lang)
    ),
    "limit.number": lambda p, _, lang: (
        _("This number was signed up several times just now.") + " " + _wait(p["seconds"], lang)
    ),
    "limit.prefix": lambda p, _, lang: (
        _("We've had a lot of signups for numbers like this one just now.") + " " + _wait(p["seconds"], lang)
    ),
    "limit.campaign": lambda p, _, lang: (
        _("This signup has taken all the signups it can for now.") + " " + _wait(p["seconds"], lang)
    ),
    "page.changed": lambda p, _, lang: _(
        "This page was updated while it was open. Please read it again, then press the button to sign up."
    ),
    "fill.too_fast": lambda p, _, lang: _("Please check your number below and press the button once more to confirm."),
    # ProTexting's refusals of the number, in our words (its own stay in the record).
    "protexting.opted_out": lambda p, _, lang: (
        _(
            "This number opted out of texts from %(program)s, so it can't be signed up here. "
            "To join again, text %(keyword)s to %(number)s."
        )
        % p
        if "number" in p
        else _(
            "This number opted out of texts from %(program)s, so it can't be signed up here. "
            "To join again, text START to the number our texts came from."
        )
        % p
    ),
    "protexting.blocked": lambda p, _, lang: (
        _("This number can't get texts from %(program)s. Please use another mobile number.") % p
    ),
    "protexting.number_refused": lambda p, _, lang: _(
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


def say(problem: Problem, *, api: bool = False, language: str = DEFAULT_LANGUAGE) -> str:
    """The words for `problem` in `language`; in English for the JSON API's reader when `api`."""
    if api:
        words = _API_WORDS.get(problem.code)
        if words is not None:
            return words(problem.params)
        language = DEFAULT_LANGUAGE
    return _WORDS[problem.code](problem.params, translations(language).gettext, language)
