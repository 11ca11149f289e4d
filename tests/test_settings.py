"""Settings: each environment name is read, bad values stop start-up with a message
that names the variable, and the access token is never echoed."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.campaigns import CampaignsError
from app.main import create_app
from app.settings import SettingsError, load_settings
from tests.support.campaigns import CAMPAIGNS_TOML

from .conftest import TOKEN

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_run_the_sandbox_against_the_documented_api() -> None:
    settings = load_settings(_env_file=None)

    assert settings.protexting_access_token is None
    assert settings.sandbox is True
    assert settings.protexting_api_url == "https://api2.protexting.com/v1"
    assert settings.campaigns_path == Path("campaigns.toml")
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.secret_key is None


def test_access_token_is_read_from_its_env_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTEXTING_ACCESS_TOKEN", TOKEN)

    settings = load_settings(_env_file=None)

    assert settings.sandbox is False
    assert settings.protexting_access_token is not None
    assert settings.protexting_access_token.get_secret_value() == TOKEN


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_access_token_means_sandbox(monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.setenv("PROTEXTING_ACCESS_TOKEN", blank)

    assert load_settings(_env_file=None).sandbox is True


def test_api_url_is_read_and_loses_its_trailing_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTEXTING_API_URL", "http://127.0.0.1:8001/v1/")

    assert load_settings(_env_file=None).protexting_api_url == "http://127.0.0.1:8001/v1"


def test_campaigns_path_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OPTIN_CAMPAIGNS", str(tmp_path / "mine.toml"))

    assert load_settings(_env_file=None).campaigns_path == tmp_path / "mine.toml"


def test_public_url_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIN_PUBLIC_URL", "https://texts.example.com")

    assert load_settings(_env_file=None).public_url == "https://texts.example.com"


def test_secret_key_is_read_and_used_for_signing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIN_SECRET_KEY", "a-long-enough-signing-key")

    settings = load_settings(_env_file=None)

    assert settings.signing_key() == "a-long-enough-signing-key"


def test_without_secret_key_signing_uses_one_random_key_per_process() -> None:
    first = load_settings(_env_file=None).signing_key()
    second = load_settings(_env_file=None).signing_key()

    assert len(first) >= 32
    assert first == second


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("PROTEXTING_API_URL", "api2.protexting.com/v1", "absolute http(s) URL"),
        ("PROTEXTING_API_URL", "ftp://api2.protexting.com/v1", "absolute http(s) URL"),
        ("PROTEXTING_API_URL", "https://api2.protexting.com/v1?access_token=x", "query string"),
        ("OPTIN_PUBLIC_URL", "/signup", "absolute http(s) URL"),
        ("OPTIN_PUBLIC_URL", "https://texts.example.com/#top", "fragment"),
        ("OPTIN_SECRET_KEY", "short", "at least 16 characters"),
        ("PROTEXTING_ACCESS_TOKEN", "tok SECRET", "whitespace"),
        ("OPTIN_LOG_LEVEL", "verbose", "not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("OPTIN_WORKERS", "0", "greater than or equal to 1"),
        ("OPTIN_PORT", "http", "valid integer"),
    ],
)
def test_a_bad_value_raises_an_error_naming_the_env_var(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)

    assert name in str(caught.value)
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("env", "accepted"),
    [
        ({"OPTIN_LEASE_SECONDS": "6"}, False),  # the default deadline is 10 s
        ({"OPTIN_LEASE_SECONDS": "12"}, True),
        ({"OPTIN_LEASE_SECONDS": "6", "OPTIN_UPSTREAM_DEADLINE_SECONDS": "4"}, True),
        ({"OPTIN_UPSTREAM_DEADLINE_SECONDS": "119"}, False),  # above 60 anyway
        ({"OPTIN_LEASE_SECONDS": "3", "OPTIN_UPSTREAM_DEADLINE_SECONDS": "2"}, False),
    ],
)
def test_a_lease_that_a_call_could_outlive_stops_start_up(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], accepted: bool
) -> None:
    # A worker may take a signup whose lease ran out: if a call for it could still be
    # open then, the person would be texted twice.
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    if accepted:
        settings = load_settings(_env_file=None)
        assert settings.lease_seconds >= settings.upstream_deadline_seconds + 2
        return
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert "OPTIN_LEASE_SECONDS" in str(caught.value) or "OPTIN_UPSTREAM_DEADLINE_SECONDS" in str(caught.value)
    if "OPTIN_LEASE_SECONDS" in env:
        assert "OPTIN_LEASE_SECONDS: must be at least OPTIN_UPSTREAM_DEADLINE_SECONDS" in str(caught.value)


def test_error_messages_never_contain_the_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTEXTING_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("PROTEXTING_API_URL", "not a url")

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)

    # What an operator sees when start-up fails: the whole printed traceback.
    printed = "".join(traceback.format_exception(caught.value))
    assert "PROTEXTING_API_URL" in printed
    assert TOKEN not in printed


def test_a_token_with_whitespace_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTEXTING_ACCESS_TOKEN", "tok-SECRET 1234567890")

    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)

    printed = "".join(traceback.format_exception(caught.value))
    assert "PROTEXTING_ACCESS_TOKEN" in printed
    assert "SECRET" not in printed


def test_settings_repr_hides_the_token_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTEXTING_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("OPTIN_SECRET_KEY", "signing-key-SECRET-0987654321")

    settings = load_settings(_env_file=None)

    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings)
    assert "signing-key-SECRET" not in repr(settings)


def test_dot_env_in_the_working_directory_is_read(clean_env: Path) -> None:
    (clean_env / ".env").write_text(f"PROTEXTING_ACCESS_TOKEN={TOKEN}\nOPTIN_PUBLIC_URL=https://texts.example.com\n")

    settings = load_settings()

    assert settings.sandbox is False
    assert settings.public_url == "https://texts.example.com"


def test_blank_token_in_dot_env_means_sandbox(clean_env: Path) -> None:
    (clean_env / ".env").write_text("PROTEXTING_ACCESS_TOKEN=\n")

    assert load_settings().sandbox is True


def test_environment_wins_over_dot_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text("OPTIN_PUBLIC_URL=https://from-dot-env.example.com\n")
    monkeypatch.setenv("OPTIN_PUBLIC_URL", "https://from-env.example.com")

    assert load_settings().public_url == "https://from-env.example.com"


# --- start-up ------------------------------------------------------------------------


def test_app_starts_from_the_environment(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "campaigns.toml").write_text(CAMPAIGNS_TOML)

    with TestClient(create_app()) as client:
        response = client.get("/join")

    assert response.status_code == 200
    assert "Sandbox: no texts are sent" in response.text


def test_app_refuses_to_start_with_a_bad_setting(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "campaigns.toml").write_text(CAMPAIGNS_TOML)
    monkeypatch.setenv("PROTEXTING_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("PROTEXTING_API_URL", "ftp://api2.protexting.com/v1")

    with pytest.raises(SettingsError) as caught, TestClient(create_app()):
        pass

    assert "PROTEXTING_API_URL" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_app_refuses_to_start_with_a_missing_campaigns_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = clean_env / "nowhere" / "campaigns.toml"
    monkeypatch.setenv("OPTIN_CAMPAIGNS", str(missing))

    with pytest.raises(CampaignsError) as caught, TestClient(create_app()):
        pass

    assert str(missing) in str(caught.value)
    assert "not found" in str(caught.value)
    assert "OPTIN_CAMPAIGNS" in str(caught.value)


def test_app_refuses_to_start_with_a_bad_campaigns_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = clean_env / "bad.toml"
    bad.write_text(CAMPAIGNS_TOML.replace('terms_url = "https://example.com/sms-terms"', 'terms_url = "/terms"'))
    monkeypatch.setenv("OPTIN_CAMPAIGNS", str(bad))

    with pytest.raises(CampaignsError) as caught, TestClient(create_app()):
        pass

    message = str(caught.value)
    assert str(bad) in message
    assert "'JOIN'" in message
    assert "terms_url" in message


def test_app_refuses_to_start_when_a_keyword_takes_a_service_path(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / "campaigns.toml").write_text(CAMPAIGNS_TOML.replace("[campaigns.Alerts]", "[campaigns.Static]"))

    with pytest.raises(CampaignsError) as caught, TestClient(create_app()):
        pass

    assert "'Static'" in str(caught.value)
    assert "/static" in str(caught.value)
