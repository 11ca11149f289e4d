"""Form tokens: the page view's inline signing is itsdangerous' own, and the batches it
signs ahead give every view a token of its own, of its time within the window."""

from __future__ import annotations

import asyncio

import pytest
from itsdangerous import BadSignature, Signer

from app.tokens import BATCH_WINDOW, FormTokens, InvalidFormToken, KeyedSigner
from tests.support.clocks import Clock


def test_an_issued_token_is_what_the_signer_makes_and_checks() -> None:
    tokens = FormTokens("test-signing-key-0123456789", clock=lambda: 1_700_000_000.0)
    token = tokens.issue("join")
    value, _, _ = token.rpartition(".")
    # Byte for byte what Signer.sign makes of the same value, and taken back by check().
    assert tokens._signer.sign(value).decode("ascii") == token
    assert tokens.check(token, "join") == 1_700_000_000.0


def test_tokens_of_a_busy_page_are_each_their_own_and_trail_the_view_by_at_most_the_window() -> None:
    clock = Clock(1_700_000_000.0)
    tokens = FormTokens("test-signing-key-0123456789", clock=clock)
    seen: list[str] = []
    # A burst of views, 1 ms apart, over three windows: batches are signed and spent.
    for _ in range(int(3 * BATCH_WINDOW * 1000)):
        token = tokens.issue("join")
        assert token not in seen
        seen.append(token)
        issued = tokens.check(token, "join")
        # To the millisecond the token writes.
        assert clock.now - BATCH_WINDOW - 0.0005 < issued <= clock.now + 0.0005
        clock.advance(0.001)
    # Each is good for one signup: claiming one does not use up its batch's others.
    first, second = seen[-2:]  # the last two views: one batch (its size is at its most)
    assert asyncio.run(tokens.claim(first, "13125550100")) is True
    assert asyncio.run(tokens.claim(second, "13125550101")) is True


def test_a_quiet_pages_tokens_carry_the_time_of_their_own_view() -> None:
    clock = Clock(1_700_000_000.0)
    tokens = FormTokens("test-signing-key-0123456789", clock=clock)
    for _ in range(5):  # a burst first: a batch is left over when the views slow down
        tokens.issue("join")
    for _ in range(20):
        clock.advance(BATCH_WINDOW + 0.5)
        assert tokens.check(tokens.issue("join"), "join") == round(clock.now, 3)


def test_a_clock_set_back_never_gives_a_token_issued_in_the_future() -> None:
    clock = Clock(1_700_000_000.0)
    tokens = FormTokens("test-signing-key-0123456789", clock=clock)
    for _ in range(10):
        tokens.issue("join")
    clock.advance(-0.1)
    assert tokens.check(tokens.issue("join"), "join") == round(clock.now, 3)


def test_each_page_has_its_own_batch() -> None:
    tokens = FormTokens("test-signing-key-0123456789", clock=Clock(1_700_000_000.0))
    for _ in range(10):
        tokens.issue("join")
        tokens.issue("deals")
    token = tokens.issue("deals")
    assert tokens.check(token, "deals") == 1_700_000_000.0
    with pytest.raises(InvalidFormToken):
        tokens.check(token, "join")


def test_the_keyed_signer_signs_and_checks_as_itsdangerous_does_with_every_key() -> None:
    # Its derived keys are kept, not made again: the bytes must stay itsdangerous' own.
    ours = KeyedSigner(["an-older-secret-0123456789", "the-newest-secret-0123456789"], salt="s")
    theirs = Signer(["an-older-secret-0123456789", "the-newest-secret-0123456789"], salt="s")
    assert ours.sign("value") == theirs.sign("value")
    older = Signer("an-older-secret-0123456789", salt="s").sign("value")
    assert ours.unsign(older) == b"value"
    with pytest.raises(BadSignature):
        ours.unsign(Signer("another-secret-0123456789", salt="s").sign("value"))
