"""Readiness: `GET /readyz`, whether this process can take a signup now.

`/healthz` (app.pages) is liveness: the process is up and answers HTTP, whatever
else is down, so a supervisor that restarts on it never restarts a replica for a
database outage. `/readyz` also asks what a signup needs on its way in: the database
answers and holds this release's schema (Alembic's head, `SCHEMA_REVISION`), and
Redis answers when OPTIN_REDIS_URL is set. A load balancer or compose sends traffic
by it.

The parts are asked at once, each within its own timeout (OPTIN_DATABASE_TIMEOUT_SECONDS,
OPTIN_REDIS_TIMEOUT_SECONDS), so a probe is answered within the longer of the two.
A failed part is named ("database", "schema", "redis") with the class of its error,
never with the error's message or a URL: those can carry a host, a user or a password.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..counters import counters_answer
from ..resources import Resources
from ..storage import SCHEMA_REVISION, schema_is_current
from .deps import ResourcesDep

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

OK = "ok"
NOT_CHECKED = "not checked"


def _unreachable(exc: Exception) -> str:
    return f"unreachable ({type(exc).__name__})"


async def _database(resources: Resources) -> dict[str, str]:
    try:
        async with asyncio.timeout(resources.settings.database_timeout_seconds):
            current = await schema_is_current(resources.delivery.outbox.engine)
    except Exception as exc:  # whatever the driver raises, the database did not answer
        return {"database": _unreachable(exc), "schema": NOT_CHECKED}
    return {"database": OK, "schema": OK if current else f"not at this release's revision ({SCHEMA_REVISION})"}


async def _redis(resources: Resources) -> dict[str, str]:
    if resources.settings.redis_url is None:
        return {}
    # The pace's counters are the shared ones (app.services): the abuse limits and the
    # used form tokens are kept in the same Redis.
    try:
        async with asyncio.timeout(resources.settings.redis_timeout_seconds):
            answered = await counters_answer(resources.delivery.pacer.storage)
    except Exception as exc:
        return {"redis": _unreachable(exc)}
    return {"redis": OK if answered else "unreachable"}


@router.get("/readyz")
async def readyz(resources: ResourcesDep) -> JSONResponse:
    database, redis = await asyncio.gather(_database(resources), _redis(resources))
    checks = database | redis
    failed = [part for part, state in checks.items() if state not in (OK, NOT_CHECKED)]
    headers = {"cache-control": "no-store"}
    if not failed:
        return JSONResponse({"status": "ready", "checks": checks}, headers=headers)
    logger.warning("not ready: %s", "; ".join(f"{part} {checks[part]}" for part in failed))
    return JSONResponse({"status": "not ready", "failed": failed, "checks": checks}, status_code=503, headers=headers)
