"""The app `create_app` declares: every request, the campaign pages included, goes
through the one middleware stack it declares."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.support.page import Page

from .conftest import FakeUpstream, MakeClient

PHONE = "(201) 555-0123"


class Probe:
    """A middleware as a later feature would add one (metrics, request ids): it notes
    each request it sees with the status of its answer."""

    def __init__(self, app: ASGIApp, *, seen: list[tuple[str, str, int]]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noted)


def test_the_page_view_the_form_post_head_and_404_pass_the_declared_middleware(
    make_client: MakeClient, upstream: FakeUpstream
) -> None:
    seen: list[tuple[str, str, int]] = []
    client = make_client(middleware=[Middleware(Probe, seen=seen)])

    page = client.get("/join")
    fields = {
        e.attrs["name"]: e.attrs.get("value", "") for e in Page(page.text).find_all("input") if e.attrs.get("name")
    }
    signup = client.post("/JOIN", data=fields | {"phone": PHONE})
    head = client.head("/join")
    missing = client.get("/no-such-keyword")

    assert (page.status_code, signup.status_code, head.status_code, missing.status_code) == (200, 303, 200, 404)
    assert len(upstream.requests) == 1  # a real signup
    assert seen == [
        ("GET", "/join", 200),
        ("POST", "/JOIN", 303),
        ("HEAD", "/join", 200),
        ("GET", "/no-such-keyword", 404),
    ]
    assert head.content == b"" and "Page not found" in missing.text
