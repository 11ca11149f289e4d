"""Campaigns: what each keyword's page says and which ProTexting groups it subscribes to.

Campaigns live in a TOML file, one table per keyword:

    [campaigns.JOIN]
    title = "..."
    group_ids = [1]
    ...

The file is validated as a whole at start-up; any problem raises `CampaignsError`
naming the file, the campaign and the key, so a typo never reaches a visitor.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from . import branding
from .captcha import PROVIDERS, Provider
from .i18n import DEFAULT_LANGUAGE, HELP_WORDS, LANGUAGES, STOP_WORDS, has_words
from .phone import DEFAULT_NUMBER_TYPES, NUMBER_TYPES

# A keyword becomes a URL path segment and an SMS keyword: letters, digits, - and _.
KEYWORD_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_KEYWORD = re.compile(f"^{KEYWORD_PATTERN}$")


class CampaignsError(Exception):
    """The campaigns file is missing, unreadable or invalid."""


class CampaignNotFound(Exception):
    """No campaign has this keyword."""


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    return value


def _region(value: str) -> str:
    code = value.upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"{value!r} is not an ISO 3166 country code that phone numbers use")
    return code


def _origin(value: str) -> str:
    if value == "*":
        return value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"must be an origin such as 'https://shop.example', got {value!r}")
    return f"{parts.scheme}://{parts.netloc}".lower()


NonBlank = Annotated[str, Field(min_length=1, max_length=2000)]

# A short code is 5 or 6 digits in the US and Canada (the CTIA's and the CWTA's).
_SHORT_CODE = re.compile(r"^[0-9]{5,6}$")


def _sms_number(value: str, default_country: str) -> str:
    """A short code as its digits; a phone number as E.164 ("+12015550123"), read in
    `default_country` when typed without a country code."""
    if _SHORT_CODE.match(value):
        return value
    hint = f"must be a short code of 5 or 6 digits or a phone number such as '+1 201 555 0123', got {value!r}"
    try:
        number = phonenumbers.parse(value, default_country)
    except phonenumbers.NumberParseException:
        raise ValueError(hint) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(hint)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class TextTo:
    """Signing up by text instead of the form: send `keyword` to `number` (a short
    code's digits, or E.164), printed as `shown`."""

    keyword: str
    number: str
    shown: str

    @property
    def uri(self) -> str:
        """The `sms:` link that opens the phone's messages with the keyword typed in
        (RFC 5724: the number, then the body percent-encoded)."""
        return f"sms:{self.number}?body={quote(self.keyword, safe='')}"


class Captcha(BaseModel):
    """`[campaigns.KEYWORD.captcha]`: the secret stays in the environment, named here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str
    site_key: NonBlank
    secret_env: NonBlank
    secret: SecretStr = SecretStr("")

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        if value not in PROVIDERS:
            raise ValueError(f"must be one of {sorted(PROVIDERS)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _secret_from_environment(self) -> Captcha:
        secret = os.environ.get(self.secret_env, "")
        if not secret.strip():
            raise ValueError(f"secret_env: environment variable {self.secret_env} is not set")
        object.__setattr__(self, "secret", SecretStr(secret.strip()))
        return self

    @property
    def kind(self) -> Provider:
        return PROVIDERS[self.provider]


GroupId = Annotated[int, Field(strict=True, gt=0)]
ButtonText = Annotated[str, Field(min_length=1, max_length=40)]


def _confirm_words(message: str | None, language: str) -> str | None:
    """A confirm_message carriers accept: it names the stop and help words of its language."""
    if message is None:
        return None
    for kind, words in (("stop", STOP_WORDS[language]), ("help", HELP_WORDS[language])):
        if not has_words(message, words):
            raise ValueError(f"must tell how to {kind}: write {' or '.join(words)} in it (in capitals)")
    return message


class CampaignText(BaseModel):
    """`[campaigns.KEYWORD.LANG]`: the campaign's words in another language. What it
    leaves out is the top-level key's (a link may be the same for every language)."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    language: str
    title: NonBlank
    description: str = ""
    message_frequency: NonBlank
    cta_message: str | None = None
    confirm_message: str | None = None
    button_text: ButtonText | None = None
    terms_url: Annotated[str, AfterValidator(_http_url)] | None = None
    privacy_url: Annotated[str, AfterValidator(_http_url)] | None = None

    @field_validator("confirm_message")
    @classmethod
    def _confirm(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _confirm_words(value, info.data.get("language", DEFAULT_LANGUAGE))


class Campaign(BaseModel):
    """One keyword campaign, exactly as the campaigns file describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    keyword: str
    title: NonBlank
    group_ids: Annotated[tuple[GroupId, ...], Field(min_length=1)]
    program_name: NonBlank
    message_frequency: NonBlank
    terms_url: str
    privacy_url: str
    description: str = ""
    cta_message: str | None = None
    confirm_message: str | None = None
    send_cta_message: Annotated[bool, Field(strict=True)] = False
    default_country: str = "US"
    countries: tuple[str, ...] = ()
    number_types: tuple[str, ...] = DEFAULT_NUMBER_TYPES
    captcha: Captcha | None = None
    # Who may show the page in an iframe (CSP frame-ancestors); "*" is anyone.
    frame_ancestors: tuple[str, ...] = ("*",)
    # Origins whose scripts may call the JSON API from a browser (CORS); none by default.
    api_origins: tuple[str, ...] = ()
    # The look (app.branding): a logo file (relative to the campaigns file), the
    # button's colour, light or dark (or the visitor's choice), the button's words, and
    # where the thanks page links back to.
    logo: str | None = None
    accent_color: str | None = None
    theme: Literal["auto", "light", "dark"] = "auto"
    # None: the catalog's words for the page's language ("Sign up for texts").
    button_text: ButtonText | None = None
    back_url: str | None = None
    # Signing up by text: the short code or number the keyword is texted to, and the
    # keyword (the campaign's own by default). Declared after default_country, which
    # a number without a country code is read in.
    sms_number: str | None = None
    sms_keyword: str | None = None
    # The language of the keys above; each [campaigns.KEYWORD.LANG] table offers another.
    default_language: str = DEFAULT_LANGUAGE
    texts: Mapping[str, CampaignText] = Field(default_factory=dict)

    @field_validator("default_language")
    @classmethod
    def _default_language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {list(LANGUAGES)}, got {value!r}")
        return value

    @field_validator("number_types")
    @classmethod
    def _number_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in NUMBER_TYPES]
        if unknown or not value:
            raise ValueError(f"must be a non-empty list of {sorted(NUMBER_TYPES)}; unknown {unknown}")
        return value

    @field_validator("frame_ancestors", "api_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_origin(v) for v in value)

    @field_validator("terms_url", "privacy_url", "back_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @field_validator("accent_color")
    @classmethod
    def _accent(cls, value: str | None) -> str | None:
        return None if value is None else branding.accent(value)

    @field_validator("default_country")
    @classmethod
    def _default_country(cls, value: str) -> str:
        return _region(value)

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_region(code) for code in value))

    @field_validator("sms_number", mode="before")
    @classmethod
    def _sms_number_as_text(cls, value: object) -> object:
        # `sms_number = 12345` reads naturally in TOML; a bool is not a number here.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("sms_number")
    @classmethod
    def _sms_number(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # A bad default_country is reported on its own; read the number as US meanwhile.
        return _sms_number(value, info.data.get("default_country", "US"))

    @field_validator("sms_keyword")
    @classmethod
    def _sms_keyword(cls, value: str | None) -> str | None:
        if value is not None and not _KEYWORD.match(value):
            raise ValueError(
                f"must be 1-64 letters, digits, '-' or '_', starting with a letter or digit, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _sms_keyword_needs_a_number(self) -> Campaign:
        if self.sms_keyword is not None and self.sms_number is None:
            raise ValueError("key 'sms_keyword': set sms_number too, the short code or number to text it to")
        return self

    @model_validator(mode="after")
    def _default_country_allowed(self) -> Campaign:
        if not self.countries:
            object.__setattr__(self, "countries", (self.default_country,))
        elif self.default_country not in self.countries:
            raise ValueError(
                f"default_country {self.default_country!r} must be one of countries {list(self.countries)}"
            )
        return self

    @model_validator(mode="after")
    def _texts_in_every_language(self) -> Campaign:
        try:
            _confirm_words(self.confirm_message, self.default_language)
        except ValueError as exc:
            raise ValueError(f"key 'confirm_message': {exc}") from None
        if self.default_language in self.texts:
            raise ValueError(
                f"key {self.default_language!r}: the top-level keys are in {self.default_language!r} already"
            )
        # A visitor reading Spanish gets the texts in Spanish, never the other language's.
        for language, text in self.texts.items():
            for key in ("cta_message", "confirm_message"):
                if getattr(self, key) is not None and getattr(text, key) is None:
                    raise ValueError(f"key '{language}.{key}': set it, the top-level {key} in {language!r}")
        return self

    @property
    def path(self) -> str:
        return f"/{self.keyword}"

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the campaign's page is offered in, its default first."""
        return (self.default_language, *(lang for lang in LANGUAGES if lang in self.texts))

    def in_language(self, language: str) -> Campaign:
        """The campaign as its page in `language` shows it: that language's words in
        place of the top-level ones (itself for its default language)."""
        text = self.texts.get(language)
        if text is None:
            return self
        # Its own links when it has them; its own words always (the button's default
        # words are the catalog's).
        words = text.model_dump(exclude={"language", "terms_url", "privacy_url"})
        words |= text.model_dump(include={"terms_url", "privacy_url"}, exclude_none=True)
        return self.model_copy(update=words)

    @property
    def text_to(self) -> TextTo | None:
        """How to sign up by text, when the campaign has an `sms_number`; else None."""
        if self.sms_number is None:
            return None
        shown = self.sms_number
        if shown.startswith("+"):
            number = phonenumbers.parse(shown)
            home = phonenumbers.region_code_for_number(number) == self.default_country
            style = phonenumbers.PhoneNumberFormat.NATIONAL if home else phonenumbers.PhoneNumberFormat.INTERNATIONAL
            shown = phonenumbers.format_number(number, style)
        return TextTo(keyword=self.sms_keyword or self.keyword, number=self.sms_number, shown=shown)


def _describe(error: Mapping[str, Any], table: str = "") -> str:
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if not loc:
        return message
    # group_ids.1 -> "group_ids[1]"
    key = table + loc[0] + "".join(f"[{part}]" for part in loc[1:])
    return f"key {key!r}: {message}"


def parse_campaigns(
    text: str, *, source: str, reserved: Collection[str] = (), base: Path | None = None
) -> dict[str, Campaign]:
    """Parse a campaigns file's text; the result is keyed by lower-cased keyword. A
    campaign's `logo` is a file relative to `base` (the campaigns file's folder; the
    working directory when None), checked here and given as its absolute path."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CampaignsError(f"{source}: not valid TOML: {exc}") from None

    unknown = set(document) - {"campaigns"}
    if unknown:
        raise CampaignsError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}; put campaigns under [campaigns.KEYWORD]"
        )
    tables = document.get("campaigns")
    if not isinstance(tables, dict) or not tables:
        raise CampaignsError(f"{source}: no campaigns; add at least one [campaigns.KEYWORD] table")

    reserved_lower = {name.lower() for name in reserved}
    campaigns: dict[str, Campaign] = {}
    for keyword, table in tables.items():
        where = f"{source}: campaign {keyword!r}"
        if not isinstance(table, dict):
            raise CampaignsError(f"{where}: must be a table ([campaigns.{keyword}])")
        if not _KEYWORD.match(keyword):
            raise CampaignsError(
                f"{where}: keyword must be 1-64 letters, digits, '-' or '_', starting with a letter or digit"
            )
        if keyword.lower() in reserved_lower:
            raise CampaignsError(f"{where}: keyword collides with the service's own path /{keyword.lower()}")
        if keyword.lower() in campaigns:
            raise CampaignsError(
                f"{where}: keyword repeats {campaigns[keyword.lower()].keyword!r} (keywords ignore case)"
            )
        if "keyword" in table:
            raise CampaignsError(f"{where}: key 'keyword': unknown key (the table name is the keyword)")
        table, texts = _texts(table, where)
        try:
            campaign = Campaign(keyword=keyword, texts=texts, **table)
        except ValidationError as exc:
            raise CampaignsError(f"{where}: " + "; ".join(_describe(e) for e in exc.errors())) from None
        if campaign.logo is not None:
            logo = ((base or Path.cwd()) / campaign.logo).resolve()
            try:
                branding.load_logo(logo)
            except branding.BrandError as exc:
                raise CampaignsError(f"{where}: key 'logo': {exc}") from None
            campaign = campaign.model_copy(update={"logo": str(logo)})
        campaigns[keyword.lower()] = campaign
    return campaigns


# A sub-table named like a language code ([campaigns.JOIN.es]) is the campaign's words in it.
_LANGUAGE_KEY = re.compile(r"^[a-z]{2,3}$")


def _texts(table: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, CampaignText]]:
    """The campaign's own keys, and its [campaigns.KEYWORD.LANG] tables validated."""
    own: dict[str, Any] = {}
    texts: dict[str, CampaignText] = {}
    for key, value in table.items():
        if not (isinstance(value, dict) and _LANGUAGE_KEY.match(key) and key not in Campaign.model_fields):
            own[key] = value
            continue
        if key not in LANGUAGES:
            raise CampaignsError(
                f"{where}: table [{key}]: no catalog for language {key!r}; languages: {list(LANGUAGES)}"
            )
        if "language" in value:
            raise CampaignsError(f"{where}: key '{key}.language': unknown key (the table name is the language)")
        try:
            texts[key] = CampaignText(language=key, **value)
        except ValidationError as exc:
            raise CampaignsError(f"{where}: " + "; ".join(_describe(e, f"{key}.") for e in exc.errors())) from None
    return own, texts


def load_campaigns(path: Path, *, reserved: Collection[str] = ()) -> dict[str, Campaign]:
    """Read and validate the campaigns file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignsError(f"{path}: campaigns file not found (set OPTIN_CAMPAIGNS)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignsError(f"{path}: cannot read campaigns file: {exc}") from None
    return parse_campaigns(text, source=str(path), reserved=reserved, base=path.parent)
