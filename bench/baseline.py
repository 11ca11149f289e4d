"""The page-view baseline: a bare Starlette app that answers `GET /{keyword}` (and
`GET /embed/{keyword}`) with the exact bytes (body and headers) captured from the real
app's `GET /join` (or `GET /embed/join`).

bench/run.py writes the capture and starts this under the same uvicorn settings as
the app (one process, the same --loop/--http, access log off):

    BENCH_BASELINE_CAPTURE=/tmp/x/capture.json python -m uvicorn baseline:app --app-dir bench ...

The capture is JSON: {"body_hex": "...", "headers": [[name, value], ...]}. Nothing
here imports the app: the baseline is what Starlette and uvicorn cost by themselves.
"""

from __future__ import annotations

import json
import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

with open(os.environ["BENCH_BASELINE_CAPTURE"], encoding="utf-8") as _file:
    _capture = json.load(_file)

BODY: bytes = bytes.fromhex(_capture["body_hex"])
HEADERS: dict[str, str] = {name: value for name, value in _capture["headers"]}


async def page(request: Request) -> Response:
    return Response(BODY, status_code=200, headers=HEADERS)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


# The embed's path too (the `embedview` section): the same captured answer at either.
app = Starlette(routes=[Route("/healthz", healthz), Route("/{keyword}", page), Route("/embed/{keyword}", page)])
