"""The campaign pages: GET shows the signup form, POST signs a number up.

Post/Redirect/Get: a POST that fails validation (ours or ProTexting's) renders the
same form again with the typed value and the message beside the field, status 422;
a POST that succeeds answers 303 to the thanks page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

from .campaigns import Campaign, CampaignNotFound
from .captcha import CaptchaFailed
from .consent import source_params
from .deps import CampaignDep, ResourcesDep, TemplatesDep
from .forms import read_form
from .guard import HONEYPOT_FIELD, BotTrapped
from .phone import PhoneError
from .resources import Resources
from .security import FIXED_HEADERS, page_csp
from .signup import Attempt, RepeatedSignup, sign_up
from .tokens import ExpiredFormToken, InvalidFormToken, UsedFormToken

logger = logging.getLogger(__name__)

# First path segments the service keeps for itself; no campaign keyword may take one.
RESERVED_PATHS = frozenset(
    {
        "static",
        "api",
        "healthz",
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
STALE_MESSAGE = "This page was open for a long time. Please check your number and press the button again."
CAPTCHA_MESSAGE = "Please complete the check below the number, then press the button again."
USED_MESSAGE = "This form was sent already. To sign up the number below, please press the button again."


router = APIRouter(include_in_schema=False)


def campaign_headers(campaign: Campaign) -> dict[str, str]:
    """Headers of every page of a campaign: embeddable where the campaign allows, with
    the CAPTCHA provider's script only when it has one; never stored by a cache (each
    form carries its own token)."""
    scripts = campaign.captcha.kind.origins if campaign.captcha else ()
    return {
        "content-security-policy": page_csp(frame_ancestors=campaign.frame_ancestors, script_origins=scripts),
        "cache-control": "no-store",
    }


def _source_query(pairs: list[tuple[str, str]]) -> str:
    """The page's source parameters as the form action's query ("" when none): they
    ride along so the consent record knows which poster or link the person came from."""
    source = source_params(pairs)
    return f"?{urlencode(source)}" if source else ""


def _form_context(
    campaign: Campaign,
    disclosure: str,
    *,
    query: str,
    form_token: str,
    phone: str = "",
    phone_error: str | None = None,
    form_errors: list[str] | None = None,
) -> dict[str, object]:
    """Everything signup.html reads: the prerendered page and the form shown again
    after an error are rendered from the same context."""
    return {
        "campaign": campaign,
        "action": campaign.path + query,
        "disclosure": Markup(disclosure),
        "form_token": form_token,
        "token_field": TOKEN_FIELD,
        "honeypot_field": HONEYPOT_FIELD,
        "captcha": campaign.captcha,
        "phone": phone,
        "phone_error": phone_error,
        "form_errors": form_errors or [],
    }


def render_form(
    request: Request,
    templates: Jinja2Templates,
    campaign: Campaign,
    *,
    issued_at: float | None = None,
    phone: str = "",
    phone_error: str | None = None,
    form_errors: list[str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    resources: Resources = request.app.state.resources
    context = _form_context(
        campaign,
        resources.disclosures[campaign.keyword.lower()].text,
        query=_source_query(request.query_params.multi_items()),
        form_token=resources.guard.tokens.issue(campaign.keyword, issued_at=issued_at),
        phone=phone,
        phone_error=phone_error,
        form_errors=form_errors,
    )
    return templates.TemplateResponse(
        request, "signup.html", context, status_code=status_code, headers=campaign_headers(campaign)
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


# The plain signup page is the hot path (a QR code on a stadium screen): it is rendered
# once per campaign at start-up around two markers, and each view only splices in the
# source parameters and a fresh token. Markers are noncharacters no template emits.
_QUERY_MARK = "\ufdd0"
_TOKEN_MARK = "\ufdd1"


@dataclass(frozen=True, slots=True)
class PrerenderedPage:
    before_query: bytes
    before_token: bytes
    rest: bytes
    headers: dict[str, str]
    # The same headers, and the security headers every response carries, ready for ASGI.
    raw_headers: list[tuple[bytes, bytes]]

    def body(self, *, query_string: bytes, token: str) -> bytes:
        query = b""
        if query_string:
            pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
            query = str(escape(_source_query(pairs))).encode()
        return self.before_query + query + self.before_token + token.encode() + self.rest


def prerender(templates: Jinja2Templates, campaign: Campaign, disclosure: str) -> PrerenderedPage:
    context = _form_context(campaign, disclosure, query=_QUERY_MARK, form_token=_TOKEN_MARK)
    html = templates.get_template("signup.html").render(context)
    head, rest = html.split(_QUERY_MARK)
    middle, tail = rest.split(_TOKEN_MARK)
    headers = {**campaign_headers(campaign), "content-type": "text/html; charset=utf-8"}
    raw = [(name.encode(), value.encode()) for name, value in {**FIXED_HEADERS, **headers}.items()]
    return PrerenderedPage(head.encode(), middle.encode(), tail.encode(), headers, raw)


async def serve_prerendered(scope: Scope, send: Send, resources: Resources) -> bool:
    """Answer GET /{keyword} for a known campaign straight in ASGI; False otherwise.

    The framework's routing, dependency injection and middleware cost several times
    what this page costs to make (see README, Performance), so `app.main` calls this
    before handing a request to FastAPI. Unknown paths fall through to the router."""
    keyword = campaign_keyword(scope, resources)
    if keyword is None:
        return False
    page = resources.pages[keyword.lower()]
    body = page.body(query_string=scope["query_string"], token=resources.guard.tokens.issue(keyword))
    headers = [*page.raw_headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return True


async def signup_page(request: Request) -> Response:
    """GET /{keyword} when `serve_prerendered` did not answer: the 404 of an unknown
    keyword."""
    resources: Resources = request.app.state.resources
    keyword = request.path_params["keyword"]
    page = resources.pages.get(keyword.lower())
    if page is None:
        raise CampaignNotFound(keyword)
    token = resources.guard.tokens.issue(keyword)
    return Response(page.body(query_string=request.scope["query_string"], token=token), headers=page.headers)


def campaign_keyword(scope: Scope, resources: Resources) -> str | None:
    """The keyword of a campaign page's path (/{keyword}), or None."""
    path: str = scope["path"]
    if path.count("/") != 1:
        return None
    keyword = path[1:]
    return keyword if keyword.lower() in resources.pages else None


def without_trailing_slash(router: Router) -> ASGIApp:
    """The router's answer to a path no route matches: a redirect to the same path
    without its trailing slash when that one exists (`/join/` to `/join`), else 404.

    It stands in for Starlette's `redirect_slashes`, which builds the Location from the
    request's Host header: anyone can send `Host: evil.example`, and a shared cache
    would keep the redirect for everyone. Ours starts from OPTIN_PUBLIC_URL."""

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        trimmed = "/" + path.strip("/")
        if scope["type"] == "http" and path.endswith("/") and trimmed != "/":
            target = {**scope, "path": trimmed}
            if any(route.matches(target)[0] is not Match.NONE for route in router.routes):
                resources: Resources | None = getattr(scope["app"].state, "resources", None)
                location = (resources.settings.public_url if resources is not None else "") + trimmed
                if scope["query_string"]:
                    location += "?" + scope["query_string"].decode("latin-1")
                response = RedirectResponse(location, status_code=307, headers={"cache-control": "no-store"})
                await response(scope, receive, send)
                return
        await router.not_found(scope, receive, send)

    return default


def form_post_app(app: Starlette) -> ASGIApp:
    """POST /{keyword} of a known campaign, answered without FastAPI's routing and
    dependency injection (about a sixth of a signup's CPU, README Performance), but
    through the app's own middleware and error handlers, in the same order as
    Starlette stacks them, so the answer is the one the router would give."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        resources: Resources = app.state.resources
        campaign = resources.campaign(scope["path_params"]["keyword"])
        if campaign is None:
            raise CampaignNotFound(scope["path_params"]["keyword"])
        response = await signup(request, campaign, resources, app.state.templates)
        await response(scope, receive, send)

    handlers = {key: handler for key, handler in app.exception_handlers.items() if key not in (500, Exception)}
    asgi: ASGIApp = ExceptionMiddleware(endpoint, handlers=handlers)
    for cls, args, kwargs in reversed(app.user_middleware):
        asgi = cls(asgi, *args, **kwargs)
    return ServerErrorMiddleware(asgi, handler=app.exception_handlers.get(Exception))


@router.post("/{keyword}")
async def signup(request: Request, campaign: CampaignDep, resources: ResourcesDep, templates: TemplatesDep) -> Response:
    captcha_field = campaign.captcha.kind.response_field if campaign.captcha else None
    form = await read_form(request, fields={"phone", TOKEN_FIELD, HONEYPOT_FIELD, captcha_field or "phone"})
    typed = form.get("phone", "")
    token = form.get(TOKEN_FIELD)
    attempt = Attempt(
        phone=typed,
        token=token,
        honeypot=form.get(HONEYPOT_FIELD),
        captcha=form.get(captcha_field) if captcha_field else None,
    )

    def again(
        status_code: int, *, phone_error: str | None = None, form_errors: list[str] | None = None
    ) -> HTMLResponse:
        # The same form, the typed number kept, the first page view's time kept.
        issued = _issued_at(resources, token, campaign)
        return render_form(
            request,
            templates,
            campaign,
            issued_at=issued,
            phone=typed,
            status_code=status_code,
            phone_error=phone_error,
            form_errors=form_errors,
        )

    thanks = f"{campaign.path}/thanks"
    try:
        submitted = await sign_up(request, resources, campaign, attempt)
    except PhoneError as exc:
        return again(422, phone_error=exc.message)
    except ExpiredFormToken:
        return again(400, form_errors=[STALE_MESSAGE])
    except CaptchaFailed:
        return again(422, form_errors=[CAPTCHA_MESSAGE])
    except UsedFormToken:
        # 409: the form was fine, but its token is spent; the fresh one confirms.
        return again(409, form_errors=[USED_MESSAGE])
    except RepeatedSignup as repeated:
        return RedirectResponse(thanks + ("?pending=1" if repeated.waiting else ""), status_code=303)
    except BotTrapped:
        return RedirectResponse(thanks, status_code=303)  # exactly what a person gets

    if submitted.rejected is not None:
        return again(
            422,
            phone_error=" ".join(submitted.rejected.phone_messages) or None,
            form_errors=submitted.rejected.form_messages,
        )
    # Delivered, or queued to be: either way the person is done here.
    if submitted.waiting:
        thanks += "?pending=1"
    return RedirectResponse(thanks, status_code=303)


def _issued_at(resources: Resources, token: str | None, campaign: Campaign) -> float | None:
    try:
        return resources.guard.tokens.check(token, campaign.keyword)
    except (InvalidFormToken, ExpiredFormToken):
        return None


@router.get("/{keyword}/thanks")
async def thanks(request: Request, campaign: CampaignDep, templates: TemplatesDep) -> HTMLResponse:
    pending = request.query_params.get("pending") == "1"
    return templates.TemplateResponse(
        request, "thanks.html", {"campaign": campaign, "pending": pending}, headers=campaign_headers(campaign)
    )
