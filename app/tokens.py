"""Form tokens: a signed, expiring proof that a submission comes from a page we served.

No cookies (third-party iframes often lose them): the token rides in a hidden field
(or in the JSON API's body) and says which campaign's page issued it and when. The
issue time also lets the bot trap see a form filled faster than any person could.

A token is `keyword.issued.signature`, signed with itsdangerous' `Signer` (HMAC, keyed
by OPTIN_SECRET_KEY): compact, and cheap enough to make on every page view.
"""

from __future__ import annotations

import time

from itsdangerous import BadSignature, Signer

# A page left open longer than this asks the person to press the button again.
MAX_AGE_SECONDS = 24 * 3600


class InvalidFormToken(Exception):
    """Missing, forged, or from another campaign's page."""


class ExpiredFormToken(Exception):
    """Genuine but too old: the page was open a long time."""


class FormTokens:
    def __init__(self, secret: str, *, max_age: int = MAX_AGE_SECONDS) -> None:
        self._signer = Signer(secret, salt="optin-pages/form-token")
        self._max_age = max_age

    def issue(self, campaign: str, *, issued_at: float | None = None) -> str:
        """A token for `campaign`'s page. A form shown again after an error keeps the
        first issue time, so a person correcting a typo is not slowed down again."""
        issued = issued_at if issued_at is not None else time.time()
        return self._signer.sign(f"{campaign.lower()}.{issued:.3f}").decode("ascii")

    def check(self, token: str | None, campaign: str) -> float:
        """The issue time (epoch seconds) of a valid token for `campaign`."""
        if not token or len(token) > 512:
            raise InvalidFormToken("missing form token")
        try:
            payload = self._signer.unsign(token).decode("ascii")
        except (BadSignature, UnicodeError):
            raise InvalidFormToken("form token does not verify") from None
        # Keywords have no dots, so the first dot ends the keyword.
        keyword, _, stamp = payload.partition(".")
        if keyword != campaign.lower():
            raise InvalidFormToken("form token is for another page")
        try:
            issued = float(stamp)
        except ValueError:
            raise InvalidFormToken("form token has no issue time") from None
        if not issued <= time.time() + 60:
            raise InvalidFormToken("form token has no believable issue time")
        # The age counts from the first page view, which the signed payload carries.
        if time.time() - issued > self._max_age:
            raise ExpiredFormToken("form token expired")
        return issued
