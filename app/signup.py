"""One signup, from a request to a stored consent record and a delivery attempt.

The form (`app.pages`) and the JSON API (`app.api`) both call `sign_up()`: the flow
request -> guard -> campaign's number rules -> consent record -> outbox -> ProTexting is
written once, so neither entrance can skip a check the other makes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .campaigns import Campaign
from .consent import ConsentRecord, client_ip, page_url, source_params, user_agent
from .delivery import Submitted
from .outbox import State
from .phone import normalise
from .resources import Resources
from .security import check_same_origin
from .site import Listing, Site
from .storage import utcnow
from .throttle import TooManyRequests
from .tokens import MAX_AGE_SECONDS, UsedFormToken
from .upstream import OptIn

logger = logging.getLogger(__name__)

_API_OPT_IN = re.compile(r"/api/v1/campaigns/([^/]+)/opt-ins")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the visitor sent."""

    phone: str
    token: str | None
    honeypot: str | None = None
    captcha: str | None = None


class RepeatedSignup(Exception):
    """The same form sent again for the same number (the button pressed twice): answer
    as the first did, and send nothing. `waiting`: no text has gone out yet."""

    def __init__(self, *, waiting: bool) -> None:
        super().__init__("signup sent again with the same form token")
        self.waiting = waiting


def visitor_ip(request: Request, resources: Resources) -> str | None:
    peer = request.client.host if request.client else None
    forwarded_for = request.headers.getlist("x-forwarded-for")
    trusted = resources.settings.trusted_proxies
    if forwarded_for and not trusted:
        _warn_untrusted_forwarded_for(peer)
    return client_ip(peer, forwarded_for, trusted)


_WARNED: list[bool] = []


def _warn_untrusted_forwarded_for(peer: str | None) -> None:
    # Once per process: behind a proxy every signup carries the header, and one line
    # is enough for the operator to act on.
    if not _WARNED:
        _WARNED.append(True)
        logger.warning(
            "X-Forwarded-For received from %s but OPTIN_TRUSTED_PROXIES is unset: signups record "
            "and limit the connection's address. If the service is behind a reverse proxy, "
            "set OPTIN_TRUSTED_PROXIES to the proxy's address or network",
            peer,
        )


def optin_for(campaign: Campaign, phone: str) -> OptIn:
    return OptIn(
        phone=phone,
        group_ids=campaign.group_ids,
        cta_message=campaign.cta_message,
        confirm_message=campaign.confirm_message,
        send_cta_message=campaign.send_cta_message,
    )


async def sign_up(
    request: Request, resources: Resources, listing: Listing, attempt: Attempt, *, cross_origin: bool = False
) -> Submitted:
    """Check, record and deliver one signup to `listing`'s campaign.

    `cross_origin` lets the campaign's `api_origins` call from their own pages (the
    JSON API); the form accepts only our own origin. Raises the guard's errors
    (CrossSiteRequest, TooManyRequests, InvalidFormToken, ExpiredFormToken,
    BotTrapped, CaptchaFailed), PhoneError, and for a token used before
    RepeatedSignup or UsedFormToken. The address limit is counted before, by
    `CountSubmissions`.
    """
    settings = resources.settings
    campaign = listing.campaign
    check_same_origin(request, own=settings.own_origins, also=campaign.api_origins if cross_origin else ())
    ip = visitor_ip(request, resources)
    await resources.guard.admit(
        listing, token=attempt.token, honeypot=attempt.honeypot, captcha_answer=attempt.captcha, client_ip=ip
    )
    phone = normalise(
        attempt.phone,
        default_country=campaign.default_country,
        countries=campaign.countries,
        types=campaign.number_types,
    )
    await resources.guard.number(listing, phone)
    # Only now is the token used up: a typo or a limit leaves it good for the next try.
    assert attempt.token is not None  # the guard admitted it
    if not await resources.guard.tokens.claim(attempt.token, phone):
        raise await _repeated(resources, campaign, phone)

    source = source_params(request.query_params.multi_items())
    record = ConsentRecord(
        created_at=utcnow(),
        campaign=campaign.keyword,
        phone=phone,
        group_ids=campaign.group_ids,
        disclosure_sha256=listing.disclosure.sha256,
        page_url=page_url(settings.public_url, campaign, source),
        source=source,
        client_ip=ip,
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    return await resources.delivery.submit(record, optin_for(campaign, phone))


async def _repeated(resources: Resources, campaign: Campaign, phone: str) -> Exception:
    """What to answer the same token and number again: the thanks the first got, as
    far as its stored signup tells. When nothing is stored, or it was refused or failed
    (or the first is a moment from being stored), the form again: pressing once more
    signs up afresh, and the outbox's duplicate check keeps a second text from going."""
    window = timedelta(seconds=MAX_AGE_SECONDS)
    found = await resources.delivery.outbox.recent(campaign.keyword, phone, window=window)
    if found is None:
        return UsedFormToken("form token already used; the first signup is not stored as sent")
    return RepeatedSignup(waiting=found[1] != State.DELIVERED)


class CountSubmissions:
    """Every POST to a campaign's form or to the opt-in API counts once against the
    per-address limit, whatever becomes of it: counted here, outside the body limit and
    before the form is read, since a malformed, oversized, cross-site or bad-token
    submission is refused before `sign_up` would count it. Over the limit: the app's
    own 429 answer, before the body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            state = scope["app"].state
            resources: Resources | None = getattr(state, "resources", None)
            if resources is not None and _signup_path(scope["path"], state.site):
                request = Request(scope)
                try:
                    await resources.guard.throttle.client(visitor_ip(request, resources))
                except TooManyRequests as exc:
                    response = await scope["app"].exception_handlers[TooManyRequests](request, exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _signup_path(path: str, site: Site) -> bool:
    """POST /{keyword} or /api/v1/campaigns/{keyword}/opt-ins of a known campaign."""
    if path.count("/") == 1:
        return site.campaign(path[1:]) is not None
    api = _API_OPT_IN.fullmatch(path)
    return api is not None and site.campaign(api.group(1)) is not None
