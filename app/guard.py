"""The door: every check a submission passes, form or JSON API alike, before a
consent record is made and ProTexting is called.

    limits      too many from this address (every submission)  -> 429 + Retry-After
    origin      a browser POST from another site              -> 403 (`check_origin`)
    form token  missing or forged                             -> 400 (expired: form again)
    bot traps   honeypot filled                               -> answered like success
    fill time   sent sooner than a person fills it in          -> the form again, to confirm
                ... and again, with the confirming token       -> answered like success
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
import math
from collections import Counter
from collections.abc import Collection, Iterable
from urllib.parse import urlsplit

from .campaigns import Campaign
from .captcha import CaptchaVerifier
from .problems import Problem, Refusal
from .site import Listing
from .throttle import Throttle
from .tokens import FormTokens
from .visit import Visit

logger = logging.getLogger(__name__)

HONEYPOT_FIELD = "website"


class BotTrapped(Exception):
    """A trap caught this submission: answer exactly as if it had worked."""

    def __init__(self, trap: str) -> None:
        super().__init__(trap)
        self.trap = trap


class FilledTooFast(Refusal):
    """Sent sooner than OPTIN_MIN_FILL_SECONDS after its page was served: a phone's
    autofill can be that quick, so the first time is asked to confirm (the form again,
    with a confirming token) rather than trapped. `retry_after`: whole seconds until
    the same token would pass."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("form sent sooner than a person fills it in")
        self.problem = Problem("token", "fill.too_fast", {"retry_after": retry_after})


class CrossSiteRequest(Exception):
    """A browser sent this submission from a page on another site."""


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class Guard:
    def __init__(
        self,
        *,
        tokens: FormTokens,
        throttle: Throttle,
        captcha: CaptchaVerifier,
        min_fill_seconds: float,
        own_origins: Iterable[str] = (),
    ) -> None:
        # The origins our own pages are served from (OPTIN_PUBLIC_URL's, `Settings.own_origins`).
        self.own_origins = frozenset(origin_of(url) for url in own_origins)
        self.tokens = tokens
        self.throttle = throttle
        self.captcha = captcha
        self.min_fill_seconds = min_fill_seconds
        # What the traps caught, by trap, since start-up (for logs now, metrics later).
        self.trapped: Counter[str] = Counter()

    def check_origin(self, visit: Visit, *, also: Collection[str] = ()) -> None:
        """Raise `CrossSiteRequest` unless the submission comes from one of our origins
        (or from `also`, a campaign's allow-list, where "*" allows any).

        The OWASP CSRF cheat sheet's check without cookies. Our origins are the
        configured ones, never one derived from the request's Host header: a
        DNS-rebinding page (evil.example resolved to this server) sends
        `Host: evil.example` with `Origin: http://evil.example` and, its browser being
        honest, `Sec-Fetch-Site: same-origin`. So a stated origin is always compared,
        and `Sec-Fetch-Site` alone decides only when the browser states none. A form
        inside a third-party iframe is still our page posting to our origin: it passes."""
        origin = visit.origin
        if origin is None:
            if visit.fetch_site in (None, "same-origin", "none"):
                return  # no browser signals, or the browser's word: the token and limits still apply
            raise CrossSiteRequest("cross-site request from an unknown origin")
        if origin in self.own_origins or origin in also or "*" in also:
            return
        raise CrossSiteRequest(f"cross-site request from {origin or 'an unknown origin'}")

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

        Raises InvalidFormToken, ExpiredFormToken, BotTrapped, FilledTooFast or
        CaptchaFailed."""
        campaign = listing.campaign
        stamp = self.tokens.read(token, listing.key)
        if honeypot:
            self._caught("honeypot", campaign, client_ip)
        # Timed on the clock that stamped the token, from the first page view: the
        # confirming form keeps that time, so a person's tap on it is late enough.
        waited = self.tokens.clock() - stamp.issued
        if self.min_fill_seconds and waited < self.min_fill_seconds:
            if stamp.confirming:
                self._caught("too fast", campaign, client_ip)
            logger.info(
                "a submission to %s from %s came %.1fs after its page: asked to confirm",
                campaign.keyword, client_ip, waited,
                extra={"campaign": campaign.keyword, "outcome": "too-fast"},
            )  # fmt: skip
            raise FilledTooFast(math.ceil(self.min_fill_seconds - waited))
        if campaign.captcha is not None:
            await self.captcha.verify(
                campaign.captcha.kind,
                secret=campaign.captcha.secret.get_secret_value(),
                response=captcha_answer,
                remote_ip=client_ip,
            )
        return stamp.issued

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
