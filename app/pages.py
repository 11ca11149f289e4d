"""The campaign pages: GET shows the signup form, POST signs a number up.

Post/Redirect/Get: a POST that fails validation (ours or ProTexting's) renders the
same form again with the typed value and the message beside the field, status 422;
a POST that succeeds answers 303 to the thanks page.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from .campaigns import Campaign
from .phone import PhoneError, normalise
from .resources import Resources
from .upstream import Accepted, OptIn, Rejected, Unavailable

logger = logging.getLogger(__name__)

# First path segments the service keeps for itself; no campaign keyword may take one.
RESERVED_PATHS = frozenset(
    {"static", "api", "healthz", "favicon.ico", "robots.txt", "admin", "metrics", "qr", "embed", "stop", "opt-out", "_fake"}
)

UNAVAILABLE_MESSAGE = (
    "We couldn't reach our texting service just now, so you are not signed up yet. "
    "Nothing was sent. Please try again in a few minutes."
)


class CampaignNotFound(Exception):
    """No campaign has this keyword."""


def _resources(request: Request) -> Resources:
    return request.app.state.resources


def _templates(request: Request) -> Jinja2Templates:
    return request.app.state.templates


def _campaign(keyword: str, resources: Annotated[Resources, Depends(_resources)]) -> Campaign:
    campaign = resources.campaigns.get(keyword.lower())
    if campaign is None:
        raise CampaignNotFound(keyword)
    return campaign


ResourcesDep = Annotated[Resources, Depends(_resources)]
TemplatesDep = Annotated[Jinja2Templates, Depends(_templates)]
CampaignDep = Annotated[Campaign, Depends(_campaign)]

router = APIRouter(include_in_schema=False)


def render_form(
    request: Request,
    templates: Jinja2Templates,
    campaign: Campaign,
    *,
    phone: str = "",
    phone_error: str | None = None,
    form_errors: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "signup.html",
        {"campaign": campaign, "phone": phone, "phone_error": phone_error, "form_errors": form_errors or []},
        status_code=status_code,
    )


@router.get("/healthz")
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")


@router.get("/")
async def index(request: Request, resources: ResourcesDep, templates: TemplatesDep) -> Response:
    # The demo's front door: in sandbox mode list the campaigns; a live service has no
    # public directory of its campaigns.
    if not resources.sandbox:
        raise CampaignNotFound("")
    return templates.TemplateResponse(request, "index.html", {"campaigns": list(resources.campaigns.values())})


@router.get("/{keyword}")
async def signup_page(request: Request, campaign: CampaignDep, templates: TemplatesDep) -> HTMLResponse:
    return render_form(request, templates, campaign)


@router.post("/{keyword}")
async def signup(
    request: Request, campaign: CampaignDep, resources: ResourcesDep, templates: TemplatesDep
) -> Response:
    form = await request.form()
    typed = form.get("phone")
    typed = typed if isinstance(typed, str) else ""

    try:
        phone = normalise(typed, default_country=campaign.default_country, countries=campaign.countries)
    except PhoneError as exc:
        return render_form(request, templates, campaign, phone=typed, phone_error=exc.message, status_code=422)

    outcome = await resources.protexting.opt_in(
        OptIn(
            phone=phone,
            group_ids=campaign.group_ids,
            cta_message=campaign.cta_message,
            confirm_message=campaign.confirm_message,
            send_cta_message=campaign.send_cta_message,
        )
    )
    match outcome:
        case Accepted():
            return RedirectResponse(f"{campaign.path}/thanks", status_code=303)
        case Rejected():
            phone_error = " ".join(outcome.phone_messages) or None
            return render_form(
                request,
                templates,
                campaign,
                phone=typed,
                phone_error=phone_error,
                form_errors=outcome.form_messages,
                status_code=422,
            )
        case Unavailable():
            # Seam for durable delivery: this is where a signup will be queued instead.
            log = logger.error if outcome.unauthorized else logger.warning
            log("ProTexting unavailable for campaign %s: %s", campaign.keyword, outcome.reason)
            return render_form(request, templates, campaign, phone=typed, form_errors=[UNAVAILABLE_MESSAGE])


@router.get("/{keyword}/thanks")
async def thanks(request: Request, campaign: CampaignDep, templates: TemplatesDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "thanks.html", {"campaign": campaign})
