"""The door: every check a submission passes, form or JSON API alike, before a
consent record is made and ProTexting is called.

    limits      too many from this address (every submission)  -> 429 + Retry-After
    origin      a browser POST from another site              -> 403
    form token  missing or forged                             -> 400 (expired: form again)
    bot traps   honeypot filled, or filled faster than a person -> answered like success
    CAPTCHA     when the campaign has one, not passed          -> the form again, 422
    number      country and number type (app.phone)           -> 422 beside the field
    limits      this number, its block, the campaign's day    -> 429 + Retry-After
    form token  used: same number again -> answered as the first; another -> form again, 409

Keeping the whole list in one place is what keeps the JSON API exactly as guarded as
the form (a public API that skips the form's traps is a back door). The address is
counted before the body is even read (`app.signup.CountSubmissions`), so that requests
refused early count too.
"""

from __future__ import annotations

import logging
from collections import Counter

from .campaigns import Campaign
from .captcha import CaptchaVerifier
from .site import Listing
from .throttle import Throttle
from .tokens import FormTokens

logger = logging.getLogger(__name__)

HONEYPOT_FIELD = "website"


class BotTrapped(Exception):
    """A trap caught this submission: answer exactly as if it had worked."""

    def __init__(self, trap: str) -> None:
        super().__init__(trap)
        self.trap = trap


class Guard:
    def __init__(
        self, *, tokens: FormTokens, throttle: Throttle, captcha: CaptchaVerifier, min_fill_seconds: float
    ) -> None:
        self.tokens = tokens
        self.throttle = throttle
        self.captcha = captcha
        self.min_fill_seconds = min_fill_seconds
        # What the traps caught, by trap, since start-up (for logs now, metrics later).
        self.trapped: Counter[str] = Counter()

    async def admit(
        self,
        listing: Listing,
        *,
        token: str | None,
        honeypot: str | None,
        captcha_answer: str | None,
        client_ip: str | None,
    ) -> float:
        """Run the checks that come before the number; return the form's issue time.

        Raises InvalidFormToken, ExpiredFormToken, BotTrapped or CaptchaFailed."""
        campaign = listing.campaign
        issued = self.tokens.check(token, listing.key)
        if honeypot:
            self._caught("honeypot", campaign, client_ip)
        # Timed on the clock that stamped the token.
        if self.min_fill_seconds and self.tokens.clock() - issued < self.min_fill_seconds:
            self._caught("too fast", campaign, client_ip)
        if campaign.captcha is not None:
            await self.captcha.verify(
                campaign.captcha.kind,
                secret=campaign.captcha.secret.get_secret_value(),
                response=captcha_answer,
                remote_ip=client_ip,
            )
        return issued

    async def number(self, listing: Listing, phone: str) -> None:
        """Count a valid number against its limits (raises TooManyRequests)."""
        await self.throttle.signup(listing.key, phone)

    def _caught(self, trap: str, campaign: Campaign, client_ip: str | None) -> None:
        self.trapped[trap] += 1
        logger.info(
            "bot trap %r caught a submission to %s from %s",
            trap,
            campaign.keyword,
            client_ip,
            extra={"campaign": campaign.keyword, "outcome": "bot-trapped"},
        )
        raise BotTrapped(trap)
