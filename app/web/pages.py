"""The campaign pages: GET shows the signup form, POST signs a number up.

Post/Redirect/Get: a POST that fails validation (ours or ProTexting's) renders the
same form again with the typed value and the message beside the field, status 422;
a POST that succeeds answers 303 to the thanks page.

`GET`/`POST /{keyword}` is one Starlette route (`campaign_route`) to a raw ASGI
endpoint, declared by `app.main.create_app` after the others: it goes through every
middleware and error handler the app declares, and skips only FastAPI's per-route
work (request parsing, dependency injection), which it does not need.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import urlencode

import phonenumbers
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..branding import load_logo, stylesheet
from ..campaigns import KEYWORD_PATTERN, Campaign, CampaignNotFound
from ..consent import Disclosure, source_params
from ..guard import HONEYPOT_FIELD
from ..i18n import NAMES
from ..problems import Problem
from ..resources import Resources
from ..signup import Status, Submission, sign_up
from ..site import EMBED, PLAIN, VARIANTS, Brand, Listing, PageKey, PrerenderedPage, Site, source_query, variant_path
from ..throttle import TooManyRequests
from ..tokens import ExpiredFormToken, InvalidFormToken
from . import masked
from .deps import LocalizedListingDep, ResourcesDep, SiteDep, TemplatesDep
from .errors import refused_status
from .forms import MalformedForm, read_form
from .languages import LANG_PARAM, pick, request_language, words
from .messages import say
from .security import BodyLimit, campaign_headers, secured
from .visits import LIMITED, CountSubmissions, visit_of

logger = logging.getLogger(__name__)

# First path segments the service keeps for itself; no campaign keyword may take one.
RESERVED_PATHS = frozenset(
    {
        "static",
        "assets",
        "api",
        "healthz",
        "readyz",
        "favicon.ico",
        "robots.txt",
        "admin",
        "metrics",
        "qr",
        "embed",
        "stop",
        "opt-out",
        "_fake",
    }
)

TOKEN_FIELD = "form_token"
# Which disclosure the page showed (the start of its hash): a form sent from a page
# whose disclosure a reload has changed since is shown again, never recorded as
# consent to a text the person did not see.
DISCLOSURE_FIELD = "disclosure"


router = APIRouter(include_in_schema=False)


def _form_context(
    listing: Listing,
    *,
    variant: str,
    query: str,
    form_token: str,
    phone: str = "",
    phone_error: str | None = None,
    form_errors: list[str] | None = None,
) -> dict[str, object]:
    """Everything signup.html reads: the prerendered page and the form shown again
    after an error are rendered from the same context."""
    campaign = listing.campaign
    return {
        **_variant_context(listing, variant),
        "action": variant_path(campaign, variant) + query,
        "disclosure": Markup(listing.disclosure.text),
        "disclosure_field": DISCLOSURE_FIELD,
        "disclosure_id": listing.disclosure.sha256[:16],
        "form_token": form_token,
        "token_field": TOKEN_FIELD,
        "honeypot_field": HONEYPOT_FIELD,
        "captcha": campaign.captcha,
        # The page's language rides with the form: the signup is recorded in it.
        "lang_field": LANG_PARAM if len(listing.languages) > 1 else None,
        "phone": phone,
        "phone_error": phone_error,
        "form_errors": form_errors or [],
    }


def _variant_context(listing: Listing, variant: str) -> dict[str, object]:
    """What base.html reads: the campaign's look, and to tell the embed from the page:
    in the embed, the frame script (static/frame.js) and the origins it may tell its
    size and signups to."""
    embed = variant == EMBED
    campaign = listing.campaign
    return {
        **words(listing.language),
        **_languages_context(listing, variant_path(campaign, variant)),
        "campaign": campaign,
        "brand": listing.brand,
        "embed": embed,
        "parents": " ".join(campaign.frame_ancestors) if embed else "",
    }


def _languages_context(listing: Listing, path: str, query: str = "") -> dict[str, object]:
    """The page in its other languages: `alternates` (hreflang links, each language's
    address) and `switch` (the links a person follows, the other languages' names)."""
    if len(listing.languages) == 1:
        return {"alternates": [], "switch": []}
    sep = "&" if query else "?"
    addresses = {lang: f"{path}{query}{sep}{LANG_PARAM}={lang}" for lang in listing.languages}
    return {
        # x-default: the address without a choice, which Accept-Language decides.
        "alternates": [*addresses.items(), ("x-default", f"{path}{query}")],
        "switch": [(lang, NAMES[lang], href) for lang, href in addresses.items() if lang != listing.language],
    }


def render_form(
    request: Request,
    templates: Jinja2Templates,
    listing: Listing,
    *,
    variant: str = PLAIN,
    issued_at: float | None = None,
    phone: str = "",
    phone_error: str | None = None,
    form_errors: list[str] | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    confirming: bool = False,
) -> HTMLResponse:
    """The form again (after an error, or to confirm a submission sent too fast: then
    with a confirming token of the first page view's time)."""
    resources: Resources = request.app.state.resources
    campaign = listing.campaign
    tokens = resources.guard.tokens
    if confirming and issued_at is not None:
        form_token = tokens.issue_confirming(listing.key, issued_at=issued_at)
    else:
        form_token = tokens.issue(listing.key, issued_at=issued_at)
    context = _form_context(
        listing,
        variant=variant,
        query=source_query(request.query_params.multi_items()),
        form_token=form_token,
        phone=phone,
        phone_error=phone_error,
        form_errors=form_errors,
    )
    return templates.TemplateResponse(
        request,
        "signup.html",
        context,
        status_code=status_code,
        headers={**campaign_headers(campaign, embed=variant == EMBED, language=listing.language), **(headers or {})},
    )


@router.get("/healthz")
async def healthz() -> PlainTextResponse:
    return PlainTextResponse("ok")


# Search engines may read the signup pages (a person searching for the business finds
# its page); the API, the console, the metrics and the sandbox's fake are not pages.
ROBOTS_TXT = "User-agent: *\nDisallow: /api/\nDisallow: /admin\nDisallow: /metrics\nDisallow: /_fake\n"


@router.get("/robots.txt")
async def robots() -> PlainTextResponse:
    return PlainTextResponse(ROBOTS_TXT, headers={"cache-control": "public, max-age=86400"})


@router.get("/")
async def index(request: Request, resources: ResourcesDep, site: SiteDep, templates: TemplatesDep) -> Response:
    # The demo's front door: in sandbox mode list the campaigns; a live service has no
    # public directory of its campaigns.
    if not resources.sandbox:
        raise CampaignNotFound("")
    language = request_language(request)
    return templates.TemplateResponse(request, "index.html", {**words(language), "campaigns": list(site.campaigns)})


# The signup page is the hot path: a QR code on a stadium screen sends thousands of
# phones to it in a minute. So each campaign's page is rendered once, when its `Site`
# is built, around two markers, and each view only splices in the source parameters
# and a fresh token (`CampaignPage`), in raw ASGI: no Request object, no dependency
# injection, no template. Markers are noncharacters no template emits.
_QUERY_MARK = "\ufdd0"
_TOKEN_MARK = "\ufdd1"


def prerender(templates: Jinja2Templates, listing: Listing, variant: str = PLAIN) -> PrerenderedPage:
    campaign = listing.campaign
    context = _form_context(listing, variant=variant, query=_QUERY_MARK, form_token=_TOKEN_MARK)
    html = templates.get_template("signup.html").render(context)
    head, rest = html.split(_QUERY_MARK)
    middle, tail = rest.split(_TOKEN_MARK)
    headers = {
        **campaign_headers(campaign, embed=variant == EMBED, language=listing.language),
        "content-type": "text/html; charset=utf-8",
    }
    raw = secured(
        headers["content-security-policy"], {k: v for k, v in headers.items() if k != "content-security-policy"}
    )
    return PrerenderedPage(listing.key, head.encode(), middle.encode(), tail.encode(), headers, raw)


def disclosures(templates: Jinja2Templates, campaign: Campaign) -> Iterator[tuple[Campaign, Disclosure, str]]:
    """The campaign in each of its languages, with the disclosure its page shows in it:
    what `build_site` lists, and what `optin purge` must keep."""
    template = templates.get_template("_disclosure.html")
    for language in campaign.languages:
        shown = campaign.in_language(language)
        yield shown, Disclosure.of(template.render(campaign=shown, **words(language))), language


def build_site(templates: Jinja2Templates, campaigns: Mapping[str, Campaign]) -> Site:
    """The `Site` of a loaded campaigns file: each campaign's disclosure and pages in
    each of its languages, rendered with `templates` (whose globals, such as
    `sandbox`, are set already)."""
    listings = []
    for campaign in campaigns.values():
        brand = _brand(campaign)
        for shown, disclosure, language in disclosures(templates, campaign):
            listings.append(Listing(shown, disclosure, brand, language))
    pages = {
        PageKey(item.campaign.keyword, variant, item.language): prerender(templates, item, variant)
        for item in listings
        for variant in VARIANTS
    }
    return Site(listings, pages)


def _brand(campaign: Campaign) -> Brand:
    return Brand(
        logo=load_logo(Path(campaign.logo)) if campaign.logo else None,
        stylesheet=stylesheet(campaign.accent_color) if campaign.accent_color else None,
    )


@router.get("/assets/{name}")
async def brand_asset(name: str, site: SiteDep) -> Response:
    """A campaign's logo or stylesheet: its URL names its content, so it is kept a year."""
    found = site.asset(name)
    if found is None:
        raise HTTPException(404)
    headers = {"cache-control": "public, max-age=31536000, immutable", "etag": f'"{found.name}"'}
    return Response(found.body, media_type=found.content_type, headers=headers)


class CampaignPage:
    """The ASGI endpoint of `/{keyword}` (and, for the `embed` variant, of
    `/embed/{keyword}`): GET answers the prerendered page (see above), POST signs up.
    An unknown keyword raises CampaignNotFound, which the app's handler answers with
    the 404 page."""

    def __init__(self, variant: str = PLAIN) -> None:
        self.variant = variant
        # Every submission is counted against its address, then read within the body
        # limit, as the FastAPI part's are (app.main): only a POST passes them, since a
        # page view has neither a body nor a count.
        self._submission = CountSubmissions(BodyLimit(self._sign_up))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST":
            await self._submission(scope, receive, send)
            return
        state = scope["app"].state
        site: Site = state.site
        keyword: str = scope["path_params"]["keyword"]
        resources: Resources = state.resources
        pages = site.pages(keyword, self.variant)
        if pages is None:
            raise CampaignNotFound(keyword)
        # One language: nothing to choose (no header read). Several: app.web.languages.
        query: bytes = scope["query_string"]
        page = pick(pages, query, scope["headers"]) if pages.multilingual else pages.default
        resources.metrics.tally.view(page.key, query)
        body = page.body(query_string=query, token=resources.guard.tokens.issue(page.key))
        headers = [*page.raw_headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _sign_up(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        keyword: str = scope["path_params"]["keyword"]
        listing = state.site.listing(keyword)
        if listing is None:
            raise CampaignNotFound(keyword)
        response = await signup(
            Request(scope, receive),
            listing,
            resources=state.resources,
            templates=state.templates,
            variant=self.variant,
            site=state.site,
        )
        await response(scope, receive, send)


class _Keyword(Convertor[str]):
    """A path segment that could be a campaign's keyword: the keyword grammar, and none
    of the paths the service keeps for itself. So `/{keyword}` can be the app's first
    route, and a page view is matched at the first try of the router."""

    regex = "(?!(?:" + "|".join(re.escape(path) for path in sorted(RESERVED_PATHS)) + ")$)" + KEYWORD_PATTERN

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("campaign_keyword", _Keyword())


def campaign_route() -> Route:
    """`/{keyword}`, for the app to declare before its other routes (see `_Keyword`)."""
    return Route("/{keyword:campaign_keyword}", CampaignPage(), methods=["GET", "POST"], include_in_schema=False)


def embed_route() -> Route:
    """`/embed/{keyword}`: the same page's form alone, for an iframe."""
    return Route(
        "/embed/{keyword:campaign_keyword}", CampaignPage(EMBED), methods=["GET", "POST"], include_in_schema=False
    )


def without_trailing_slash(routes: Sequence[BaseRoute]) -> ASGIApp:
    """The answer to a path none of `routes` matches: a redirect to the same path
    without its trailing slash when one of them matches that (`/join/` to `/join`),
    else 404.

    It stands in for Starlette's `redirect_slashes`, which builds the Location from the
    request's Host header: anyone can send `Host: evil.example`, and a shared cache
    would keep the redirect for everyone. Ours starts from OPTIN_PUBLIC_URL."""

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        trimmed = "/" + path.strip("/")
        if scope["type"] == "http" and path.endswith("/") and trimmed != "/":
            target = {**scope, "path": trimmed}
            if any(route.matches(target)[0] is not Match.NONE for route in routes):
                resources: Resources | None = getattr(scope["app"].state, "resources", None)
                location = (resources.settings.public_url if resources is not None else "") + trimmed
                if scope["query_string"]:
                    location += "?" + scope["query_string"].decode("latin-1")
                response = RedirectResponse(location, status_code=307, headers={"cache-control": "no-store"})
                await response(scope, receive, send)
                return
        raise HTTPException(404)

    return default


async def signup(
    request: Request,
    listing: Listing,
    *,
    resources: Resources,
    templates: Jinja2Templates,
    variant: str = PLAIN,
    site: Site | None = None,
) -> Response:
    """POST /{keyword}: the form's signup (see the module's docstring), in the language
    of the page it was sent from (the form's `lang`)."""
    captcha_field = listing.campaign.captcha.kind.response_field if listing.campaign.captcha else None
    over = request.scope.get("state", {}).get(LIMITED)  # the address's count (CountSubmissions)
    try:
        form = await read_form(
            request,
            fields={"phone", TOKEN_FIELD, HONEYPOT_FIELD, LANG_PARAM, DISCLOSURE_FIELD, captcha_field or "phone"},
        )
    except MalformedForm:
        if over is None:
            raise
        form = {}  # over the limit all the same: the 429, with nothing to keep
    language = form.get(LANG_PARAM) or request.query_params.get(LANG_PARAM)
    if site is not None and language is not None:
        listing = site.listing(listing.campaign.keyword, language) or listing
    campaign = listing.campaign
    typed = form.get("phone", "")
    token = form.get(TOKEN_FIELD)
    submission = Submission(
        phone=typed,
        token=token,
        honeypot=form.get(HONEYPOT_FIELD),
        captcha=form.get(captcha_field) if captcha_field else None,
    )

    def again(
        status_code: int,
        *,
        phone_error: str | None = None,
        form_errors: list[str] | None = None,
        headers: Mapping[str, str] | None = None,
        confirming: bool = False,
    ) -> HTMLResponse:
        # The same form, the typed number kept, the first page view's time kept.
        issued = _issued_at(resources, token, listing)
        return render_form(
            request,
            templates,
            listing,
            variant=variant,
            issued_at=issued,
            phone=typed,
            status_code=status_code,
            phone_error=phone_error,
            form_errors=form_errors,
            headers=headers,
            confirming=confirming,
        )

    def limited(exc: TooManyRequests) -> HTMLResponse:
        # The form again with the number in it, and how long to wait: not a dead end.
        logger.info("limit %s reached on %s", exc.scope, request.url.path)
        problem = exc.problem
        message = say(problem, language=listing.language)
        if problem.field == "phone":
            return again(429, phone_error=message, headers={"retry-after": str(exc.retry_after)})
        return again(429, form_errors=[message], headers={"retry-after": str(exc.retry_after)})

    if isinstance(over, TooManyRequests):
        return limited(over)
    shown = form.get(DISCLOSURE_FIELD)
    if shown is not None and shown != listing.disclosure.sha256[:16]:
        # The campaigns file was reloaded while the page was open, and what it tells
        # the person changed: they consent to the text they read, so they read it first.
        logger.info("a form of %s sent from a page whose disclosure changed since: shown again", campaign.keyword)
        return again(200, form_errors=[say(Problem(None, "page.changed"), language=listing.language)])
    try:
        result = await sign_up(resources, visit_of(request, resources.settings), listing, submission)
    except TooManyRequests as exc:
        return limited(exc)
    if result.status is Status.REFUSED:
        phone = [say(p, language=listing.language) for p in result.problems if p.field == "phone"]
        # Sent too fast: the same form, status 200 (nothing in it is wrong), asking for
        # one more press; its token marks that press as the second (app.guard).
        return again(
            refused_status(result.problems),
            phone_error=" ".join(phone) or None,
            form_errors=[say(p, language=listing.language) for p in result.problems if p.field != "phone"],
            confirming=any(p.code == "fill.too_fast" for p in result.problems),
        )
    # Delivered, or queued to be: either way the person is done here. A trapped bot
    # gets exactly what a person gets.
    # The thanks page keeps the page's source parameters (for its "Start again" link)
    # and names the number, masked (app.web.masked), in the page's language.
    query = source_params(request.query_params.multi_items())
    if result.status in (Status.QUEUED, Status.HELD):
        query["pending"] = "1"
    to = masked.tag(result.phone or _typed_digits(typed, campaign), key=resources.settings.signing_key())
    if to is not None:
        query[masked.QUERY_NAME] = to
    if len(listing.languages) > 1:
        query[LANG_PARAM] = listing.language
    thanks = f"{variant_path(campaign, variant)}/thanks" + (f"?{urlencode(query)}" if query else "")
    return RedirectResponse(thanks, status_code=303)


def _typed_digits(typed: str, campaign: Campaign) -> str:
    """The typed number's digits, country code first as far as the campaign's default
    country tells: what a trapped bot's thanks page names, as a person's would."""
    digits = "".join(c for c in typed if c.isascii() and c.isdigit())
    if typed.strip().startswith("+"):
        return digits
    return str(phonenumbers.country_code_for_region(campaign.default_country)) + digits


def _issued_at(resources: Resources, token: str | None, listing: Listing) -> float | None:
    try:
        return resources.guard.tokens.check(token, listing.key)
    except (InvalidFormToken, ExpiredFormToken):
        return None


@router.get("/{keyword}/thanks")
async def thanks(request: Request, listing: LocalizedListingDep, templates: TemplatesDep) -> HTMLResponse:
    return _thanks(request, listing, templates, PLAIN)


@router.get("/embed/{keyword}/thanks")
async def embed_thanks(request: Request, listing: LocalizedListingDep, templates: TemplatesDep) -> HTMLResponse:
    """The thanks page inside the frame: it tells the host page of the signup."""
    return _thanks(request, listing, templates, EMBED)


def _thanks(request: Request, listing: Listing, templates: Jinja2Templates, variant: str) -> HTMLResponse:
    campaign = listing.campaign
    resources: Resources = request.app.state.resources
    query = request.query_params
    pending = query.get("pending") == "1"
    # "Wrong number? Start again": the same page, from the same poster or link, in the same language.
    again = variant_path(campaign, variant) + source_query(query.multi_items())
    if len(listing.languages) > 1:
        again += ("&" if "?" in again else "?") + f"{LANG_PARAM}={listing.language}"
    kept = [(name, value) for name, value in query.multi_items() if name != LANG_PARAM]
    context = {
        **_variant_context(listing, variant),
        **_languages_context(
            listing, f"{variant_path(campaign, variant)}/thanks", f"?{urlencode(kept)}" if kept else ""
        ),
        "pending": pending,
        "number": masked.shown(query.get(masked.QUERY_NAME), key=resources.settings.signing_key()),
        "again": again,
    }
    if variant == EMBED:
        context["signup_state"] = "pending" if pending else "delivered"
    return templates.TemplateResponse(
        request,
        "thanks.html",
        context,
        headers=campaign_headers(campaign, embed=variant == EMBED, language=listing.language),
    )
