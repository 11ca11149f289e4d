"""One web opt-out: from a visit to a stored revocation, and the call that follows.

Since April 2025 the FCC lets a person revoke consent by any reasonable means, a web
page the sender offers among them, to be honoured within ten business days. The form
(`/stop`, `/{keyword}/stop`) and the JSON API (`POST /api/v1/opt-outs`) both call
`opt_out()`, which runs the guard a signup runs (origin, form token, bot traps, the
number's rules and limits), stores the revocation with the words its page showed,
committed, and queues ProTexting's opt-out call for the worker, before any opt-in
(`app.delivery.Delivery.queue`). Opt-ins of the number not sent yet are cancelled.

ProTexting's opt-out applies to the whole account: every text of the business stops,
not one campaign's. The page says so. It knows nothing of HTTP, like `app.signup`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from .campaigns import Campaign
from .consent import Disclosure, OptOutRecord
from .guard import BotTrapped
from .phone import normalise
from .problems import Problem, Refusal
from .resources import Resources
from .signup import Result, Status, Submission
from .tokens import UsedFormToken
from .upstream import OptOut
from .visit import Visit

# The form token of /stop names this page; /{keyword}/stop's names "stop/" and the
# campaign's key. No keyword is "stop" or holds a "/", so no token of a signup page
# is taken here, nor one of these there.
STOP_KEY = "stop"


@dataclass(frozen=True, slots=True)
class StopPage:
    """An opt-out page as the edge built it: which one, and what it shows and accepts."""

    # What its form tokens name (`STOP_KEY`, or "stop/" + the campaign's key).
    key: str
    # Its path under OPTIN_PUBLIC_URL: "/stop" or "/JOIN/stop".
    path: str
    campaign: Campaign | None
    # The words above the button (what stops, and that one text may follow), as shown.
    notice: Disclosure
    language: str
    # Whose numbers it takes: the campaign's rules, or for /stop every campaign's.
    default_country: str
    countries: tuple[str, ...]
    number_types: tuple[str, ...]
    # The origins whose scripts may post to the JSON API (every campaign's api_origins).
    api_origins: tuple[str, ...]


def page_key(campaign_key: str | None) -> str:
    """What the form tokens of /stop (None) or of a campaign's /{keyword}/stop name."""
    return STOP_KEY if campaign_key is None else f"{STOP_KEY}/{campaign_key}"


def number_rules(campaigns: Iterable[Campaign]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Whose numbers /stop takes: the default country of the first campaign, and every
    country and number type some campaign takes (a number only one campaign could sign
    up can still leave)."""
    listed = list(campaigns)
    countries = tuple(dict.fromkeys(country for c in listed for country in c.countries))
    types = tuple(dict.fromkeys(kind for c in listed for kind in c.number_types))
    default = listed[0].default_country if listed else "US"
    return default, countries or (default,), types


class StopTokenUsed(Refusal):
    """The opt-out form's token was used for another number: the form again."""

    problem = Problem("token", "token.used_stop")


async def opt_out(
    resources: Resources, visit: Visit, page: StopPage, submission: Submission, *, cross_origin: bool = False
) -> Result:
    """Check and record one opt-out, and queue its call to ProTexting.

    QUEUED once the revocation is committed (the call follows, from the worker);
    REFUSED for what the visitor can put right (the number, a stale or spent token);
    TRAPPED for a bot trap, answered like success. CrossSiteRequest, InvalidFormToken
    and TooManyRequests are raised, as by `app.signup.sign_up`."""
    try:
        return await _opt_out(resources, visit, page, submission, cross_origin=cross_origin)
    except UsedFormToken:
        return Result(Status.REFUSED, (StopTokenUsed.problem,))
    except Refusal as refusal:
        return Result(Status.REFUSED, (refusal.problem,))
    except BotTrapped:
        return Result(Status.TRAPPED)


async def _opt_out(
    resources: Resources, visit: Visit, page: StopPage, submission: Submission, *, cross_origin: bool
) -> Result:
    guard = resources.guard
    guard.check_origin(visit, also=page.api_origins if cross_origin else ())
    guard.traps(
        page.key, token=submission.token, honeypot=submission.honeypot, client_ip=visit.client_ip, page=page.path
    )
    phone = normalise(
        submission.phone, default_country=page.default_country, countries=page.countries, types=page.number_types
    )
    await guard.throttle.opt_out(phone)
    assert submission.token is not None  # the guard admitted it
    # The same token and number again (the button pressed twice) is stored again: the
    # duplicate window keeps ProTexting from being asked twice, and an opt-out is never
    # lost to a first attempt that was not stored.
    await guard.tokens.claim(submission.token, phone)
    query = f"?{urlencode(dict(visit.source))}" if visit.source else ""
    record = OptOutRecord(
        created_at=datetime.now(UTC),
        phone=phone,
        campaign=page.campaign.keyword if page.campaign is not None else None,
        page_url=resources.settings.public_url + page.path + query,
        language=page.language,
        notice=page.notice,
        client_ip=visit.client_ip,
        user_agent=visit.user_agent,
    )
    await resources.delivery.queue(record, OptOut(phone))
    return Result(Status.QUEUED)
