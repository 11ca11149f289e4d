"""The ASGI application: `create_app()` builds it, its lifespan owns every resource.

`optin serve` (uvicorn with its proxy headers off) serves the module-level `app`;
importing this module reads no settings and does no I/O: that happens when the server
starts the lifespan.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Mount

from . import packaged
from .admin import Console, console_route, open_console
from .campaigns import load_campaigns
from .guard import Guard
from .i18n import DEFAULT_LANGUAGE, translations
from .logs import configure_logging
from .metrics import Metrics
from .phone import load_metadata
from .reload import CampaignsWatcher, signature
from .resources import Resources
from .services import limits_for, open_services
from .settings import Settings, load_settings
from .site import Site
from .throttle import Throttle
from .tokens import FormTokens
from .web.api import router as api_router
from .web.errors import install_error_handlers
from .web.head import HeadAsGet
from .web.health import router as health_router
from .web.metrics import router as metrics_router
from .web.optout import api_router as opt_out_api_router
from .web.optout import router as opt_out_router
from .web.pages import RESERVED_PATHS, build_site, campaign_route, embed_route, router, without_trailing_slash
from .web.qr import router as qr_router
from .web.request_ids import request_ids
from .web.security import BodyLimit, SecurityHeaders
from .web.state import AppState
from .web.visits import CountSubmissions

logger = logging.getLogger(__name__)

# How stale another worker's counts may be in a scrape (multiprocess mode).
METRICS_FLUSH_SECONDS = 1.0

TEMPLATES_DIR = packaged("templates")
STATIC_DIR = packaged("static")


def _on_hangup(reload: Callable[[], None]) -> Callable[[], None]:
    """SIGHUP reloads the campaigns file; returns what puts SIGHUP back as it was.

    Only where the event loop can take signals: the main thread of a process (uvicorn's
    worker), not a test client's thread, nor a platform without SIGHUP."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return lambda: None

    def restore() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return restore


async def _flush_metrics(metrics: Metrics, console: Console | None) -> None:
    """The page views' and submissions' counts into prometheus-client's once a second
    (a scrape flushes its own process's first): in multiprocess mode that is how the
    other processes' counts reach the shared directory. The console's funnel reads the
    same flush (app.funnel), and is written to the database every few. It runs with
    neither on too: the tally counts views by query string, and is emptied here."""
    while True:
        await asyncio.sleep(METRICS_FLUSH_SECONDS)
        metrics.flush()
        if console is not None:
            await console.flushed()


class CachedStaticFiles(StaticFiles):
    """static/: kept by browsers and caches for a day, then checked again by its ETag
    (its URLs name no version, so a release's new stylesheet is seen within the day)."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("cache-control", "public, max-age=86400")
        return response


def make_templates() -> Jinja2Templates:
    """The pages' templates, with {% trans %} and _(): each render passes its language's
    gettext in its context (app.web.languages.words); English, the msgids' own, for a
    render that does not."""
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    templates.env.add_extension("jinja2.ext.i18n")
    templates.env.install_gettext_translations(translations(DEFAULT_LANGUAGE), newstyle=True)  # type: ignore[attr-defined]
    return templates


def create_app(
    settings: Settings | None = None,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    captcha_transport: httpx.AsyncBaseTransport | None = None,
    middleware: Sequence[Middleware] = (),
) -> Starlette:
    """Build the app. `settings` defaults to the environment, read at start-up.

    `upstream_transport` replaces the network below the ProTexting client, and
    `captcha_transport` the one below CAPTCHA verification: tests pass an
    `httpx.MockTransport` at these seams, where a third party would be called.
    `middleware` is wrapped around the app's own, outermost: it sees every request.

    The app is Starlette, with the campaign pages as its first route and FastAPI
    (the JSON API and the other pages) mounted below them: every request goes through
    the middleware declared here, and a page view skips the layers FastAPI adds for
    its own routes (a stack of exits per request, its telemetry and body-limit
    wrappers), which cost a page view more than the page itself (README, Performance).
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        active = settings if settings is not None else load_settings()
        configure_logging(active.log_level, active.log_format)
        templates.env.globals["sandbox"] = active.sandbox
        templates.env.globals["public_url"] = active.public_url

        def build() -> Site:
            return build_site(templates, load_campaigns(active.campaigns_path, reserved=RESERVED_PATHS))

        loaded = signature(active.campaigns_path)
        site = build()
        if active.sandbox:
            logger.warning("PROTEXTING_ACCESS_TOKEN is not set: sandbox mode, no texts are sent")

        async with open_services(
            active, upstream_transport=upstream_transport, captcha_transport=captcha_transport
        ) as services:

            async def install(new: Site) -> None:
                # Its disclosures stored before any page shows them: every consent
                # record made on a page points at a disclosure already kept.
                await services.outbox.remember_disclosures([item.disclosure for item in new.every_language])
                load_metadata(sorted({r for c in new.campaigns for r in (c.default_country, *c.countries)}))
                app.state.site = new

            await install(site)
            if active.run_worker:
                services.delivery.start()
            guard = Guard(
                tokens=FormTokens(active.signing_key(), used=services.counters),
                throttle=Throttle(services.counters, limits_for(active)),
                captcha=services.captcha,
                min_fill_seconds=active.min_fill_seconds,
                own_origins=active.own_origins,
            )
            app.state.resources = Resources(
                settings=active, delivery=services.delivery, guard=guard, metrics=services.metrics
            )
            # What start-up built lives as long as the process: keep it out of the
            # collector's full scans, which otherwise stop the event loop for ~90 ms
            # every few thousand signups (README, Performance). Undone at shutdown, so
            # a process that runs many apps (the tests) can still collect them.
            gc.collect()
            gc.freeze()
            async with open_console(
                active, delivery=services.delivery, metrics=services.metrics, counters=services.counters
            ) as console:
                app.state.console = console
                flushing = asyncio.create_task(_flush_metrics(services.metrics, console))
                watcher = CampaignsWatcher(
                    active.campaigns_path, build, install, interval=active.reload_seconds, loaded=loaded
                )
                app.state.reloader = watcher
                watching = asyncio.create_task(watcher.run())
                hangup = _on_hangup(watcher.request)
                try:
                    yield
                finally:
                    hangup()
                    watching.cancel()
                    flushing.cancel()
                    gc.unfreeze()

    templates = make_templates()
    # The JSON API and the pages other than the campaign's own, with FastAPI's
    # parameters and dependencies. The app's middleware, below, wraps it.
    rest = FastAPI(
        title="optin-pages",
        version="1",
        docs_url=None,
        redoc_url=None,
        # The service sets up no OpenTelemetry provider; saying so spares every request
        # FastAPI's look for one (three reads of the environment).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # Every submission to the API counted against its address, outside the body
        # limit (an oversized one counts too); the campaign pages' own POST passes the
        # same two (app.web.pages.CampaignPage).
        middleware=[Middleware(HeadAsGet), Middleware(CountSubmissions), Middleware(BodyLimit)],
    )
    rest.include_router(api_router)
    rest.include_router(opt_out_api_router)
    rest.include_router(opt_out_router)
    rest.include_router(router)
    rest.include_router(metrics_router)
    rest.include_router(health_router)
    rest.include_router(qr_router)
    pages, embed = campaign_route(), embed_route()
    rest.router.redirect_slashes = False
    rest.router.default = without_trailing_slash([pages, embed, *rest.router.routes])

    app = Starlette(
        routes=[
            # First: the page view is the busiest request, and /{keyword} takes no path
            # the other routes answer (app.web.pages.RESERVED_PATHS).
            pages,
            embed,
            Mount("/static", CachedStaticFiles(directory=STATIC_DIR), name="static"),
            # /admin and below: the console (app.admin), a 404 while it is off.
            console_route(),
            Mount("", rest),
        ],
        # Outermost first. Every request goes through all of them.
        middleware=[
            *middleware,
            Middleware(request_ids, settings=settings),  # JSON logs only: app.web.request_ids
            Middleware(SecurityHeaders),
        ],
        lifespan=lifespan,
    )
    # One state for both: what the lifespan builds, FastAPI's endpoints read too.
    app.state = rest.state = AppState()
    app.state.templates = templates
    # Each answers the errors raised below it the same way: the campaign pages' by the
    # app's handlers, FastAPI's endpoints' by its own (its error middleware would
    # otherwise turn them into a 500 before they reached the app's).
    install_error_handlers(app, templates)
    install_error_handlers(rest, templates)
    return app


app = create_app()
