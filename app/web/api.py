"""The JSON API: the same signup as the form, for a business's own front end.

    GET  /api/v1/campaigns/{keyword}           the disclosure to show and a form token
    POST /api/v1/campaigns/{keyword}/opt-ins   {"phone": "...", "token": "..."}

It is exactly as guarded as the form (`app.signup.sign_up` runs the same checks): the
token, the honeypot and minimum fill time, the limits, the number policy, the CAPTCHA,
and the origin check, here with a per-campaign CORS allow-list (`api_origins`). An
opt-in sent sooner than the fill time after its token was issued is answered 429 with
Retry-After (the form asks a person to confirm instead): the same request then passes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from ..campaigns import Campaign
from ..signup import Status, Submission, sign_up
from .deps import CampaignDep, ListingDep, ResourcesDep
from .errors import json_errors, refused_status
from .messages import say
from .security import request_origin
from .visits import visit_of

router = APIRouter(prefix="/api/v1", tags=["opt-ins"])


class ApiError(BaseModel):
    field: str | None = Field(description="The request field at fault; null for the request as a whole.")
    message: str


class ApiErrors(BaseModel):
    errors: list[ApiError]


class CaptchaInfo(BaseModel):
    provider: Literal["turnstile", "hcaptcha"]
    site_key: str


class CampaignInfo(BaseModel):
    keyword: str
    title: str
    description: str
    program_name: str
    message_frequency: str
    terms_url: str
    privacy_url: str
    disclosure_html: str = Field(description="Show this, unchanged, above your submit button.")
    token: str = Field(description="Send back with the opt-in; valid for 24 hours and one signup.")
    captcha: CaptchaInfo | None


def _no_nul(value: str) -> str:
    # As the form refuses it (app.forms): no field of a signup has a use for a NUL, and
    # a number parser that skips it would store "201 555 0123\x00" as a good number.
    if "\x00" in value:
        raise PydanticCustomError("nul_byte", "must not contain a NUL byte")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]


class OptInRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phone: Text = Field(max_length=64, description="As the person typed it; national or international format.")
    token: Text = Field(max_length=512, description="From GET /api/v1/campaigns/{keyword}.")
    website: Text | None = Field(default=None, max_length=1024, description="Leave out (a trap for bots).")
    captcha: Text | None = Field(
        default=None, max_length=4096, description="The CAPTCHA widget's answer, when the campaign has one."
    )


class OptInResult(BaseModel):
    state: Literal["delivered", "pending"] = Field(
        description="delivered: ProTexting is texting the number; pending: it will shortly."
    )


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiErrors, "description": "Malformed JSON, or a token too old (fetch a new one)."},
    403: {
        "model": ApiErrors,
        "description": "Cross-site request from an origin not allowed, or a missing or forged token.",
    },
    404: {"model": ApiErrors, "description": "No campaign has this keyword."},
    413: {"model": ApiErrors, "description": "Body too large."},
    409: {"model": ApiErrors, "description": "The token signed up another number already (fetch a new one)."},
    415: {"model": ApiErrors, "description": "Send application/json."},
    422: {"model": ApiErrors, "description": "The number is not usable, or ProTexting refused it."},
    429: {
        "model": ApiErrors,
        "description": "Too many signups; or sent sooner than OPTIN_MIN_FILL_SECONDS after the token was "
        "issued (field token: send the same request again then). See Retry-After.",
    },
}


def cors_headers(request: Request, campaign: Campaign) -> dict[str, str]:
    origin = request_origin(request)
    allowed = campaign.api_origins
    if origin is None or not (origin in allowed or "*" in allowed):
        return {}
    return {"access-control-allow-origin": origin, "vary": "Origin"}


@router.get("/campaigns/{keyword}", response_model=CampaignInfo, responses={404: _ERRORS[404]})
async def campaign_info(request: Request, listing: ListingDep, resources: ResourcesDep) -> JSONResponse:
    """What a custom form must show, and the token its opt-in must carry."""
    campaign = listing.campaign
    info = CampaignInfo(
        keyword=campaign.keyword,
        title=campaign.title,
        description=campaign.description,
        program_name=campaign.program_name,
        message_frequency=campaign.message_frequency,
        terms_url=campaign.terms_url,
        privacy_url=campaign.privacy_url,
        disclosure_html=listing.disclosure.text,
        token=resources.guard.tokens.issue(listing.key),
        captcha=CaptchaInfo(provider=campaign.captcha.provider, site_key=campaign.captcha.site_key)
        if campaign.captcha
        else None,
    )
    headers = {"cache-control": "no-store", **cors_headers(request, campaign)}
    return JSONResponse(info.model_dump(), headers=headers)


@router.options("/campaigns/{keyword}/opt-ins", include_in_schema=False)
async def preflight(request: Request, campaign: CampaignDep) -> Response:
    headers = cors_headers(request, campaign)
    if not headers:
        return Response(status_code=403)
    headers |= {
        "access-control-allow-methods": "POST",
        "access-control-allow-headers": "content-type",
        "access-control-max-age": "600",
    }
    return Response(status_code=204, headers=headers)


@router.post(
    "/campaigns/{keyword}/opt-ins",
    status_code=201,
    response_model=OptInResult,
    responses={202: {"model": OptInResult, "description": "Accepted; the text follows shortly."}, **_ERRORS},
)
async def opt_in(request: Request, body: OptInRequest, listing: ListingDep, resources: ResourcesDep) -> JSONResponse:
    """Sign a number up to the campaign: 201 when ProTexting has accepted it, 202 when it
    is queued (ProTexting slow or busy); either way the person gets a text."""
    cors = cors_headers(request, listing.campaign)
    submission = Submission(phone=body.phone, token=body.token, honeypot=body.website, captcha=body.captcha)
    result = await sign_up(resources, visit_of(request, resources.settings), listing, submission, cross_origin=True)
    if result.status is Status.REFUSED:
        problems = [(p.field, say(p, api=True)) for p in result.problems]
        too_fast = next((p for p in result.problems if p.code == "fill.too_fast"), None)
        if too_fast is not None:
            # No person to ask here: the client is told when the same request will do.
            retry = {"retry-after": str(too_fast.params["retry_after"])}
            return json_errors(429, *problems, headers={**cors, **retry})
        return json_errors(refused_status(result.problems), *problems, headers=cors)
    if result.status is Status.DELIVERED:
        return JSONResponse({"state": "delivered"}, status_code=201, headers=cors)
    # Queued, or held (ProTexting refused the business's set-up, not the number); or
    # trapped: each answered like a signup that is queued.
    return JSONResponse({"state": "pending"}, status_code=202, headers=cors)
