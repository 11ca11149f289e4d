"""`GET /metrics`: the Prometheus scrape (`app.metrics`), only when OPTIN_METRICS_TOKEN is
set (404 otherwise, as for any path the service does not have), and only to a request
that carries it as `Authorization: Bearer <token>` (401 otherwise). The token is
compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from ..metrics import delivery_paused, outbox_depth
from .deps import ResourcesDep

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def metrics(request: Request, resources: ResourcesDep) -> Response:
    token = resources.settings.metrics_token
    if token is None:
        raise HTTPException(404)
    given = request.headers.get("authorization", "")
    scheme, _, credentials = given.partition(" ")
    expected = token.get_secret_value().encode()
    # compare_digest on equal-length inputs is constant-time; a wrong length says only that.
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), expected):
        raise HTTPException(401, headers={"www-authenticate": 'Bearer realm="metrics"'})
    delivery = resources.delivery
    gauges = [
        outbox_depth(await delivery.outbox.counts()),
        delivery_paused(await delivery.pacer.paused_for() > 0),
    ]
    body = resources.metrics.exposition(gauges)
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"cache-control": "no-store"})
