"""Service settings, read from the environment and an optional `.env` file.

Every setting has exactly one environment name (the `validation_alias`). A bad value
raises `SettingsError` whose message names that environment variable, so start-up
stops with something an operator can act on.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

logger = logging.getLogger(__name__)

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")


_LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


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

    protexting_access_token: SecretStr | None = Field(default=None, validation_alias="PROTEXTING_ACCESS_TOKEN")
    protexting_api_url: str = Field(default="https://api2.protexting.com/v1", validation_alias="PROTEXTING_API_URL")
    campaigns_path: Path = Field(default=Path("campaigns.toml"), validation_alias="OPTIN_CAMPAIGNS")
    # How often the campaigns file is looked at for changes (app.reload); 0: only on SIGHUP.
    reload_seconds: float = Field(default=2.0, ge=0, le=5, validation_alias="OPTIN_RELOAD_SECONDS")
    public_url: str = Field(default="http://127.0.0.1:8000", validation_alias="OPTIN_PUBLIC_URL")
    secret_key: SecretStr | None = Field(default=None, validation_alias="OPTIN_SECRET_KEY")
    # GET /metrics exists only when this is set, and answers only `Authorization: Bearer <it>`.
    metrics_token: SecretStr | None = Field(default=None, min_length=16, validation_alias="OPTIN_METRICS_TOKEN")
    # /admin (the operator's console, app.admin) exists only when this is set: the
    # argon2id hash of its password, made by `optin hash-password`.
    admin_password_hash: SecretStr | None = Field(default=None, validation_alias="OPTIN_ADMIN_PASSWORD_HASH")

    # Durable delivery (see README, "Never lose a signup").
    database_url: str = Field(default="sqlite+aiosqlite:///var/optin.db", validation_alias="OPTIN_DATABASE_URL")
    redis_url: str | None = Field(default=None, validation_alias="OPTIN_REDIS_URL")
    redis_prefix: str = Field(default="optin-pages", min_length=1, validation_alias="OPTIN_REDIS_PREFIX")
    database_timeout_seconds: float = Field(default=3.0, gt=0, le=60, validation_alias="OPTIN_DATABASE_TIMEOUT_SECONDS")
    redis_timeout_seconds: float = Field(default=0.5, gt=0, le=30, validation_alias="OPTIN_REDIS_TIMEOUT_SECONDS")
    rate_limit: str = Field(default="60/minute", validation_alias="PROTEXTING_RATE_LIMIT")
    trusted_proxies: Annotated[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode] = Field(
        default=(), validation_alias="OPTIN_TRUSTED_PROXIES"
    )
    duplicate_window_seconds: float = Field(default=600, ge=0, validation_alias="OPTIN_DUPLICATE_WINDOW_SECONDS")
    inline_deadline_seconds: float = Field(default=3.0, gt=0, le=30, validation_alias="OPTIN_INLINE_DEADLINE_SECONDS")
    delivery_max_attempts: int = Field(default=12, ge=1, validation_alias="OPTIN_DELIVERY_MAX_ATTEMPTS")
    delivery_max_age_seconds: float = Field(default=86400, gt=0, validation_alias="OPTIN_DELIVERY_MAX_AGE_SECONDS")
    retry_base_seconds: float = Field(default=5, gt=0, validation_alias="OPTIN_RETRY_BASE_SECONDS")
    retry_max_seconds: float = Field(default=1800, gt=0, validation_alias="OPTIN_RETRY_MAX_SECONDS")
    upstream_deadline_seconds: float = Field(
        default=10, gt=0, le=60, validation_alias="OPTIN_UPSTREAM_DEADLINE_SECONDS"
    )
    lease_seconds: float = Field(default=120, ge=1, validation_alias="OPTIN_LEASE_SECONDS")
    run_worker: bool = Field(default=True, validation_alias="OPTIN_RUN_WORKER")
    worker_concurrency: int = Field(default=4, ge=1, le=64, validation_alias="OPTIN_WORKER_CONCURRENCY")

    # Abuse protection (see README, "Holding the door").
    min_fill_seconds: float = Field(default=2.0, ge=0, le=60, validation_alias="OPTIN_MIN_FILL_SECONDS")
    limit_per_ip: str = Field(default="30/minute;300/hour", validation_alias="OPTIN_LIMIT_PER_IP")
    limit_per_number: str = Field(default="3/hour;10/day", validation_alias="OPTIN_LIMIT_PER_NUMBER")
    limit_per_prefix: str = Field(default="10/hour;50/day", validation_alias="OPTIN_LIMIT_PER_PREFIX")
    limit_per_campaign: str = Field(default="20000/day", validation_alias="OPTIN_LIMIT_PER_CAMPAIGN")
    max_body_bytes: int = Field(default=16384, ge=1024, le=1048576, validation_alias="OPTIN_MAX_BODY_BYTES")

    # Serving (see README, "Serving"): read by `optin serve`.
    host: str = Field(default="127.0.0.1", min_length=1, validation_alias="OPTIN_HOST")
    port: int = Field(default=8000, ge=0, le=65535, validation_alias="OPTIN_PORT")
    workers: int = Field(default=1, ge=1, le=64, validation_alias="OPTIN_WORKERS")
    log_level: str = Field(default="INFO", validation_alias="OPTIN_LOG_LEVEL")
    # text for a person at a terminal; json, one object a line, for a log collector
    # (app.logs). Read by the app's lifespan, `optin serve` (uvicorn's lines) and `optin worker`.
    log_format: str = Field(default="text", validation_alias="OPTIN_LOG_FORMAT")

    @field_validator("protexting_access_token", "secret_key", "metrics_token", "admin_password_hash", mode="before")
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

    @field_validator("admin_password_hash")
    @classmethod
    def _argon2id(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        from argon2 import Type, extract_parameters
        from argon2.exceptions import InvalidHashError

        try:
            kind = extract_parameters(value.get_secret_value().strip()).type
        except (InvalidHashError, ValueError):
            kind = None
        if kind is not Type.ID:
            # The value is not echoed: it is the next thing to a password.
            raise ValueError("must be an argon2id hash ($argon2id$...); make one with `optin hash-password`")
        return SecretStr(value.get_secret_value().strip())

    @model_validator(mode="after")
    def _public_url_where_served(self) -> Settings:
        # Unset, OPTIN_PUBLIC_URL is where the service listens (`optin serve --port 9000`
        # opens on :9000, and its form must post from there), on loopback when it
        # listens on every address.
        if "public_url" not in self.model_fields_set:
            host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
            host = f"[{host}]" if ":" in host else host
            object.__setattr__(self, "public_url", f"http://{host}:{self.port}")
        return self

    @field_validator("protexting_api_url", "public_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _absolute_http_url(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a database URL") from None
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if urlsplit(value).scheme not in ("redis", "rediss"):
            raise ValueError("must start with redis:// or rediss://")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate such as '60/minute' or '5 per 5 seconds'") from None
        return value

    @field_validator("limit_per_ip", "limit_per_number", "limit_per_prefix", "limit_per_campaign")
    @classmethod
    def _limits(cls, value: str) -> str:
        from limits import parse_many

        if value.strip():
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(f"{value!r} is not a rate such as '30/minute;300/hour' (empty: no limit)") from None
        return value

    @field_validator("lease_seconds")
    @classmethod
    def _lease_outlives_a_call(cls, value: float, info: ValidationInfo) -> float:
        from .delivery import LEASE_MARGIN_SECONDS

        deadline = info.data.get("upstream_deadline_seconds")
        # A shorter lease lets a second worker send a signup whose call is still open.
        if deadline is not None and value < deadline + LEASE_MARGIN_SECONDS:
            raise ValueError(
                f"must be at least OPTIN_UPSTREAM_DEADLINE_SECONDS ({deadline:g}) + {LEASE_MARGIN_SECONDS:g}, "
                f"got {value:g}: a signup must stay leased while a call to ProTexting for it may be open"
            )
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: object) -> object:
        if isinstance(value, str):
            level = value.strip().upper()
            if level not in _LOG_LEVELS:
                raise ValueError(f"{value!r} is not one of {', '.join(_LOG_LEVELS)}")
            return level
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: object) -> object:
        if isinstance(value, str):
            log_format = value.strip().lower()
            if log_format not in _LOG_FORMATS:
                raise ValueError(f"{value!r} is not one of {', '.join(_LOG_FORMATS)}")
            return log_format
        return value

    @field_validator("secret_key")
    @classmethod
    def _key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @property
    def own_origins(self) -> tuple[str, ...]:
        """The origins our own pages are served from: OPTIN_PUBLIC_URL's, and when that
        is a loopback address, the other names of loopback on the same port (the demo is
        opened as localhost as often as 127.0.0.1; only a page served by this machine on
        that port can state such an origin, so a rebinding page still cannot)."""
        parts = urlsplit(self.public_url)
        own = f"{parts.scheme}://{parts.netloc}".lower()
        if parts.hostname not in _LOOPBACK_NAMES:
            return (own,)
        port = f":{parts.port}" if parts.port else ""
        return (own, *(f"{parts.scheme}://{name}{port}" for name in ("127.0.0.1", "localhost", "[::1]")))

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
        # By field name (populate_by_name); the pydantic plugin types only the aliases.
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message}")
        raise SettingsError("invalid setting " + "; ".join(problems)) from None
