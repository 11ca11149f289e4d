"""The opt-out pages and their JSON twin: `app.optout.opt_out` at the edge.

    GET  /stop, /{keyword}/stop          the form: a phone field, what stops, a button
    POST /stop, /{keyword}/stop          record the opt-out; 303 to .../stop/done
    GET  /stop/done, /{keyword}/stop/done  what was stopped, and that one text may follow
    GET  /api/v1/opt-outs                the notice to show and a form token
    POST /api/v1/opt-outs                {"phone": "...", "token": "..."}: 202 once recorded

Post/Redirect/Get, as the signup form: a number that will not do comes back beside the
field (422), with the typed value. Every POST is counted against its address
(`app.web.visits.CountSubmissions`) and read within the body limit; the guard is a
signup's (`app.guard`). The pages are served to nobody's frame: the signup pages, the
embed's included, link to them in a tab of their own.
"""

from __future__ import annotations

import functools
from typing import Any

from babel.lists import format_list
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field

from ..campaigns import Campaign, CampaignNotFound
from ..consent import Disclosure
from ..guard import HONEYPOT_FIELD
from ..i18n import DEFAULT_LANGUAGE, translations
from ..optout import StopPage, number_rules, opt_out, page_key
from ..resources import Resources
from ..signup import Status, Submission
from ..site import Site
from ..tokens import ExpiredFormToken, InvalidFormToken
from .api import ApiErrors, Text, cors_for, preflight_answer
from .deps import ResourcesDep, SiteDep, TemplatesDep
from .errors import json_errors, refused_status
from .forms import read_form
from .languages import LANG_PARAM, request_language, words
from .messages import say
from .pages import TOKEN_FIELD
from .visits import visit_of

router = APIRouter(include_in_schema=False)
api_router = APIRouter(prefix="/api/v1", tags=["opt-outs"])

_HEADERS = {"cache-control": "no-store"}


def _senders(site: Site, language: str = DEFAULT_LANGUAGE) -> str:
    """Every program the account texts for, as the notice names them ("A, B and C")."""
    names = list(dict.fromkeys(campaign.program_name for campaign in site.campaigns))
    if not names:
        return str(translations(language).gettext("us"))
    return format_list(names, locale=language)


def _language(request: Request, site: Site, keyword: str | None) -> str:
    """The page's language, chosen as a signup page's is (app.web.languages): among
    the campaign's languages on /{keyword}/stop, among every campaign's on /stop."""
    listing = site.listing(keyword) if keyword is not None else None
    if listing is not None:
        campaign = listing.campaign
        return request_language(request, campaign.languages, campaign.default_language)
    offered = tuple(dict.fromkeys(lang for c in site.campaigns for lang in (c.default_language, *c.languages)))
    return request_language(request, offered or (DEFAULT_LANGUAGE,))


# Built once per site and page: the notice is rendered from the campaigns, which only a
# new Site (a reload) changes. The few most recent sites are kept.
@functools.lru_cache(maxsize=64)
def _page(site: Site, templates: Jinja2Templates, keyword: str | None, language: str = DEFAULT_LANGUAGE) -> StopPage:
    listing = site.listing(keyword) if keyword is not None else None
    if keyword is not None and listing is None:
        raise CampaignNotFound(keyword)
    campaign = listing.campaign if listing is not None else None
    shown = campaign.in_language(language) if campaign is not None and language in campaign.languages else campaign
    notice = templates.get_template("_opt_out_notice.html").render(
        campaign=shown, senders=_senders(site, language), **words(language)
    )
    default, countries, types = number_rules([campaign] if campaign is not None else site.campaigns)
    return StopPage(
        key=page_key(listing.key if listing is not None else None),
        path=(campaign.path if campaign is not None else "") + "/stop",
        campaign=campaign,
        notice=Disclosure.of(notice),
        language=language,
        default_country=default,
        countries=countries,
        number_types=types,
        api_origins=tuple(dict.fromkeys(origin for c in site.campaigns for origin in c.api_origins)),
    )


def _context(request: Request, page: StopPage) -> dict[str, object]:
    """What base.html reads: the campaign's look on its own /{keyword}/stop."""
    campaign: Campaign | None = page.campaign
    if campaign is None:
        return {"embed": False}
    listing = request.app.state.site.listing(campaign.keyword)
    return {"embed": False, "campaign": campaign, "brand": listing.brand if listing is not None else None}


def _form(
    request: Request,
    templates: Jinja2Templates,
    page: StopPage,
    resources: Resources,
    *,
    issued_at: float | None = None,
    phone: str = "",
    phone_error: str | None = None,
    form_errors: list[str] | None = None,
    status_code: int = 200,
    confirming: bool = False,
) -> HTMLResponse:
    """The form; again after an error, or to confirm one sent too fast (then with a
    confirming token of the first page view's time, as a signup's)."""
    query = request.url.query
    tokens = resources.guard.tokens
    if confirming and issued_at is not None:
        form_token = tokens.issue_confirming(page.key, issued_at=issued_at)
    else:
        form_token = tokens.issue(page.key, issued_at=issued_at)
    context = {
        **_context(request, page),
        **words(page.language),
        "action": page.path + (f"?{query}" if query else ""),
        "notice": Markup(page.notice.text),
        "form_token": form_token,
        "token_field": TOKEN_FIELD,
        "honeypot_field": HONEYPOT_FIELD,
        "phone": phone,
        "phone_error": phone_error,
        "form_errors": form_errors or [],
    }
    return templates.TemplateResponse(request, "stop.html", context, status_code=status_code, headers=_HEADERS)


async def _stop_form(
    request: Request, keyword: str | None, resources: Resources, templates: Jinja2Templates
) -> Response:
    site: Site = request.app.state.site
    page = _page(site, templates, keyword, _language(request, site, keyword))
    if request.method != "POST":
        return _form(request, templates, page, resources)
    form = await read_form(request, fields={"phone", TOKEN_FIELD, HONEYPOT_FIELD})
    typed = form.get("phone", "")
    token = form.get(TOKEN_FIELD)
    submission = Submission(phone=typed, token=token, honeypot=form.get(HONEYPOT_FIELD))
    result = await opt_out(resources, visit_of(request, resources.settings), page, submission)
    if result.status is Status.REFUSED:
        try:
            issued: float | None = resources.guard.tokens.check(token, page.key)
        except (InvalidFormToken, ExpiredFormToken):
            issued = None
        return _form(
            request,
            templates,
            page,
            resources,
            issued_at=issued,
            phone=typed,
            phone_error=" ".join(say(p, language=page.language) for p in result.problems if p.field == "phone") or None,
            form_errors=[say(p, language=page.language) for p in result.problems if p.field != "phone"],
            status_code=refused_status(result.problems),
            confirming=any(p.code == "fill.too_fast" for p in result.problems),
        )
    # Recorded, or a trapped bot answered exactly alike.
    done = page.path + "/done" + (f"?{LANG_PARAM}={page.language}" if LANG_PARAM in request.query_params else "")
    return RedirectResponse(done, status_code=303)


def _done(request: Request, keyword: str | None, templates: Jinja2Templates) -> HTMLResponse:
    site: Site = request.app.state.site
    page = _page(site, templates, keyword, _language(request, site, keyword))
    context = {**_context(request, page), **words(page.language), "senders": _senders(site, page.language)}
    return templates.TemplateResponse(request, "stopped.html", context, headers=_HEADERS)


@router.api_route("/stop", methods=["GET", "POST"])
async def stop(request: Request, resources: ResourcesDep, templates: TemplatesDep) -> Response:
    return await _stop_form(request, None, resources, templates)


@router.get("/stop/done")
async def stopped(request: Request, templates: TemplatesDep) -> HTMLResponse:
    return _done(request, None, templates)


@router.api_route("/{keyword}/stop", methods=["GET", "POST"])
async def campaign_stop(keyword: str, request: Request, resources: ResourcesDep, templates: TemplatesDep) -> Response:
    return await _stop_form(request, keyword, resources, templates)


@router.get("/{keyword}/stop/done")
async def campaign_stopped(keyword: str, request: Request, templates: TemplatesDep) -> HTMLResponse:
    return _done(request, keyword, templates)


# -- the JSON twin -------------------------------------------------------------------


class OptOutInfo(BaseModel):
    notice_html: str = Field(description="Show this, unchanged, above your button: the record points at it.")
    token: str = Field(description="Send back with the opt-out; valid for 24 hours and one number.")


class OptOutRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    phone: Text = Field(max_length=64, description="As the person typed it; national or international format.")
    token: Text = Field(max_length=512, description="From GET /api/v1/opt-outs.")
    website: Text | None = Field(default=None, max_length=1024, description="Leave out (a trap for bots).")


class OptOutResult(BaseModel):
    state: str = Field(description="pending: recorded; ProTexting is told shortly, before any signup waiting.")


@api_router.get("/opt-outs", response_model=OptOutInfo)
async def opt_out_info(
    request: Request, resources: ResourcesDep, site: SiteDep, templates: TemplatesDep
) -> JSONResponse:
    """What a custom opt-out form must show, and the token its POST must carry."""
    page = _page(site, templates, None)
    info = OptOutInfo(notice_html=page.notice.text, token=resources.guard.tokens.issue(page.key))
    return JSONResponse(info.model_dump(), headers={**_HEADERS, **cors_for(request, page.api_origins)})


@api_router.options("/opt-outs", include_in_schema=False)
async def opt_out_preflight(request: Request, site: SiteDep, templates: TemplatesDep) -> Response:
    return preflight_answer(cors_for(request, _page(site, templates, None).api_origins), methods="GET, POST")


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ApiErrors} for status in (400, 403, 409, 413, 415, 422, 429)
}


@api_router.post("/opt-outs", status_code=202, response_model=OptOutResult, responses=_ERRORS)
async def create_opt_out(
    request: Request, body: OptOutRequest, resources: ResourcesDep, site: SiteDep, templates: TemplatesDep
) -> JSONResponse:
    """Opt a number out of every text of the account: 202 once the revocation is
    recorded; ProTexting is told by the worker, before any signup waiting."""
    page = _page(site, templates, None)
    cors = cors_for(request, page.api_origins)
    submission = Submission(phone=body.phone, token=body.token, honeypot=body.website)
    result = await opt_out(resources, visit_of(request, resources.settings), page, submission, cross_origin=True)
    if result.status is Status.REFUSED:
        problems = [(p.field, say(p, api=True)) for p in result.problems]
        return json_errors(refused_status(result.problems), *problems, headers=cors)
    return JSONResponse({"state": "pending"}, status_code=202, headers=cors)
