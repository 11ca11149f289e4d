"""What the edge reads off an HTTP request for the domain: the visitor's address and
the `Visit` (`app.visit`); and the per-address count of every submission.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..consent import client_ip, source_params, user_agent
from ..metrics import Outcome
from ..resources import Resources
from ..settings import Settings
from ..site import Site
from ..throttle import TooManyRequests
from ..visit import Visit
from .security import request_origin

logger = logging.getLogger(__name__)

_API_OPT_IN = re.compile(r"/api/v1/campaigns/([^/]+)/opt-ins")
_EMBED = re.compile(r"/embed/([^/]+)")
# The scope state's key of a form submission over the per-address limit.
LIMITED = "optin.limited"


def visitor_ip(scope: Scope, settings: Settings) -> str | None:
    """The visitor's address, from the request's ASGI scope: read there, not through a
    Request, as every POST asks it first (`CountSubmissions`)."""
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded_for = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
    trusted = settings.trusted_proxies
    if forwarded_for and not trusted:
        _warn_untrusted_forwarded_for(peer)
    return client_ip(peer, forwarded_for, trusted)


_WARNED: list[bool] = []


def _warn_untrusted_forwarded_for(peer: str | None) -> None:
    # Once per process: behind a proxy every signup carries the header, and one line
    # is enough for the operator to act on.
    if not _WARNED:
        _WARNED.append(True)
        logger.warning(
            "X-Forwarded-For received from %s but OPTIN_TRUSTED_PROXIES is unset: signups record "
            "and limit the connection's address. If the service is behind a reverse proxy, "
            "set OPTIN_TRUSTED_PROXIES to the proxy's address or network",
            peer,
        )


def visit_of(request: Request, settings: Settings) -> Visit:
    """The request as the domain sees it. The placement parameters come from the
    page's query string, which the form's action and the API's URL carry along."""
    return Visit(
        client_ip=visitor_ip(request.scope, settings),
        user_agent=user_agent(request.headers.get("user-agent")),
        origin=request_origin(request),
        fetch_site=request.headers.get("sec-fetch-site"),
        source=source_params(request.query_params.multi_items()),
    )


class CountSubmissions:
    """Every POST to a campaign's form or to the opt-in API counts once against the
    per-address limit, whatever becomes of it: counted here, outside the body limit and
    before the form is read, since a malformed, oversized, cross-site or bad-token
    submission is refused before `sign_up` would count it. Over the limit: the API's
    429 answer before the body is read; a form's is the form again (under `LIMITED`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            state = scope["app"].state
            resources: Resources | None = getattr(state, "resources", None)
            campaign = _signup_campaign(scope["path"], state.site) if resources is not None else None
            if resources is not None and campaign is not None:
                try:
                    await resources.guard.throttle.client(visitor_ip(scope, resources.settings))
                except TooManyRequests as exc:
                    resources.metrics.tally.submission(campaign, Outcome.RATE_LIMITED, _src(scope))
                    if _small_form(scope, resources.settings.max_body_bytes):
                        # A campaign's form: it comes back with the typed number in it
                        # and the wait (`app.web.pages.signup`), so a form body of a
                        # declared, allowed size is read, and goes no further than that.
                        scope.setdefault("state", {})[LIMITED] = exc
                        await self.app(scope, receive, send)
                        return
                    response = await scope["app"].exception_handlers[TooManyRequests](Request(scope), exc)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def _src(scope: Scope) -> str:
    """The submission's `src`, read from its query string (the form's action carries
    the page's), only for a refused one: a signup reads it from its `Visit`."""
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return source_params(pairs).get("src", "")


def _small_form(scope: Scope, limit: int) -> bool:
    """A POST to a campaign's page (not the API) of a urlencoded form whose declared
    length is within `limit`: anything else over the limit is answered before its body
    is read."""
    if scope["path"].startswith("/api/"):
        return False
    headers = dict(scope["headers"])
    kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    length = headers.get(b"content-length", b"")
    return kind == b"application/x-www-form-urlencoded" and length.isdigit() and int(length) <= limit


def _signup_campaign(path: str, site: Site) -> str | None:
    """The campaign's key, for POST /{keyword}, /embed/{keyword} or
    /api/v1/campaigns/{keyword}/opt-ins of a known campaign; else None."""
    if path.count("/") == 1:
        listing = site.listing(path[1:])
    else:
        named = _API_OPT_IN.fullmatch(path) or _EMBED.fullmatch(path)
        listing = site.listing(named.group(1)) if named is not None else None
    return listing.key if listing is not None else None
