"""Form tokens: the page view's inline signing is itsdangerous' own."""

from __future__ import annotations

from app.tokens import FormTokens


def test_an_issued_token_is_what_the_signer_makes_and_checks() -> None:
    tokens = FormTokens("test-signing-key-0123456789", clock=lambda: 1_700_000_000.0)
    token = tokens.issue("join")
    value, _, _ = token.rpartition(".")
    # Byte for byte what Signer.sign makes of the same value, and taken back by check().
    assert tokens._signer.sign(value).decode("ascii") == token
    assert tokens.check(token, "join") == 1_700_000_000.0
