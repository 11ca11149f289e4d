"""The ASGI application: `create_app()` builds it, its lifespan owns every resource.

`optin serve` (uvicorn with its proxy headers off) serves the module-level `app`;
importing this module reads no settings and does no I/O: that happens when the server
starts the lifespan.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import packaged, upstream
from .api import router as api_router
from .campaigns import load_campaigns
from .captcha import CaptchaVerifier
from .consent import Disclosure
from .counters import close_counters, open_counters
from .delivery import Delivery
from .errors import install_error_handlers
from .guard import Guard
from .logs import configure_logging
from .outbox import RetryPolicy
from .pacing import Pacer
from .pages import (
    RESERVED_PATHS,
    campaign_keyword,
    form_post_app,
    prerender,
    router,
    serve_prerendered,
    signup_page,
    without_trailing_slash,
)
from .phone import load_metadata
from .resources import Resources
from .sandbox import FakeProTexting
from .security import BodyLimit, SecurityHeaders
from .settings import Settings, load_settings
from .signup import CountSubmissions
from .storage import Outbox, create_engine, migrate
from .throttle import Limits, Throttle
from .tokens import FormTokens

logger = logging.getLogger(__name__)

TEMPLATES_DIR = packaged("templates")
STATIC_DIR = packaged("static")

SANDBOX_API_URL = "http://sandbox.protexting.invalid/v1"
SANDBOX_TOKEN = "sandbox-token"


def upstream_client(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> upstream.ProTexting:
    if settings.sandbox:
        # Sandbox: the fake answers in-process, so no text is ever sent.
        http = upstream.http_client(token=SANDBOX_TOKEN, transport=httpx.ASGITransport(FakeProTexting().app()))
        return upstream.ProTexting(http, base_url=SANDBOX_API_URL, deadline=settings.upstream_deadline_seconds)
    assert settings.protexting_access_token is not None
    http = upstream.http_client(token=settings.protexting_access_token.get_secret_value(), transport=transport)
    return upstream.ProTexting(http, base_url=settings.protexting_api_url, deadline=settings.upstream_deadline_seconds)


def outbox_for(engine: AsyncEngine, settings: Settings) -> Outbox:
    policy = RetryPolicy(
        max_attempts=settings.delivery_max_attempts,
        max_age=timedelta(seconds=settings.delivery_max_age_seconds),
        base=settings.retry_base_seconds,
        cap=settings.retry_max_seconds,
    )
    return Outbox(engine, policy=policy, lease=timedelta(seconds=settings.lease_seconds))


def delivery_for(settings: Settings, *, outbox: Outbox, protexting: upstream.ProTexting, pacer: Pacer) -> Delivery:
    return Delivery(
        outbox=outbox,
        protexting=protexting,
        pacer=pacer,
        inline_deadline=settings.inline_deadline_seconds,
        duplicate_window=timedelta(seconds=settings.duplicate_window_seconds),
        concurrency=settings.worker_concurrency,
    )


def limits_for(settings: Settings) -> Limits:
    return Limits(
        per_ip=settings.limit_per_ip,
        per_number=settings.limit_per_number,
        per_prefix=settings.limit_per_prefix,
        per_campaign=settings.limit_per_campaign,
    )


def _without_body(send: Send) -> Send:
    async def send_headers_only(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            message = {**message, "body": b""}
        await send(message)

    return send_headers_only


class OptinPages(FastAPI):
    """FastAPI, with a campaign's page and its form answered before routing: they are
    what a QR code on a stadium screen sends thousands of phones to in a minute."""

    _form_post: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        resources = getattr(self.state, "resources", None) if scope["type"] == "http" else None
        if resources is not None:
            if scope["method"] == "GET" and await serve_prerendered(scope, send, resources):
                return
            form_post = self._form_post
            if form_post is not None and scope["method"] == "POST" and (keyword := campaign_keyword(scope, resources)):
                scope["app"] = self
                scope["path_params"] = {"keyword": keyword}
                await form_post(scope, receive, send)
                return
        if scope["type"] == "http" and scope["method"] == "HEAD":
            # HEAD is GET without the body (RFC 9110 9.3.2), on every route: FastAPI's
            # routes answer only the methods they list. A copy of the scope, so the
            # server still knows it was HEAD; checked after the page's GET, which it
            # must not slow down.
            await self({**scope, "method": "GET"}, receive, _without_body(send))
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    captcha_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the app. `settings` defaults to the environment, read at start-up.

    `upstream_transport` replaces the network below the ProTexting client, and
    `captcha_transport` the one below CAPTCHA verification: tests pass an
    `httpx.MockTransport` at these seams, where a third party would be called.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = settings if settings is not None else load_settings()
        configure_logging(active.log_level)
        campaigns = load_campaigns(active.campaigns_path, reserved=RESERVED_PATHS)
        templates.env.globals["sandbox"] = active.sandbox
        disclosure = templates.get_template("_disclosure.html")
        disclosures = {key: Disclosure.of(disclosure.render(campaign=c)) for key, c in campaigns.items()}
        if active.sandbox:
            logger.warning("PROTEXTING_ACCESS_TOKEN is not set: sandbox mode, no texts are sent")

        async with AsyncExitStack() as stack:
            engine = create_engine(active.database_url, timeout=active.database_timeout_seconds)
            stack.push_async_callback(engine.dispose)
            await migrate(engine)
            outbox = outbox_for(engine, active)
            stack.push_async_callback(outbox.close)
            await outbox.remember_disclosures(list(disclosures.values()))
            counters = open_counters(
                active.redis_url, namespace=active.redis_prefix, timeout=active.redis_timeout_seconds
            )
            stack.push_async_callback(close_counters, counters)
            pacer = Pacer(active.rate_limit, storage=counters)
            protexting = upstream_client(active, upstream_transport)
            stack.push_async_callback(protexting.aclose)
            captcha = CaptchaVerifier(httpx.AsyncClient(transport=captcha_transport, timeout=httpx.Timeout(5.0)))
            stack.push_async_callback(captcha.aclose)
            delivery = delivery_for(active, outbox=outbox, protexting=protexting, pacer=pacer)
            if active.run_worker:
                delivery.start()
            stack.push_async_callback(delivery.stop)
            guard = Guard(
                tokens=FormTokens(active.signing_key(), used=counters),
                throttle=Throttle(counters, limits_for(active)),
                captcha=captcha,
                min_fill_seconds=active.min_fill_seconds,
            )
            pages = {key: prerender(templates, c, disclosures[key].text) for key, c in campaigns.items()}
            app.state.resources = Resources(
                settings=active,
                campaigns=campaigns,
                disclosures=disclosures,
                delivery=delivery,
                guard=guard,
                pages=pages,
            )
            load_metadata(sorted({r for c in campaigns.values() for r in (c.default_country, *c.countries)}))
            # What start-up built lives as long as the process: keep it out of the
            # collector's full scans, which otherwise stop the event loop for ~90 ms
            # every few thousand signups (README, Performance). Undone at shutdown, so
            # a process that runs many apps (the tests) can still collect them.
            gc.collect()
            gc.freeze()
            stack.callback(gc.unfreeze)
            yield

    app = OptinPages(title="optin-pages", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_router)
    app.include_router(router)
    app.add_route("/{keyword}", signup_page, methods=["GET"], include_in_schema=False)
    app.router.redirect_slashes = False
    app.router.default = without_trailing_slash(app.router)
    install_error_handlers(app, templates)
    app.add_middleware(BodyLimit)
    # Outside the body limit: an oversized submission counts against its address too.
    app.add_middleware(CountSubmissions)
    app.add_middleware(SecurityHeaders)
    # After the middleware and the error handlers, which the form's POST goes through.
    app._form_post = form_post_app(app)
    return app


app = create_app()
