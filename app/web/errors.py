"""The edge: domain errors become HTTP answers here and nowhere else.

Each error class maps to a status and a message written for the person who will read
it. Under /api/ the answer is JSON (`{"errors": [...]}`); elsewhere it is a page in
the site's own look, embeddable wherever the campaign's pages are.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..campaigns import Campaign, CampaignNotFound
from ..guard import CrossSiteRequest
from ..i18n import N_, translations
from ..problems import Problem
from ..resources import Resources
from ..site import EMBED, PLAIN, Site, variant_path
from ..throttle import TooManyRequests
from ..tokens import InvalidFormToken
from .forms import MalformedForm
from .languages import LANG_PARAM, request_language, words
from .messages import say
from .security import campaign_headers

logger = logging.getLogger(__name__)

# Each status's heading and words, in English: the msgids of the catalogs.
_PAGES: dict[int, tuple[str, str]] = {
    400: (N_("Something was wrong with that request"), N_("Please go back, reload the page and try again.")),
    401: (N_("Credentials needed"), N_("This address answers only with the right credentials.")),
    403: (
        N_("This form can't be sent from here"),
        N_(
            "For your safety we only accept signups made on our own page. Please open the signup page itself and try again."
        ),
    ),
    404: (
        N_("Page not found"),
        N_("There is no signup page at this address. Check the link or the keyword on the poster."),
    ),
    405: (N_("Not allowed"), N_("That page can't be used that way.")),
    413: (
        N_("Too much data"),
        N_("That request was far larger than a signup form. Please reload the page and try again."),
    ),
    415: (N_("Unexpected data"), N_("Please use the signup form on the page.")),
    429: (
        N_("Please wait a little"),
        N_("We've had a lot of signups from here in a short time. Please try again in a few minutes."),
    ),
    500: (
        N_("Something went wrong on our side"),
        N_("Your signup was not saved and no text was sent. Please try again in a minute."),
    ),
    503: (
        N_("We can't take signups this minute"),
        N_("Your signup was not saved and no text was sent. Please try again in a minute."),
    ),
}


def _formatted(message: str, params: Mapping[str, str] | None) -> str:
    return message % params if params else message


def json_errors(
    status: int, *problems: tuple[str | None, str], headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON API's error answer, `{"errors": [{"field": ..., "message": ...}]}`: made
    here for every error the API gives."""
    body = {"errors": [{"field": field, "message": message} for field, message in problems]}
    return JSONResponse(body, status_code=status, headers=headers)


def refused_status(problems: Sequence[Problem]) -> int:
    """The status of a refused submission: 400 for a form open too long, 409 for a
    spent token (the form was fine; the fresh token confirms), 200 for a form sent too
    fast (nothing is wrong with it: the page asks to confirm), else 422."""
    codes = {p.code for p in problems}
    if "fill.too_fast" in codes:
        return 200
    return 400 if "token.expired" in codes else 409 if codes & {"token.used", "token.used_stop"} else 422


def _way_back(request: Request, site: Site) -> dict[str, object]:
    """Where an error page links back to: the campaign's page (in the frame, its embed)
    when the address names a campaign, or the only campaign there is; in sandbox mode the
    list of signup pages. A live service lists no campaigns, so otherwise none."""
    segments = request.url.path.strip("/").split("/")
    embedded = segments[0] == EMBED and len(segments) > 1
    keyword = request.path_params.get("keyword") or segments[1 if embedded else 0]
    campaign = site.campaign(keyword) if keyword else None
    if campaign is None and len(site.campaigns) == 1:
        (campaign,) = site.campaigns
    if campaign is not None:
        return {"back_href": variant_path(campaign, EMBED if embedded else PLAIN), "back_campaign": campaign}
    resources: Resources | None = getattr(request.app.state, "resources", None)
    return {"back_href": "/"} if resources is not None and resources.sandbox else {}


def _localized(way_back: dict[str, object], site: Site, language: str) -> dict[str, object]:
    """The way back in the page's language: the campaign's words in it, and its page in it."""
    campaign = way_back.get("back_campaign")
    if not isinstance(campaign, Campaign) or len(campaign.languages) == 1:
        return way_back
    listing = site.listing(campaign.keyword, language)
    shown = listing.campaign if listing is not None else campaign
    return way_back | {"back_campaign": shown, "back_href": f"{way_back['back_href']}?{LANG_PARAM}={language}"}


def install_error_handlers(app: Starlette, templates: Jinja2Templates) -> None:
    def answer(
        request: Request,
        status: int,
        detail: str | None = None,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        problem: Problem | None = None,
    ) -> Response:
        """The error's page (JSON under /api/), in the visitor's language: `problem`'s
        words, or `detail` (a msgid formatted with `params`), in place of the status's own."""
        heading, message = _PAGES.get(status, _PAGES[400])
        if request.url.path.startswith("/api/"):
            shown = say(problem, api=True) if problem is not None else _formatted(detail or message, params)
            return json_errors(status, (field, shown), headers=headers)
        headers = dict(headers or {})
        keyword = request.path_params.get("keyword")
        site: Site | None = getattr(request.app.state, "site", None)
        campaign = site.campaign(keyword) if keyword and site is not None else None
        if campaign is not None:
            # Shown inside the campaign's iframe too: the campaign's own CSP applies.
            language = request_language(request, campaign.languages)
            headers |= campaign_headers(campaign, language=language)
        else:
            language = request_language(request)
            headers["content-language"] = language
        _ = translations(language).gettext
        shown = say(problem, language=language) if problem is not None else _formatted(_(detail or message), params)
        context: dict[str, object] = {**words(language), "heading": _(heading), "detail": shown}
        if site is not None:
            context |= _localized(_way_back(request, site), site, language)
        return templates.TemplateResponse(request, "message.html", context, status_code=status, headers=headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if isinstance(exc.__cause__, ClientDisconnect):
            return await client_gone(request, exc.__cause__)  # FastAPI's 400 around the JSON body
        return answer(request, exc.status_code, headers=dict(exc.headers or {}))

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client closed the connection before the body was all sent (a phone
        # losing signal, a bot): nothing was read, so nothing was stored. Not our
        # error, and there is nobody left to answer; the server drops this response.
        logger.info("client hung up during %s %s", request.method, request.url.path)
        return Response(status_code=400)

    async def not_found(request: Request, exc: Exception) -> Response:
        return answer(request, 404, "No campaign has this keyword." if request.url.path.startswith("/api/") else None)

    async def form_rejected(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, MalformedForm)
        return answer(
            request,
            exc.status_code,
            N_("We couldn't read that form (%(reason)s). Please reload the page and try again."),
            params={"reason": exc.message},
        )

    async def cross_site(request: Request, exc: Exception) -> Response:
        logger.info("refused %s %s: %s", request.method, request.url.path, exc)
        if request.url.path.startswith("/api/"):
            return answer(
                request, 403, "Cross-origin request from an origin this campaign's api_origins does not list."
            )
        return answer(request, 403)

    async def bad_token(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith("/api/"):
            return answer(
                request, 403, "Missing or invalid token: fetch one from GET /api/v1/campaigns/{keyword}.", field="token"
            )
        return answer(
            request,
            400,
            N_("This form has expired or was not sent from our page. Please reload the page and try again."),
        )

    async def too_many(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TooManyRequests)
        logger.info("limit %s reached on %s", exc.scope, request.url.path)
        return answer(request, 429, problem=exc.problem, headers={"retry-after": str(exc.retry_after)})

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = list(exc.errors())
        if any(p.get("type") == "json_invalid" for p in problems):
            return json_errors(400, (None, "The body is not valid JSON."))
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return json_errors(415, (None, "Send the body as application/json."))
        fields = [".".join(str(part) for part in p.get("loc", ()) if part != "body") or None for p in problems]
        return json_errors(
            422, *((field, str(p.get("msg", "invalid"))) for field, p in zip(fields, problems, strict=True))
        )

    async def storage_down(request: Request, exc: Exception) -> Response:
        # The database is unreachable or refused the write: nothing was stored, so say
        # so plainly and ask for a retry rather than show a bare 500.
        logger.error("storage unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return answer(request, 503, headers={"retry-after": "30"})

    async def server_error(request: Request, exc: Exception) -> Response:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return answer(request, 500)

    app.add_exception_handler(SQLAlchemyError, storage_down)
    # TimeoutError is an OSError: what a PostgreSQL that stops answering ends in
    # (app.storage.create_engine).
    app.add_exception_handler(OSError, storage_down)
    app.add_exception_handler(Exception, server_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(CampaignNotFound, not_found)
    app.add_exception_handler(MalformedForm, form_rejected)
    app.add_exception_handler(CrossSiteRequest, cross_site)
    app.add_exception_handler(InvalidFormToken, bad_token)
    app.add_exception_handler(TooManyRequests, too_many)
    app.add_exception_handler(RequestValidationError, invalid_request)
