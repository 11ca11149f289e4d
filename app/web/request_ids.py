"""Request ids, for JSON logs (`app.logs`): each request's id is its trusted proxy's
`X-Request-ID`, or one made here; sent back in the answer's `X-Request-ID` header and
carried to every line logged on the request's behalf."""

from __future__ import annotations

import ipaddress
import itertools
import os
import re
import secrets
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import current_request_id
from ..settings import Settings, SettingsError, load_settings

_HEADER = b"x-request-id"
# What a proxy's id may be to be taken as it is: visible ASCII, not too long (the
# header goes back out, and into every line of the request).
_GOOD_ID = re.compile(rb"[\x21-\x7e]{1,128}")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# A made id: 16 random hex digits for this process, then a count of its requests (32
# hex digits in all). Unique across processes and restarts without the cost of a
# uuid4 per request (more than half of the middleware's time); nothing relies on it
# being unguessable.
_PROCESS_PREFIX = secrets.token_hex(8)
_serial = itertools.count(1)


def _new_process() -> None:
    # A forked child (a supervisor's worker) must not repeat its parent's ids.
    global _PROCESS_PREFIX, _serial
    _PROCESS_PREFIX, _serial = secrets.token_hex(8), itertools.count(1)


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_new_process)


def _peer_trusted(scope: Scope, trusted: tuple[Network, ...]) -> bool:
    """Whether the connection comes from one of the trusted proxies (as app.consent's
    client_ip decides whose X-Forwarded-For to believe)."""
    client = scope.get("client")
    if not trusted or not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in trusted)


class RequestIds:
    """Pure ASGI middleware: each HTTP request gets an id, for its log lines and its
    answer's `X-Request-ID` header.

    The id is the request's `X-Request-ID` when the peer is a trusted proxy and the
    value is sane; otherwise a new one (a client must not pick the id that an operator
    will search the logs for)."""

    def __init__(self, app: ASGIApp, *, trusted: Iterable[Network] = ()) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def _id_for(self, scope: Scope) -> bytes:
        if _peer_trusted(scope, self.trusted):
            for name, value in scope["headers"]:
                if name == _HEADER and _GOOD_ID.fullmatch(value):
                    return bytes(value)
        return f"{_PROCESS_PREFIX}{next(_serial):016x}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = self._id_for(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (_HEADER, request_id)]}
            await send(message)

        token = current_request_id.set(request_id.decode())
        await self.app(scope, receive, send_with_id)
        # Not reset when the app raised: the lines logged further out about that
        # failure (the 500, its access line) are this request's too. Each request runs
        # in a context of its own under uvicorn, so the id goes no further.
        current_request_id.reset(token)


def request_ids(app: ASGIApp, *, settings: Settings | None) -> ASGIApp:
    """`RequestIds` around `app` when the log format is JSON; `app` itself otherwise,
    so text mode adds no layer to any request.

    A factory for create_app's middleware list: Starlette calls it once, when it builds
    the middleware stack at the first event (the lifespan's start). With no `settings`
    (the module-level app) it reads them from the environment, as the lifespan does;
    settings that do not load leave the app as it is, for the lifespan to report."""
    if settings is None:
        try:
            settings = load_settings()
        except SettingsError:
            return app
    if settings.log_format != "json":
        return app
    return RequestIds(app, trusted=settings.trusted_proxies)
