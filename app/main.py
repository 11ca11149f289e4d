"""The ASGI application: `create_app()` builds it, its lifespan owns every resource.

`optin serve` (uvicorn with its proxy headers off) serves the module-level `app`;
importing this module reads no settings and does no I/O: that happens when the server
starts the lifespan.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import packaged
from .api import router as api_router
from .campaigns import load_campaigns
from .errors import install_error_handlers
from .guard import Guard
from .logs import configure_logging
from .pages import RESERVED_PATHS, build_site, campaign_route, router, without_trailing_slash
from .phone import load_metadata
from .resources import Resources
from .security import BodyLimit, SecurityHeaders
from .services import limits_for, open_services
from .settings import Settings, load_settings
from .signup import CountSubmissions
from .throttle import Throttle
from .tokens import FormTokens

logger = logging.getLogger(__name__)

TEMPLATES_DIR = packaged("templates")
STATIC_DIR = packaged("static")


class HeadAsGet:
    """HEAD is GET without the body (RFC 9110 9.3.2), on every route: FastAPI's routes
    answer only the methods they list. The app below sees a copy of the scope with
    GET; the middleware above, and the server, still see HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)


def create_app(
    settings: Settings | None = None,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    captcha_transport: httpx.AsyncBaseTransport | None = None,
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """Build the app. `settings` defaults to the environment, read at start-up.

    `upstream_transport` replaces the network below the ProTexting client, and
    `captcha_transport` the one below CAPTCHA verification: tests pass an
    `httpx.MockTransport` at these seams, where a third party would be called.
    `middleware` is wrapped around the app's own, outermost: it sees every request.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = settings if settings is not None else load_settings()
        configure_logging(active.log_level)
        campaigns = load_campaigns(active.campaigns_path, reserved=RESERVED_PATHS)
        templates.env.globals["sandbox"] = active.sandbox
        site = build_site(templates, campaigns)
        if active.sandbox:
            logger.warning("PROTEXTING_ACCESS_TOKEN is not set: sandbox mode, no texts are sent")

        async with open_services(
            active, upstream_transport=upstream_transport, captcha_transport=captcha_transport
        ) as services:
            await services.outbox.remember_disclosures([item.disclosure for item in site.listings])
            if active.run_worker:
                services.delivery.start()
            guard = Guard(
                tokens=FormTokens(active.signing_key(), used=services.counters),
                throttle=Throttle(services.counters, limits_for(active)),
                captcha=services.captcha,
                min_fill_seconds=active.min_fill_seconds,
            )
            app.state.resources = Resources(settings=active, delivery=services.delivery, guard=guard)
            app.state.site = site
            load_metadata(sorted({r for c in site.campaigns for r in (c.default_country, *c.countries)}))
            # What start-up built lives as long as the process: keep it out of the
            # collector's full scans, which otherwise stop the event loop for ~90 ms
            # every few thousand signups (README, Performance). Undone at shutdown, so
            # a process that runs many apps (the tests) can still collect them.
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()

    # Outermost first. Every request goes through all of them, the campaign pages too.
    declared = [
        *middleware,
        Middleware(SecurityHeaders),
        # Outside the body limit: an oversized submission counts against its address too.
        Middleware(CountSubmissions),
        Middleware(BodyLimit),
        Middleware(HeadAsGet),
    ]
    app = FastAPI(
        title="optin-pages",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        middleware=declared,
        # The service sets up no OpenTelemetry provider; saying so spares every request
        # FastAPI's look for one (three reads of the environment).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_router)
    app.include_router(router)
    # First: the page view is the busiest request, and /{keyword} takes no path the
    # other routes answer (app.pages.RESERVED_PATHS).
    app.router.routes.insert(0, campaign_route())
    app.router.redirect_slashes = False
    app.router.default = without_trailing_slash(app.router)
    install_error_handlers(app, templates)
    return app


app = create_app()
