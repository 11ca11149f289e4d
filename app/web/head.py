"""HEAD on every route of the FastAPI part of the app (app.main)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """HEAD is GET without the body (RFC 9110 9.3.2), on every route: FastAPI's routes
    answer only the methods they list. The app below sees a copy of the scope with
    GET; the middleware above, and the server, still see HEAD. (Starlette's own
    `Route`, the campaign pages', answers HEAD by itself.)"""

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
