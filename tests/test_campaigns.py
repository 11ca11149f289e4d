"""The campaigns file: the shipped one loads, and every mistake an operator can make is
refused with a message naming the file, the campaign and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.campaigns import CampaignsError, load_campaigns, parse_campaigns
from app.web.pages import RESERVED_PATHS

SHIPPED = Path(__file__).resolve().parent.parent / "campaigns.toml"
SOURCE = "/etc/optin/campaigns.toml"

REQUIRED = {
    "title": '"Deals by text"',
    "group_ids": "[1]",
    "program_name": '"Test Bakery"',
    "message_frequency": '"Up to 4 msgs/month"',
    "terms_url": '"https://example.com/terms"',
    "privacy_url": '"https://example.com/privacy"',
}


def campaign_toml(table: str = "JOIN", *, drop: str | None = None, **keys: str) -> str:
    """One [campaigns.TABLE] table: the required keys, minus `drop`, plus `keys` (TOML values)."""
    values = {name: value for name, value in REQUIRED.items() if name != drop} | keys
    return f"[campaigns.{table}]\n" + "".join(f"{name} = {value}\n" for name, value in values.items())


def refused(text: str) -> str:
    with pytest.raises(CampaignsError) as caught:
        parse_campaigns(text, source=SOURCE, reserved=RESERVED_PATHS)
    message = str(caught.value)
    assert message.startswith(SOURCE + ":"), message
    return message


def test_the_shipped_campaigns_file_loads() -> None:
    campaigns = load_campaigns(SHIPPED, reserved=RESERVED_PATHS)

    assert sorted(campaigns) == ["alerts", "join"]
    join, alerts = campaigns["join"], campaigns["alerts"]
    assert join.keyword == "JOIN"
    assert join.path == "/JOIN"
    assert join.group_ids == (1,)
    assert join.countries == ("US",)
    assert join.send_cta_message is False
    assert join.confirm_message and "STOP" in join.confirm_message
    assert alerts.group_ids == (2, 3)
    assert alerts.countries == ("US", "CA")
    assert alerts.send_cta_message is True


def test_lookup_is_by_lower_cased_keyword_and_the_keyword_keeps_its_case() -> None:
    campaigns = parse_campaigns(campaign_toml("Summer-Deals_2"), source=SOURCE)

    assert list(campaigns) == ["summer-deals_2"]
    assert campaigns["summer-deals_2"].keyword == "Summer-Deals_2"
    assert campaigns["summer-deals_2"].path == "/Summer-Deals_2"


def test_optional_keys_default_sensibly() -> None:
    campaign = parse_campaigns(campaign_toml(), source=SOURCE)["join"]

    assert campaign.default_country == "US"
    assert campaign.countries == ("US",)
    assert campaign.send_cta_message is False
    assert campaign.cta_message is None
    assert campaign.confirm_message is None
    assert campaign.description == ""
    assert campaign.number_types == ("mobile", "fixed_line_or_mobile")


def test_countries_default_to_the_default_country() -> None:
    campaign = parse_campaigns(campaign_toml(default_country='"gb"'), source=SOURCE)["join"]

    assert campaign.default_country == "GB"
    assert campaign.countries == ("GB",)


def test_country_codes_are_upper_cased_and_deduplicated() -> None:
    campaign = parse_campaigns(campaign_toml(countries='["us", "CA", "US"]'), source=SOURCE)["join"]

    assert campaign.countries == ("US", "CA")


def test_text_values_are_trimmed() -> None:
    campaign = parse_campaigns(campaign_toml(title='"  Deals by text  "'), source=SOURCE)["join"]

    assert campaign.title == "Deals by text"


@pytest.mark.parametrize("key", sorted(REQUIRED))
def test_a_missing_required_key_is_named(key: str) -> None:
    message = refused(campaign_toml(drop=key))

    assert "campaign 'JOIN'" in message
    assert f"key '{key}'" in message
    assert "required" in message


def test_an_unknown_key_is_named() -> None:
    message = refused(campaign_toml(titel='"typo"'))

    assert "campaign 'JOIN'" in message
    assert "key 'titel': unknown key" in message


def test_a_keyword_key_is_refused_because_the_table_name_is_the_keyword() -> None:
    message = refused(campaign_toml(keyword='"OTHER"'))

    assert "campaign 'JOIN'" in message
    assert "key 'keyword'" in message


def test_a_blank_title_is_refused() -> None:
    message = refused(campaign_toml(title='"   "'))

    assert "campaign 'JOIN'" in message
    assert "key 'title'" in message


@pytest.mark.parametrize("key", ["terms_url", "privacy_url"])
@pytest.mark.parametrize("url", ["/sms-terms", "ftp://example.com/terms", "example.com/terms", "https://"])
def test_a_bad_link_is_refused(key: str, url: str) -> None:
    message = refused(campaign_toml(**{key: f'"{url}"'}))

    assert "campaign 'JOIN'" in message
    assert f"key '{key}'" in message
    assert url in message


def test_empty_group_ids_are_refused() -> None:
    message = refused(campaign_toml(group_ids="[]"))

    assert "campaign 'JOIN'" in message
    assert "key 'group_ids'" in message


@pytest.mark.parametrize("group_ids", ['["1"]', "[1.0]", "[true]", "[0]", "[-3]"])
def test_a_group_id_that_is_not_a_positive_integer_is_refused(group_ids: str) -> None:
    message = refused(campaign_toml(group_ids=group_ids))

    assert "campaign 'JOIN'" in message
    assert "key 'group_ids[0]'" in message


def test_a_single_group_id_must_still_be_a_list() -> None:
    message = refused(campaign_toml(group_ids="1"))

    assert "key 'group_ids'" in message


def test_the_position_of_a_bad_group_id_is_named() -> None:
    message = refused(campaign_toml(group_ids='[1, 2, "3"]'))

    assert "key 'group_ids[2]'" in message


@pytest.mark.parametrize(
    ("key", "value", "code"),
    [("default_country", '"XX"', "XX"), ("countries", '["US", "ZZ"]', "ZZ"), ("countries", '["USA"]', "USA")],
)
def test_a_bad_country_code_is_refused(key: str, value: str, code: str) -> None:
    message = refused(campaign_toml(**{key: value}))

    assert "campaign 'JOIN'" in message
    assert f"key '{key}'" in message
    assert repr(code) in message


def test_the_default_country_must_be_one_of_the_countries() -> None:
    message = refused(campaign_toml(default_country='"CA"', countries='["US", "MX"]'))

    assert "campaign 'JOIN'" in message
    assert "default_country 'CA'" in message
    assert "'US'" in message


def test_a_campaign_may_allow_other_number_types() -> None:
    campaign = parse_campaigns(campaign_toml(number_types='["mobile", "fixed_line"]'), source=SOURCE)["join"]

    assert campaign.number_types == ("mobile", "fixed_line")


@pytest.mark.parametrize("value", ['["mobile", "landline"]', "[]"])
def test_unknown_or_no_number_types_are_refused(value: str) -> None:
    message = refused(campaign_toml(number_types=value))

    assert "campaign 'JOIN'" in message
    assert "key 'number_types'" in message


def test_send_cta_message_must_be_a_boolean() -> None:
    message = refused(campaign_toml(send_cta_message='"yes"'))

    assert "key 'send_cta_message'" in message


@pytest.mark.parametrize("keyword", ["static", "healthz", "API", "Admin", "opt-out"])
def test_a_keyword_may_not_take_one_of_the_services_own_paths(keyword: str) -> None:
    message = refused(campaign_toml(f'"{keyword}"'))

    assert f"campaign {keyword!r}" in message
    assert f"/{keyword.lower()}" in message


def test_a_keyword_repeated_in_another_case_is_refused() -> None:
    message = refused(campaign_toml("JOIN") + campaign_toml("join"))

    assert "campaign 'join'" in message
    assert "'JOIN'" in message


@pytest.mark.parametrize("keyword", ["join us", "-join", "join/us", "j" * 65])
def test_a_keyword_that_cannot_be_a_path_segment_is_refused(keyword: str) -> None:
    message = refused(campaign_toml(f'"{keyword}"'))

    assert f"campaign {keyword!r}" in message
    assert "keyword must be" in message


def test_invalid_toml_is_refused_with_the_file_name() -> None:
    message = refused(campaign_toml() + "title = \n")

    assert "not valid TOML" in message


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "[campaigns]\n", "campaigns = 3\n"])
def test_a_file_without_campaigns_is_refused(text: str) -> None:
    assert "no campaigns" in refused(text)


def test_a_campaign_outside_the_campaigns_table_is_refused() -> None:
    message = refused(campaign_toml().replace("[campaigns.JOIN]", "[JOIN]"))

    assert "'JOIN'" in message
    assert "[campaigns.KEYWORD]" in message


def test_a_campaign_that_is_not_a_table_is_refused() -> None:
    message = refused('[campaigns]\nJOIN = "yes"\n')

    assert "campaign 'JOIN'" in message
    assert "must be a table" in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.toml"

    with pytest.raises(CampaignsError) as caught:
        load_campaigns(path)

    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_bytes(b'[campaigns.JOIN]\ntitle = "\xff\xfe"\n')

    with pytest.raises(CampaignsError) as caught:
        load_campaigns(path)

    assert str(path) in str(caught.value)


def test_load_names_the_file_in_validation_errors(tmp_path: Path) -> None:
    path = tmp_path / "campaigns.toml"
    path.write_text(campaign_toml(drop="title"))

    with pytest.raises(CampaignsError) as caught:
        load_campaigns(path)

    assert str(caught.value).startswith(f"{path}: campaign 'JOIN': key 'title'")
