"""Service settings, read from the environment and an optional `.env` file.

Every setting has exactly one environment name (the `validation_alias`). A bad value
raises `SettingsError` whose message names that environment variable, so start-up
stops with something an operator can act on.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)


class SettingsError(Exception):
    """A setting is missing or has a value the service cannot run with."""


def _absolute_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"must not carry a query string or fragment, got {value!r}")
    return value.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    protexting_access_token: SecretStr | None = Field(
        default=None, validation_alias="PROTEXTING_ACCESS_TOKEN"
    )
    protexting_api_url: str = Field(
        default="https://api2.protexting.com/v1", validation_alias="PROTEXTING_API_URL"
    )
    campaigns_path: Path = Field(default=Path("campaigns.toml"), validation_alias="OPTIN_CAMPAIGNS")
    public_url: str = Field(default="http://127.0.0.1:8000", validation_alias="OPTIN_PUBLIC_URL")
    secret_key: SecretStr | None = Field(default=None, validation_alias="OPTIN_SECRET_KEY")

    @field_validator("protexting_access_token", "secret_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `PROTEXTING_ACCESS_TOKEN=` in a .env file means "not set", i.e. sandbox mode.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("protexting_access_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and any(c.isspace() for c in value.get_secret_value()):
            # Never echo the value: it is a secret.
            raise ValueError("must not contain whitespace")
        return value

    @field_validator("protexting_api_url", "public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _absolute_http_url(value)

    @field_validator("secret_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @property
    def sandbox(self) -> bool:
        """No access token: run against the in-process fake ProTexting."""
        return self.protexting_access_token is None

    def signing_key(self) -> str:
        """The configured key; a per-process random one (with a warning) when unset."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return _ephemeral_key()


_EPHEMERAL_KEY: list[str] = []


def _ephemeral_key() -> str:
    if not _EPHEMERAL_KEY:
        logger.warning(
            "OPTIN_SECRET_KEY is not set: using a random key for this process; "
            "signed values will not survive a restart or be shared between replicas"
        )
        _EPHEMERAL_KEY.append(secrets.token_urlsafe(32))
    return _EPHEMERAL_KEY[0]


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment; raise `SettingsError` naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
