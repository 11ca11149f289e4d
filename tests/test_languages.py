"""Languages: a campaign in English and Spanish, as a Spanish-reading visitor meets it.

The page in the language asked for (`?lang=`), else the browser's (Accept-Language),
else the campaign's default; the consent recorded in the language shown, with that
language's disclosure and texts sent to ProTexting; the catalogs complete and compiled.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from jinja2 import Environment

from app.campaigns import CampaignsError, parse_campaigns
from app.i18n import LANGUAGES, negotiate
from app.problems import Problem
from app.web.messages import say
from tests.support.campaigns import CAMPAIGNS_TOML, ROOT
from tests.support.page import Page
from tests.support.visitor import form_action, form_fields

from .conftest import FakeUpstream, MakeClient

SPANISH = """
[campaigns.JOIN.es]
title = "Reciba nuestras ofertas por mensaje de texto"
description = "Ofertas semanales, directo a su teléfono."
message_frequency = "Hasta 4 mensajes al mes"
button_text = "Quiero las ofertas"
cta_message = "Test Bakery: responda YES para recibir ofertas."
confirm_message = "Test Bakery: ¡ya está inscrito! Responda AYUDA para ayuda, ALTO para cancelar."
privacy_url = "https://example.com/es/privacidad"
"""
BILINGUAL = CAMPAIGNS_TOML.replace("\n[campaigns.Alerts]", SPANISH + "\n[campaigns.Alerts]")
PHONE = "(201) 555-0123"


@pytest.fixture
def bilingual(tmp_path: Path) -> Path:
    path = tmp_path / "bilingual.toml"
    path.write_text(BILINGUAL, encoding="utf-8")
    return path


def _lang(html: str) -> str:
    return Page(html).find("html").attrs["lang"]


# --- which language ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("es-MX,es;q=0.9,en;q=0.8", "es"),
        ("en-US,en;q=0.9,es;q=0.8", "en"),
        ("fr-CA, fr;q=0.9, es;q=0.5", "es"),
        ("fr, de", None),
        ("es;q=0, en;q=0.1", "en"),
        ("*", "en"),
        ("es;q=0, *;q=0.5", "en"),
        ("EN-gb", "en"),
        ("en;q=0.2, es;q=0.8", "es"),
        ("garbage;;, ,es", "es"),
        ("", None),
    ],
)
def test_accept_language_is_read_by_weight_and_primary_language(header: str, expected: str | None) -> None:
    assert negotiate(header, ("en", "es")) == expected


def test_the_negotiation_cache_is_bounded_whatever_headers_a_client_sends() -> None:
    for n in range(2000):
        negotiate(f"x{n}, es", ("en", "es"))
    info = negotiate.cache_info()
    assert info.maxsize is not None and info.currsize <= info.maxsize


def test_a_campaign_in_one_language_answers_the_same_bytes_whatever_the_browser_prefers(
    make_client: MakeClient,
) -> None:
    client = make_client()

    plain = client.get("/join")
    spanish = client.get("/join", headers={"accept-language": "es"})

    assert _lang(plain.text) == _lang(spanish.text) == "en"
    assert "vary" not in plain.headers and "hreflang" not in plain.text
    assert Page(spanish.text).find("h1").text == "Get our deals by text"


def test_a_spanish_browser_gets_the_spanish_page_and_the_answer_varies_by_language(
    make_client: MakeClient, bilingual: Path
) -> None:
    client = make_client(campaigns=bilingual)

    page = client.get("/join", headers={"accept-language": "es-US,es;q=0.9,en;q=0.8"})

    assert page.status_code == 200
    assert page.headers["vary"] == "Accept-Language"
    assert page.headers["content-language"] == "es"
    html = Page(page.text)
    assert _lang(page.text) == "es"
    assert html.find("h1").text == "Reciba nuestras ofertas por mensaje de texto"
    assert html.find("label", for_="phone").text == "Número de celular"
    assert html.find("button").text == "Quiero las ofertas"
    disclosure = " ".join(html.find("p", **{"class": "disclosure"}).text.split())
    assert "Hasta 4 mensajes al mes." in disclosure
    assert "Pueden aplicarse tarifas de mensajes y datos." in disclosure
    assert "Responda ALTO para cancelar, AYUDA para ayuda." in disclosure
    links = {a.text.strip(): a.attrs["href"] for a in html.find_all("a")}
    # Its own privacy link; the terms link the top-level one.
    assert links["Política de privacidad"] == "https://example.com/es/privacidad"
    assert links["Términos"] == "https://example.com/sms-terms"
    # A plain link back to English, and hreflang alternates for each language.
    assert links["English"] == "/JOIN?lang=en"
    alternates = {e.attrs["hreflang"]: e.attrs["href"] for e in html.find_all("link") if e.attrs.get("hreflang")}
    assert alternates == {
        "en": "http://127.0.0.1:8000/JOIN?lang=en",
        "es": "http://127.0.0.1:8000/JOIN?lang=es",
        "x-default": "http://127.0.0.1:8000/JOIN",
    }


def test_no_preference_gets_the_default_language_and_lang_overrides_the_browser(
    make_client: MakeClient, bilingual: Path
) -> None:
    client = make_client(campaigns=bilingual)

    assert _lang(client.get("/join").text) == "en"
    assert _lang(client.get("/join", headers={"accept-language": "fr"}).text) == "en"
    assert _lang(client.get("/join?lang=es").text) == "es"
    assert _lang(client.get("/join?lang=en", headers={"accept-language": "es"}).text) == "en"
    # A language the campaign does not offer is no choice: the browser's decides.
    assert _lang(client.get("/join?lang=fr", headers={"accept-language": "es"}).text) == "es"
    # The source parameters still ride along to the form's action.
    assert form_action(client.get("/join?lang=es&src=poster").text) == "/JOIN?src=poster"
    assert _lang(client.get("/embed/join?lang=es").text) == "es"


# --- consent in the language shown -----------------------------------------------------


def _thanks_language(location: str) -> str:
    """The language a redirect to the thanks page asks for."""
    parts = urlsplit(location)
    assert parts.path == "/JOIN/thanks"
    (language,) = parse_qs(parts.query)["lang"]
    return language


def _export(client: Any) -> list[dict[str, Any]]:
    async def rows() -> list[dict[str, Any]]:
        return [row async for row in client.app.state.resources.delivery.outbox.export()]

    result: list[dict[str, Any]] = client.portal.call(rows)
    return result


def test_a_signup_from_the_spanish_page_is_recorded_and_sent_in_spanish(
    make_client: MakeClient, bilingual: Path, upstream: FakeUpstream
) -> None:
    client = make_client(campaigns=bilingual)
    html = client.get("/join?lang=es").text
    disclosure = client.app.state.site.listing("JOIN", "es").disclosure

    # Sent without the browser's header: the form itself says the page's language.
    sent = client.post(form_action(html), data=form_fields(html, PHONE))

    assert sent.status_code == 303
    assert _thanks_language(sent.headers["location"]) == "es"
    assert upstream.bodies[0]["CTAMessage"] == "Test Bakery: responda YES para recibir ofertas."
    assert upstream.bodies[0]["ConfirmMessage"].startswith("Test Bakery: ¡ya está inscrito!")
    (row,) = _export(client)
    assert row["language"] == "es"
    assert row["disclosure_sha256"] == disclosure.sha256
    assert "Responda <strong>ALTO</strong> para cancelar" in row["disclosure_text"]
    assert disclosure.text in html

    thanks = client.get(sent.headers["location"])
    assert _lang(thanks.text) == "es"
    assert thanks.headers["content-language"] == "es"


def test_the_opt_out_page_speaks_the_signup_pages_language_and_records_it(
    make_client: MakeClient, bilingual: Path
) -> None:
    client = make_client(campaigns=bilingual)
    # The Spanish page links to the Spanish opt-out page.
    signup = Page(client.get("/join?lang=es").text)
    link = next(a.attrs["href"] for a in signup.find_all("a") if "/stop" in a.attrs.get("href", ""))
    assert link == "/JOIN/stop?lang=es"

    page = client.get(link)
    assert _lang(page.text) == "es"
    assert "Dejar de recibir mensajes de texto" in page.text
    notice = Page(page.text).find("p", id="notice").text
    assert "Esto detiene todos los mensajes de texto de Test Bakery Deals y Test Bakery Alerts" in notice
    # A Spanish browser gets it in Spanish without asking; an English one in English.
    assert _lang(client.get("/JOIN/stop", headers={"Accept-Language": "es-MX,es"}).text) == "es"
    assert _lang(client.get("/JOIN/stop", headers={"Accept-Language": "en-US"}).text) == "en"

    # A number that will not do is told so in Spanish, beside the field.
    refused = client.post(form_action(page.text), data=form_fields(page.text, "12"))
    assert refused.status_code == 422 and _lang(refused.text) == "es"
    assert Page(refused.text).find("title").text.startswith("Error:")
    assert "autofocus" in Page(refused.text).phone_input().attrs

    sent = client.post(form_action(page.text), data=form_fields(page.text, PHONE))
    assert (sent.status_code, sent.headers["location"]) == (303, "/JOIN/stop/done?lang=es")
    done = client.get(sent.headers["location"]).text
    assert _lang(done) == "es" and "Se ha dado de baja" in done
    (row,) = _export(client)
    assert (row["kind"], row["language"]) == ("opt_out", "es")
    assert "Esto detiene" in row["disclosure_text"]


def test_the_english_page_of_the_same_campaign_records_english(
    make_client: MakeClient, bilingual: Path, upstream: FakeUpstream
) -> None:
    client = make_client(campaigns=bilingual)
    html = client.get("/join").text

    sent = client.post(form_action(html), data=form_fields(html, PHONE), headers={"accept-language": "es"})

    assert _thanks_language(sent.headers["location"]) == "en"
    assert upstream.bodies[0]["ConfirmMessage"] == "Test Bakery: you're in! Reply HELP for help, STOP to cancel."
    (row,) = _export(client)
    assert row["language"] == "en" and "Reply <strong>HELP</strong>" in row["disclosure_text"]


def test_a_refused_number_on_the_spanish_page_is_told_in_spanish_beside_the_field(
    make_client: MakeClient, bilingual: Path
) -> None:
    client = make_client(campaigns=bilingual)
    html = client.get("/join?lang=es").text

    again = client.post(form_action(html), data=form_fields(html, "555"))

    assert again.status_code == 422
    page = Page(again.text)
    assert _lang(again.text) == "es"
    assert page.find("title").text.startswith("Error: ")
    assert page.find("p", id="phone-error").text == (
        "Ese no es un número de teléfono válido de Estados Unidos. Revise los dígitos e inténtelo de nuevo."
    )
    assert "autofocus" in page.phone_input().attrs
    # Still the Spanish page: the next try is recorded in Spanish too.
    assert form_fields(again.text)["lang"] == "es"


def test_error_pages_speak_the_browsers_language(make_client: MakeClient) -> None:
    client = make_client()

    missing = client.get("/no-such-campaign", headers={"accept-language": "es-MX"})

    assert missing.status_code == 404
    assert _lang(missing.text) == "es"
    assert Page(missing.text).find("h1").text == "Página no encontrada"
    assert Page(client.get("/no-such-campaign").text).find("h1").text == "Page not found"


def test_number_words_name_countries_in_the_visitors_language() -> None:
    served = Problem("phone", "phone.country_not_served", {"regions": ("US", "CA", "MX")})
    landline = Problem("phone", "phone.type_not_allowed", {"number_type": "fixed_line"})

    assert say(served, language="es") == (
        "Lo sentimos, este programa solo envía mensajes a números de Estados Unidos, Canadá o México."
    )
    assert say(landline, language="es").startswith("Parece un número de teléfono fijo, que no puede recibir")
    # The JSON API's reader is a developer: English whatever the language.
    assert say(served, api=True, language="es").startswith("Sorry, this program")


# --- campaign texts per language ---------------------------------------------------------


def _refusal(text: str) -> str:
    with pytest.raises(CampaignsError) as raised:
        parse_campaigns(text, source="shop.toml")
    return str(raised.value)


@pytest.mark.parametrize(
    ("confirm", "missing"),
    [
        ("Test Bakery: ¡ya está inscrito! Responda AYUDA para ayuda.", "ALTO or STOP"),
        ("Test Bakery: ¡ya está inscrito! Responda ALTO para cancelar.", "AYUDA or HELP"),
        ("Test Bakery: responda alto o ayuda.", "ALTO or STOP"),
    ],
)
def test_a_spanish_confirm_message_without_its_stop_and_help_words_is_refused(confirm: str, missing: str) -> None:
    text = BILINGUAL.replace(
        'confirm_message = "Test Bakery: ¡ya está inscrito! Responda AYUDA para ayuda, ALTO para cancelar."',
        f'confirm_message = "{confirm}"',
    )

    message = _refusal(text)

    assert message.startswith("shop.toml: campaign 'JOIN': key 'es.confirm_message'")
    assert missing in message


def test_stop_and_help_in_english_words_do_for_spanish_too() -> None:
    text = BILINGUAL.replace("Responda AYUDA para ayuda, ALTO para cancelar.", "Reply HELP or STOP.")
    assert parse_campaigns(text, source="shop.toml")["join"].texts["es"].confirm_message


def test_an_english_confirm_message_without_help_is_refused() -> None:
    text = CAMPAIGNS_TOML.replace("Reply HELP for help, STOP to cancel.", "Reply STOP to cancel.")
    message = _refusal(text)
    assert message.startswith("shop.toml: campaign 'JOIN': key 'confirm_message'") and "HELP" in message


def test_a_language_without_a_catalog_is_refused_naming_the_table() -> None:
    message = _refusal(BILINGUAL.replace("[campaigns.JOIN.es]", "[campaigns.JOIN.fr]"))
    assert message.startswith("shop.toml: campaign 'JOIN': table [fr]") and "'es'" in message


def test_a_translation_that_leaves_out_the_texts_sent_is_refused() -> None:
    text = BILINGUAL.replace('cta_message = "Test Bakery: responda YES para recibir ofertas."\n', "")
    assert "key 'es.cta_message'" in _refusal(text)


def test_a_translation_with_an_unknown_key_or_no_title_is_refused() -> None:
    assert "key 'es.colour': unknown key" in _refusal(
        BILINGUAL.replace("[campaigns.JOIN.es]\n", '[campaigns.JOIN.es]\ncolour = "red"\n')
    )
    assert "key 'es.title'" in _refusal(
        BILINGUAL.replace('title = "Reciba nuestras ofertas por mensaje de texto"\n', "")
    )


def test_a_campaign_in_spanish_first_offers_english_second() -> None:
    text = """
[campaigns.OFERTAS]
default_language = "es"
title = "Ofertas"
group_ids = [1]
program_name = "Panadería"
message_frequency = "Frecuencia de mensajes varía"
terms_url = "https://example.com/t"
privacy_url = "https://example.com/p"
confirm_message = "Responda ALTO para cancelar, AYUDA para ayuda."

[campaigns.OFERTAS.en]
title = "Deals"
message_frequency = "Msg frequency varies"
confirm_message = "Reply STOP to cancel, HELP for help."
"""
    campaign = parse_campaigns(text, source="x")["ofertas"]
    assert campaign.languages == ("es", "en")
    assert campaign.in_language("en").title == "Deals"
    assert campaign.in_language("es").title == "Ofertas"


def test_the_demo_campaigns_speak_spanish() -> None:
    campaigns = parse_campaigns((ROOT / "campaigns.toml").read_text(encoding="utf-8"), source="campaigns.toml")
    assert all(campaign.languages == ("en", "es") for campaign in campaigns.values())


# --- the catalogs ------------------------------------------------------------------------


def _entries(catalog: Any) -> dict[tuple[str, ...], tuple[str, ...]]:
    """A catalog's translated messages, singular and plural alike as tuples."""

    def tupled(value: Any) -> tuple[str, ...]:
        return (value,) if isinstance(value, str) else tuple(value)

    return {tupled(m.id): tupled(m.string) for m in catalog if m.id and any(tupled(m.string))}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogs_are_the_catalogs(language: str) -> None:
    """The .mo the package ships says what its .po says (make messages compiles it)."""
    folder = ROOT / "app" / "locale" / language / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as po, (folder / "messages.mo").open("rb") as mo:
        source, compiled = _entries(read_po(po)), _entries(read_mo(mo))
    # (pybabel compile writes an untranslated plural as its msgids: English's own words)
    assert {key: compiled.get(key) for key in source} == source


def test_every_string_has_its_spanish_and_keeps_its_placeholders_and_tags() -> None:
    with (ROOT / "app" / "locale" / "es" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po)
    every = [m for m in catalog if m.id]
    translated = _entries(catalog)
    assert [
        m.id for m in every if (m.id if isinstance(m.id, str) else m.id[0],) not in {k[:1] for k in translated}
    ] == []
    for ids, strings in translated.items():
        for string in strings:
            assert sorted(re.findall(r"%\(\w+\)[sd]", ids[-1])) == sorted(re.findall(r"%\(\w+\)[sd]", string))
            assert re.findall(r"</?(\w+)", ids[-1]) == re.findall(r"</?(\w+)", string)


# The disclosure template before languages: an English page must show the very same
# text, so the consent records made before an upgrade keep pointing at their hash.
_BEFORE = """<p class="disclosure" id="disclosure">By submitting this form, you agree to receive recurring automated marketing text messages from {{ campaign.program_name }} at the number provided. {{ campaign.message_frequency }}. Msg &amp; data rates may apply. Reply <strong>HELP</strong> for help and <strong>STOP</strong> to cancel. Consent is not a condition of purchase. <a href="{{ campaign.terms_url }}" target="_blank" rel="noopener">Terms</a> and <a href="{{ campaign.privacy_url }}" target="_blank" rel="noopener">Privacy Policy</a>.</p>
"""


def test_the_english_disclosure_is_the_same_text_as_before_languages(make_client: MakeClient, bilingual: Path) -> None:
    listing = make_client(campaigns=bilingual).app.state.site.listing("JOIN")
    before = Environment(autoescape=True).from_string(_BEFORE).render(campaign=listing.campaign)
    assert listing.language == "en" and listing.disclosure.text == before
