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
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from . import branding
from .captcha import PROVIDERS, Provider
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
    button_text: Annotated[str, Field(min_length=1, max_length=40)] = "Sign up for texts"
    back_url: str | None = None

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

    @model_validator(mode="after")
    def _default_country_allowed(self) -> Campaign:
        if not self.countries:
            object.__setattr__(self, "countries", (self.default_country,))
        elif self.default_country not in self.countries:
            raise ValueError(
                f"default_country {self.default_country!r} must be one of countries {list(self.countries)}"
            )
        return self

    @property
    def path(self) -> str:
        return f"/{self.keyword}"


def _describe(error: Mapping[str, Any]) -> str:
    loc = [str(part) for part in error["loc"]]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if not loc:
        return message
    # group_ids.1 -> "group_ids[1]"
    key = loc[0] + "".join(f"[{part}]" for part in loc[1:])
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
        try:
            campaign = Campaign(keyword=keyword, **table)
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


def load_campaigns(path: Path, *, reserved: Collection[str] = ()) -> dict[str, Campaign]:
    """Read and validate the campaigns file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CampaignsError(f"{path}: campaigns file not found (set OPTIN_CAMPAIGNS)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CampaignsError(f"{path}: cannot read campaigns file: {exc}") from None
    return parse_campaigns(text, source=str(path), reserved=reserved, base=path.parent)
