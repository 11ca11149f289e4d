"""Composition: the services the web app and the `optin` commands run on, opened once.

`open_services(settings)` opens the database (migrated), the outbox, the shared
counters, the pacer, the ProTexting client, the CAPTCHA verifier and delivery, and
closes them in the reverse order; the web app's lifespan (`app.main`) and
`optin worker` both use it, and the commands that only read or revise signups use its
first piece, `open_outbox`. Nothing here imports the web framework: the worker runs
without building the web app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
from limits.aio.storage import Storage

from . import upstream
from .captcha import CaptchaVerifier
from .counters import close_counters, open_counters
from .delivery import Delivery
from .metrics import Metrics
from .outbox import RetryPolicy
from .pacing import Pacer
from .settings import Settings
from .storage import Outbox, create_engine, migrate
from .throttle import Limits

SANDBOX_API_URL = "http://sandbox.protexting.invalid/v1"
SANDBOX_TOKEN = "sandbox-token"


@dataclass(frozen=True)
class Services:
    settings: Settings
    outbox: Outbox
    counters: Storage
    pacer: Pacer
    protexting: upstream.ProTexting
    captcha: CaptchaVerifier
    delivery: Delivery
    metrics: Metrics


def upstream_client(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> upstream.ProTexting:
    if settings.sandbox:
        # Imported here: the fake is a Starlette app, which a live worker does not need.
        from .sandbox import FakeProTexting

        # Sandbox: the fake answers in-process, so no text is ever sent.
        fake = upstream.token_transport(token=SANDBOX_TOKEN, transport=httpx.ASGITransport(FakeProTexting().app()))
        return upstream.ProTexting(fake, base_url=SANDBOX_API_URL, deadline=settings.upstream_deadline_seconds)
    assert settings.protexting_access_token is not None
    signed = upstream.token_transport(token=settings.protexting_access_token.get_secret_value(), transport=transport)
    return upstream.ProTexting(
        signed, base_url=settings.protexting_api_url, deadline=settings.upstream_deadline_seconds
    )


def limits_for(settings: Settings) -> Limits:
    # The sandbox's test numbers (app.sandbox) are fictional 555-01xx numbers, all in one
    # block of a hundred: a newcomer trying them and a few of their own would meet the
    # per-block limit in minutes. So sandbox mode leaves it off unless it is set.
    keep_prefix = not settings.sandbox or "limit_per_prefix" in settings.model_fields_set
    return Limits(
        per_ip=settings.limit_per_ip,
        per_number=settings.limit_per_number,
        per_prefix=settings.limit_per_prefix if keep_prefix else "",
        per_campaign=settings.limit_per_campaign,
    )


@asynccontextmanager
async def open_outbox(settings: Settings) -> AsyncIterator[Outbox]:
    """The outbox on the configured database, its schema brought up to date."""
    policy = RetryPolicy(
        max_attempts=settings.delivery_max_attempts,
        max_age=timedelta(seconds=settings.delivery_max_age_seconds),
        base=settings.retry_base_seconds,
        cap=settings.retry_max_seconds,
    )
    async with AsyncExitStack() as stack:
        engine = create_engine(settings.database_url, timeout=settings.database_timeout_seconds)
        stack.push_async_callback(engine.dispose)
        await migrate(engine)
        outbox = Outbox(engine, policy=policy, lease=timedelta(seconds=settings.lease_seconds))
        stack.push_async_callback(outbox.close)
        yield outbox


@asynccontextmanager
async def open_services(
    settings: Settings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    captcha_transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Services]:
    """Every service, open; delivery built but not started (the caller decides whether
    this process delivers) and stopped on the way out.

    `upstream_transport` replaces the network below the ProTexting client, and
    `captcha_transport` the one below CAPTCHA verification (tests' seams)."""
    async with AsyncExitStack() as stack:
        outbox = await stack.enter_async_context(open_outbox(settings))
        counters = open_counters(
            settings.redis_url, namespace=settings.redis_prefix, timeout=settings.redis_timeout_seconds
        )
        stack.push_async_callback(close_counters, counters)
        pacer = Pacer(settings.rate_limit, storage=counters)
        protexting = upstream_client(settings, upstream_transport)
        stack.push_async_callback(protexting.aclose)
        captcha = CaptchaVerifier(captcha_transport)
        stack.push_async_callback(captcha.aclose)
        metrics = Metrics()
        delivery = Delivery(
            metrics=metrics,
            outbox=outbox,
            protexting=protexting,
            pacer=pacer,
            inline_deadline=settings.inline_deadline_seconds,
            duplicate_window=timedelta(seconds=settings.duplicate_window_seconds),
            concurrency=settings.worker_concurrency,
        )
        stack.push_async_callback(delivery.stop)
        yield Services(
            metrics=metrics,
            settings=settings,
            outbox=outbox,
            counters=counters,
            pacer=pacer,
            protexting=protexting,
            captcha=captcha,
            delivery=delivery,
        )
