"""The number the thanks page names, masked: "We texted •••-•••-0123".

The POST knows the number; the thanks page, one redirect later, does not. It rides in
the redirect's query as `to`: only its last four digits, and whether it is a North
American number (which decides the shape shown), so the URL that lands in the browser's
history, proxy logs and the shop's analytics holds nothing more of the person's number
than the page itself shows. Signed with the service's key, so that nobody can link to
our thanks page with digits of their choosing and make it say we texted a number we
did not. No cookie: a frame on a shop's site often loses third-party cookies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

from itsdangerous import BadSignature, Signer
from itsdangerous.signer import SigningAlgorithm

from ..tokens import KeyedSigner

QUERY_NAME = "to"
_SALT = "optin-pages/thanks-number"
_SHOWN_DIGITS = 4


class _ShortBlake2(SigningAlgorithm):
    """Keyed BLAKE2b (a MAC by design) cut to 12 bytes: 16 characters in the URL, and
    plenty against forging a line of text on a thanks page."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hashlib.blake2b(value, key=key, digest_size=12).digest()


@lru_cache(maxsize=4)
def _signer(key: str) -> Signer:
    return KeyedSigner(key, salt=_SALT, digest_method=hashlib.sha256, algorithm=_ShortBlake2())


def tag(digits: str, *, key: str) -> str | None:
    """The `to` value for a number of E.164 `digits` (country code first): "1-0123" for
    a North American number (+1, the only country code that starts with 1), else
    "0123", signed. None when there are too few digits to show."""
    if len(digits) < _SHOWN_DIGITS or not digits.isdigit():
        return None
    tail = digits[-_SHOWN_DIGITS:]
    # Signed on each signup, not looked up: with the key derived once (KeyedSigner) a
    # signature is about 1 µs, and a cache of tags held about 1 MB after a burst of
    # 5,000 signups (tracemalloc) for the one in five it would have spared.
    value = f"1-{tail}" if digits.startswith("1") and len(digits) == 11 else tail
    return _signer(key).sign(value).decode("ascii")


@dataclass(frozen=True, slots=True)
class MaskedNumber:
    """What the thanks page may say of the number: its last digits, and whether it is
    North American, shown •••-•••-0123 (elsewhere: "the number ending in 0123")."""

    tail: str
    north_american: bool


def shown(value: str | None, *, key: str) -> MaskedNumber | None:
    """The masked number a `to` value stands for, or None when it is missing or not ours."""
    if not value:
        return None
    try:
        plain = _signer(key).unsign(value).decode("ascii")
    except (BadSignature, UnicodeError):
        return None
    tail = plain.removeprefix("1-")
    return MaskedNumber(tail, north_american=tail != plain)
