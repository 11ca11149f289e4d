"""The thanks page's masked number (app.web.masked): only the last four digits travel,
signed, and nothing else shows."""

from __future__ import annotations

from app.web.masked import MaskedNumber, shown, tag

KEY = "test-signing-key-0123456789"


def test_a_north_american_number_travels_as_its_last_four_digits() -> None:
    value = tag("12015550123", key=KEY)
    assert value is not None and value.startswith("1-0123.")
    assert "555" not in value
    assert shown(value, key=KEY) == MaskedNumber("0123", north_american=True)


def test_a_number_elsewhere_shows_only_its_end() -> None:
    value = tag("447700900123", key=KEY)
    assert value is not None and "7700" not in value
    assert shown(value, key=KEY) == MaskedNumber("0123", north_american=False)


def test_digits_of_ones_choosing_are_not_shown() -> None:
    genuine = tag("12015550123", key=KEY)
    assert genuine is not None
    forged = genuine.replace("0123", "6666")
    assert shown(forged, key=KEY) is None
    assert shown("1-6666", key=KEY) is None
    assert shown(genuine, key="another-key-0123456789") is None
    assert shown("", key=KEY) is None and shown(None, key=KEY) is None


def test_too_few_digits_say_nothing() -> None:
    assert tag("123", key=KEY) is None
    assert tag("", key=KEY) is None
