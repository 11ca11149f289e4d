"""Cross-site safety at the edge: where a request says it comes from (for the guard's
origin check, `app.guard.Guard.check_origin`), and the headers every response carries.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..campaigns import Campaign
from ..guard import origin_of


def request_origin(request: Request) -> str | None:
    """The origin of the page that made the request, as far as the browser tells;
    None when it tells nothing (a non-browser client)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.lower()
    referer = request.headers.get("referer")
    return origin_of(referer) if referer else None


def campaign_headers(campaign: Campaign, *, embed: bool = False, language: str | None = None) -> dict[str, str]:
    """Headers of every page of a campaign: embeddable where the campaign allows, with
    the CAPTCHA provider's script only when it has one, and our own frame script in
    the embed (the page itself runs none); never stored by a cache (each form carries
    its own token). In several languages, the page's differs by Accept-Language."""
    scripts = (*(("'self'",) if embed else ()), *(campaign.captcha.kind.origins if campaign.captcha else ()))
    headers = {
        "content-security-policy": page_csp(frame_ancestors=campaign.frame_ancestors, script_origins=scripts),
        "cache-control": "no-store",
    }
    if language is not None:
        headers["content-language"] = language
    if len(campaign.languages) > 1:
        headers["vary"] = "Accept-Language"
    return headers


# CSP for everything that is not a campaign page: nothing but our own styles, and no
# framing at all.
DEFAULT_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

FIXED_HEADERS = {
    # Other sites learn at most our origin, never a page's query string (src, utm_*).
    "referrer-policy": "strict-origin-when-cross-origin",
    "x-content-type-options": "nosniff",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


def page_csp(*, frame_ancestors: Collection[str], script_origins: Collection[str] = ()) -> str:
    """CSP of a campaign page: embeddable by `frame_ancestors`; third-party script
    (a CAPTCHA widget) only when a campaign asks for one."""
    ancestors = " ".join(frame_ancestors) if frame_ancestors else "'none'"
    policy = [
        "default-src 'none'",
        "style-src 'self'",
        "img-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        f"frame-ancestors {ancestors}",
    ]
    # connect-src 'self': the page runs no script of its own, so this lets nobody fetch
    # anything; it lets a browser's tools (Lighthouse) read our robots.txt from the page.
    connect = " ".join(dict.fromkeys(("'self'", *script_origins)))
    if script_origins:
        sources = " ".join(script_origins)
        policy += [f"script-src {sources}", f"frame-src {sources}"]
    policy.append(f"connect-src {connect}")
    return "; ".join(policy)


class SecurityHeaders:
    """Adds the fixed security headers to every response, and the default CSP to any
    response that did not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", ())
                # A response whose headers begin as `secured()` makes them (the
                # prerendered pages, the busiest) has them all: no scan of its names.
                if headers[:_FIXED_COUNT] != _FIXED_RAW or headers[_FIXED_COUNT][0] != b"content-security-policy":
                    # One pass over the names (ASGI's are lower-case bytes).
                    present = {name.lower() for name, _ in headers}
                    missing = [(name, value) for name, value in _DEFAULTS if name not in present]
                    if missing:
                        message = {**message, "headers": [*headers, *missing]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


_FIXED_RAW = [(name.encode(), value.encode()) for name, value in FIXED_HEADERS.items()]
_FIXED_COUNT = len(_FIXED_RAW)
_DEFAULTS = [*_FIXED_RAW, (b"content-security-policy", DEFAULT_CSP.encode())]


def secured(csp: str, headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """ASGI headers for a response made ahead of time: every security header first,
    in the order `SecurityHeaders` recognises without looking further, then `headers`."""
    rest = [(name.encode(), value.encode()) for name, value in headers.items()]
    return [*_FIXED_RAW, (b"content-security-policy", csp.encode()), *rest]


DEFAULT_BODY_LIMIT = 16384


class BodyLimit:
    """413 for a body larger than `OPTIN_MAX_BODY_BYTES`: at once when Content-Length
    says so, else as soon as the streamed body passes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # GET and HEAD carry no body worth reading: the page views pass straight through.
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            limit = _limit(scope)
            for name, value in scope["headers"]:
                if name == b"content-length" and (not value.isdigit() or int(value) > limit):
                    await _too_large(send, json=scope["path"].startswith("/api/"))
                    return
            receive = _counting(receive, limit)
        await self.app(scope, receive, send)


def _limit(scope: Scope) -> int:
    # The settings are read by the lifespan; until then (and in bare tests) the default.
    resources = getattr(scope["app"].state, "resources", None) if "app" in scope else None
    return resources.settings.max_body_bytes if resources is not None else DEFAULT_BODY_LIMIT


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, "request body too large")
        return message

    return counted


async def _too_large(send: Send, *, json: bool) -> None:
    if json:
        body, kind = b'{"errors":[{"field":null,"message":"Request body too large."}]}', b"application/json"
    else:
        body, kind = b"Request body too large.\n", b"text/plain; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
