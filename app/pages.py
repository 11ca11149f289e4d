"""The campaign pages: GET shows the signup form, POST signs a number up.

Post/Redirect/Get: a POST that fails validation (ours or ProTexting's) renders the
same form again with the typed value and the message beside the field, status 422;
a POST that succeeds answers 303 to the thanks page.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from .campaigns import Campaign
from .consent import ConsentRecord, client_ip, page_url, source_params, user_agent
from .phone import PhoneError, normalise
from .resources import Resources
from .storage import utcnow
from .upstream import OptIn

logger = logging.getLogger(__name__)

# First path segments the service keeps for itself; no campaign keyword may take one.
RESERVED_PATHS = frozenset(
    {"static", "api", "healthz", "favicon.ico", "robots.txt", "admin", "metrics", "qr", "embed", "stop", "opt-out", "_fake"}
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
    resources: Resources = request.app.state.resources
    # Source parameters ride along in the form's action, so the consent record knows
    # which poster or link the person came from.
    source = source_params(request.query_params.multi_items())
    context = {
        "campaign": campaign,
        "action": campaign.path + (f"?{urlencode(source)}" if source else ""),
        "disclosure": Markup(resources.disclosures[campaign.keyword.lower()].text),
        "phone": phone,
        "phone_error": phone_error,
        "form_errors": form_errors or [],
    }
    return templates.TemplateResponse(request, "signup.html", context, status_code=status_code)


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

    source = source_params(request.query_params.multi_items())
    settings = resources.settings
    record = ConsentRecord(
        created_at=utcnow(),
        campaign=campaign.keyword,
        phone=phone,
        group_ids=campaign.group_ids,
        disclosure_sha256=resources.disclosures[campaign.keyword.lower()].sha256,
        page_url=page_url(settings.public_url, campaign, source),
        source=source,
        client_ip=client_ip(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            settings.trusted_proxies,
        ),
        user_agent=user_agent(request.headers.get("user-agent")),
    )
    submitted = await resources.delivery.submit(record, optin_for(campaign, phone))
    if submitted.rejected is not None:
        return render_form(
            request,
            templates,
            campaign,
            phone=typed,
            phone_error=" ".join(submitted.rejected.phone_messages) or None,
            form_errors=submitted.rejected.form_messages,
            status_code=422,
        )
    # Delivered, or queued to be: either way the person is done here.
    thanks = f"{campaign.path}/thanks"
    if submitted.waiting:
        thanks += "?pending=1"
    return RedirectResponse(thanks, status_code=303)


def optin_for(campaign: Campaign, phone: str) -> OptIn:
    return OptIn(
        phone=phone,
        group_ids=campaign.group_ids,
        cta_message=campaign.cta_message,
        confirm_message=campaign.confirm_message,
        send_cta_message=campaign.send_cta_message,
    )


@router.get("/{keyword}/thanks")
async def thanks(request: Request, campaign: CampaignDep, templates: TemplatesDep) -> HTMLResponse:
    pending = request.query_params.get("pending") == "1"
    return templates.TemplateResponse(request, "thanks.html", {"campaign": campaign, "pending": pending})
