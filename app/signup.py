"""One signup, from a visit to a stored consent record and a delivery attempt.

The form (`app.web.pages`) and the JSON API (`app.web.api`) both call `sign_up()`: the flow
visit -> guard -> campaign's number rules -> consent record -> outbox -> ProTexting is
written once, so neither entrance can skip a check the other makes. It knows nothing of
HTTP: the edge hands it a `Visit` and renders the `Result` it returns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum

from .campaigns import Campaign
from .consent import ConsentRecord, page_url
from .guard import BotTrapped, CrossSiteRequest
from .metrics import Outcome
from .outbox import State
from .phone import normalise
from .problems import Problem, Refusal
from .resources import Resources
from .site import Listing
from .throttle import TooManyRequests
from .tokens import MAX_AGE_SECONDS, InvalidFormToken, UsedFormToken
from .upstream import GENERAL_BLOCK, GENERAL_OPT_OUT, OPTED_OUT, OptIn, Rejected
from .visit import Visit

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submission:
    """What the visitor sent."""

    phone: str
    token: str | None
    honeypot: str | None = None
    captcha: str | None = None


class Status(Enum):
    DELIVERED = "delivered"  # ProTexting has it: the text is on its way
    QUEUED = "queued"  # stored; ProTexting gets it shortly (slow, busy or paced)
    # Stored; ProTexting refused the business's set-up, not the number: it goes once the
    # set-up is fixed. Answered as QUEUED is: the person has nothing to put right.
    HELD = "held"
    REFUSED = "refused"  # nothing stored: `problems` say what the visitor can put right
    TRAPPED = "trapped"  # a bot trap caught it: answered as a signup, nothing stored


@dataclass(frozen=True, slots=True)
class Result:
    """How a submission ended, for the edge to render: the form and the JSON API each
    turn it into an answer in one place."""

    status: Status
    problems: tuple[Problem, ...] = ()
    # The number signed up (E.164 digits), for the thanks page to name it masked; None
    # when refused or trapped.
    phone: str | None = None


def optin_for(campaign: Campaign, phone: str) -> OptIn:
    return OptIn(
        phone=phone,
        group_ids=campaign.group_ids,
        cta_message=campaign.cta_message,
        confirm_message=campaign.confirm_message,
        send_cta_message=campaign.send_cta_message,
    )


async def sign_up(
    resources: Resources, visit: Visit, listing: Listing, submission: Submission, *, cross_origin: bool = False
) -> Result:
    """Check, record and deliver one signup to `listing`'s campaign.

    `cross_origin` lets the campaign's `api_origins` submit from their own pages (the
    JSON API); the form accepts only our own origin. What the visitor can put right
    (the number, the CAPTCHA, a stale or used token, ProTexting's refusal) is a
    REFUSED result (ProTexting's refusal only when it is about the number: one about
    the business's set-up is HELD, answered as queued); what refuses the request as a
    whole is raised: CrossSiteRequest,
    TooManyRequests, InvalidFormToken. The address limit is counted before, by
    `app.web.visits.CountSubmissions`.
    """
    tally = resources.metrics.tally
    src = visit.source.get("src", "")
    try:
        result = await _sign_up(resources, visit, listing, submission, cross_origin=cross_origin)
    except Refusal as refusal:
        result = Result(Status.REFUSED, (refusal.problem,))
    except BotTrapped:
        result = Result(Status.TRAPPED)
    except (CrossSiteRequest, InvalidFormToken, TooManyRequests) as refused:
        tally.submission(listing.key, _REFUSED_AS[type(refused)], src)
        raise
    tally.submission(listing.key, outcome_of(result), src)
    return result


_REFUSED_AS = {
    CrossSiteRequest: Outcome.CROSS_SITE,
    InvalidFormToken: Outcome.BAD_TOKEN,
    TooManyRequests: Outcome.RATE_LIMITED,
}
# A refusal's outcome, by the first part of its problem's code.
_PROBLEM_OUTCOMES = {
    "phone": Outcome.INVALID_NUMBER,
    "token": Outcome.BAD_TOKEN,
    "captcha": Outcome.CAPTCHA_FAILED,
    "fill": Outcome.TOO_FAST,
    "protexting": Outcome.REFUSED,
}


def outcome_of(result: Result) -> Outcome:
    """How the metrics count a result."""
    if result.status is Status.REFUSED:
        return _PROBLEM_OUTCOMES[result.problems[0].code.partition(".")[0]]
    return {
        Status.DELIVERED: Outcome.DELIVERED,
        Status.QUEUED: Outcome.QUEUED,
        Status.HELD: Outcome.HELD,
        Status.TRAPPED: Outcome.BOT_TRAPPED,
    }[result.status]


async def _sign_up(
    resources: Resources, visit: Visit, listing: Listing, submission: Submission, *, cross_origin: bool
) -> Result:
    guard = resources.guard
    campaign = listing.campaign
    guard.check_origin(visit, also=campaign.api_origins if cross_origin else ())
    await guard.admit(
        listing,
        token=submission.token,
        honeypot=submission.honeypot,
        captcha_answer=submission.captcha,
        client_ip=visit.client_ip,
    )
    phone = normalise(
        submission.phone,
        default_country=campaign.default_country,
        countries=campaign.countries,
        types=campaign.number_types,
    )
    await guard.number(listing, phone)
    # Only now is the token used up: a typo or a limit leaves it good for the next try.
    assert submission.token is not None  # the guard admitted it
    if not await guard.tokens.claim(submission.token, phone):
        return await _repeated(resources, campaign, phone)

    record = ConsentRecord(
        created_at=datetime.now(UTC),
        campaign=campaign.keyword,
        phone=phone,
        group_ids=campaign.group_ids,
        disclosure_sha256=listing.disclosure.sha256,
        page_url=page_url(resources.settings.public_url, campaign, visit.source),
        source=dict(visit.source),
        client_ip=visit.client_ip,
        user_agent=visit.user_agent,
        language=listing.language,
    )
    submitted = await resources.delivery.submit(record, optin_for(campaign, phone))
    if submitted.rejected is not None:
        return Result(Status.REFUSED, (_refused_by_protexting(submitted.rejected, campaign),))
    if submitted.state == State.HELD:
        return Result(Status.HELD, phone=phone)
    return Result(Status.QUEUED if submitted.waiting else Status.DELIVERED, phone=phone)


def _refused_by_protexting(rejected: Rejected, campaign: Campaign) -> Problem:
    """What to tell the person of ProTexting's refusal of their number, by its code:
    in our words (ProTexting's stay in the record). An opted-out number is told how to
    join again: by text, where the campaign says to what number."""
    codes = {error.code for error in rejected.number_errors}
    if codes & {OPTED_OUT, GENERAL_OPT_OUT}:
        text_to = campaign.text_to
        params = {"program": campaign.program_name}
        if text_to is not None:
            params |= {"keyword": text_to.keyword, "number": text_to.shown}
        return Problem("phone", "protexting.opted_out", params)
    if GENERAL_BLOCK in codes:
        return Problem("phone", "protexting.blocked", {"program": campaign.program_name})
    return Problem("phone", "protexting.number_refused")


async def _repeated(resources: Resources, campaign: Campaign, phone: str) -> Result:
    """What to answer the same token and number again (the button pressed twice): the
    answer the first got, as far as its stored signup tells, and nothing sent. When
    nothing is stored, or it was refused or failed (or the first is a moment from being
    stored), the form again: pressing once more signs up afresh, and the outbox's
    duplicate check keeps a second text from going."""
    window = timedelta(seconds=MAX_AGE_SECONDS)
    found = await resources.delivery.outbox.recent(campaign.keyword, phone, window=window)
    if found is None:
        raise UsedFormToken("form token already used; the first signup is not stored as sent")
    return Result(Status.DELIVERED if found[1] == State.DELIVERED else Status.QUEUED, phone=phone)
