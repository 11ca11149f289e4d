"""The ASGI application: `create_app()` builds it, its lifespan owns every resource.

`uvicorn app.main:app` serves the module-level `app`; importing this module reads no
settings and does no I/O: that happens when the server starts the lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import upstream
from .campaigns import load_campaigns
from .consent import Disclosure
from .delivery import Delivery
from .outbox import Outbox, RetryPolicy
from .pacing import Pacer
from .pages import RESERVED_PATHS, CampaignNotFound, router
from .resources import Resources
from .sandbox import FakeProTexting
from .settings import Settings, load_settings
from .storage import create_engine, migrate

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"

SANDBOX_API_URL = "http://sandbox.protexting.invalid/v1"
SANDBOX_TOKEN = "sandbox-token"

_MESSAGES = {
    400: ("Something was wrong with that request", "Please go back, reload the page and try again."),
    404: ("Page not found", "There is no signup page at this address. Check the link or the keyword on the poster."),
    405: ("Not allowed", "That page can't be used that way."),
}


def upstream_client(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> upstream.ProTexting:
    if settings.sandbox:
        # Sandbox: the fake answers in-process, so no text is ever sent.
        http = upstream.http_client(token=SANDBOX_TOKEN, transport=httpx.ASGITransport(FakeProTexting().app()))
        return upstream.ProTexting(http, base_url=SANDBOX_API_URL)
    assert settings.protexting_access_token is not None
    http = upstream.http_client(token=settings.protexting_access_token.get_secret_value(), transport=transport)
    return upstream.ProTexting(http, base_url=settings.protexting_api_url)


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


def create_app(
    settings: Settings | None = None, *, upstream_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the app. `settings` defaults to the environment, read at start-up.

    `upstream_transport` replaces the network below the ProTexting client; tests pass
    an `httpx.MockTransport` here, the one seam where a paid third party is faked.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        active = settings if settings is not None else load_settings()
        campaigns = load_campaigns(active.campaigns_path, reserved=RESERVED_PATHS)
        active.signing_key()  # warn at start-up, not on first use, when the key is random
        templates.env.globals["sandbox"] = active.sandbox
        disclosure = templates.get_template("_disclosure.html")
        disclosures = {key: Disclosure.of(disclosure.render(campaign=c)) for key, c in campaigns.items()}
        if active.sandbox:
            logger.warning("PROTEXTING_ACCESS_TOKEN is not set: sandbox mode, no texts are sent")

        async with AsyncExitStack() as stack:
            engine = create_engine(active.database_url)
            stack.push_async_callback(engine.dispose)
            await migrate(engine)
            outbox = outbox_for(engine, active)
            await outbox.remember_disclosures(list(disclosures.values()))
            pacer = Pacer(active.rate_limit, redis_url=active.redis_url, namespace=active.redis_prefix)
            stack.push_async_callback(pacer.close)
            protexting = upstream_client(active, upstream_transport)
            stack.push_async_callback(protexting.aclose)
            delivery = delivery_for(active, outbox=outbox, protexting=protexting, pacer=pacer)
            if active.run_worker:
                delivery.start()
            stack.push_async_callback(delivery.stop)
            app.state.resources = Resources(
                settings=active, campaigns=campaigns, disclosures=disclosures, delivery=delivery
            )
            yield

    app = FastAPI(title="optin-pages", lifespan=lifespan, docs_url=None, redoc_url=None)
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    app.state.templates = templates
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)

    async def http_error(request: Request, exc: Exception) -> HTMLResponse:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 404
        heading, detail = _MESSAGES.get(status, _MESSAGES[400])
        return templates.TemplateResponse(
            request, "message.html", {"heading": heading, "detail": detail}, status_code=status
        )

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(CampaignNotFound, http_error)
    return app


app = create_app()
