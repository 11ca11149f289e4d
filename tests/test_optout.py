"""The web opt-out: /stop and /{keyword}/stop, the JSON twin, and the job that follows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.page import Page
from tests.support.records import settled
from tests.support.visitor import Visitor

from .conftest import FakeUpstream, MakeClient, TOKEN, json_response


def test_smoke(make_client: MakeClient, upstream: FakeUpstream) -> None:
    client = make_client()
    page = client.get("/stop")
    print(page.status_code, page.text[:3000])
    response = Visitor(client, "/stop").submit("(201) 555-0123")
    print(response.status_code, response.headers, response.text[:500])
    done = client.get(response.headers["location"])
    print(done.text)
    client.portal.call(client.app.state.resources.delivery.drain)
    print(upstream.requests)
