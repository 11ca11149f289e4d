"""One signup, from a request to a stored consent record and a delivery attempt.

The form (`app.pages`) and the JSON API (`app.api`) both call `sign_up()`: the flow
request -> guard -> campaign's number rules -> consent record -> outbox -> ProTexting is
written once, so neither entrance can skip a check the other makes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from starlette.requests import Request

from .campaigns import Campaign
from .consent import ConsentRecord, client_ip, page_url, source_params, user_agent
from .delivery import Submitted
from .phone import normalise
from .resources import Resources
from .security import check_same_origin
from .storage import utcnow
from .upstream import OptIn

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the visitor sent."""

    phone: str
    token: str | None
    honeypot: str | None = None
    captcha: str | None = None


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
    request: Request, resources: Resources, campaign: Campaign, attempt: Attempt, *, cross_origin: bool = False
) -> Submitted:
    """Check, record and deliver one signup.

    `cross_origin` lets the campaign's `api_origins` call from their own pages (the
    JSON API); the form accepts only our own origin. Raises the guard's errors
    (CrossSiteRequest, TooManyRequests, InvalidFormToken, ExpiredFormToken,
    BotTrapped, CaptchaFailed) and PhoneError.
    """
    settings = resources.settings
    check_same_origin(request, own=(settings.public_url,), also=campaign.api_origins if cross_origin else ())
    ip = visitor_ip(request, resources)
    await resources.guard.admit(
        campaign, token=attempt.token, honeypot=attempt.honeypot, captcha_answer=attempt.captcha, client_ip=ip
    )
    phone = normalise(
        attempt.phone,
        default_country=campaign.default_country,
        countries=campaign.countries,
        types=campaign.number_types,
    )
    await resources.guard.number(campaign, phone)

    source = source_params(request.query_params.multi_items())
    record = ConsentRecord(
        created_at=utcnow(),
        campaign=campaign.keyword,
        phone=phone,
        group_ids=campaign.group_ids,
        disclosure_sha256=resources.disclosures[campaign.keyword.lower()].sha256,
        page_url=page_url(settings.public_url, campaign, source),
        source=source,
        client_ip=ip,
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    return await resources.delivery.submit(record, optin_for(campaign, phone))
