"""The service's log lines: as text for a person, or as JSON for a log collector.

`OPTIN_LOG_FORMAT=text` (the default): the service's own lines (`app.*`) go to stderr
at `OPTIN_LOG_LEVEL` however it is started. uvicorn configures only its own loggers, so
under `uvicorn app.main:app` the root logger has no handler and Python's fallback
prints WARNING and above: the INFO lines the README promises (bot traps, refusals,
deliveries) would never appear. So at start-up the `app` logger gets a handler to
stderr and the level of the setting, unless logging is configured already (a
`--log-config`, a test's capture): then that configuration decides, untouched.

`OPTIN_LOG_FORMAT=json`: every line is one JSON object (python-json-logger) with
`time`, `level`, `logger` and `message`, and where known `request_id`, `campaign` and
`outcome` (given as `extra=` by the code that logs them), or the access line's
`client`, `method`, `path` and `status`. The root logger gets the handler, so other
libraries' warnings are JSON too; `optin serve` gives uvicorn the same formatter
(`uvicorn_json_config`). Each request gets an id (`RequestIds`): its proxy's
`X-Request-ID` when the peer is one of OPTIN_TRUSTED_PROXIES, a new one otherwise,
sent back in the `X-Request-ID` header and carried to every line logged on its behalf
by a context variable. The middleware is installed in JSON mode only (`request_ids`):
text lines do not show the id, and a page view does not pay for it.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import os
import re
import secrets
import sys
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from .settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

_HANDLER_NAME = "optin-pages"
_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"

_request_id: ContextVar[str | None] = ContextVar("optin_request_id", default=None)


class JsonFormatter(_JsonFormatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, then the
    request's id and whatever the call gave as `extra=`. uvicorn's access lines also
    carry their parts as fields. Usable from any logging configuration, as
    `"()": "app.logs.JsonFormatter"` (a `--log-config` of your own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        # uvicorn passes its coloured copy of each message along as an extra.
        kwargs.setdefault("reserved_attrs", [*RESERVED_ATTRS, "color_message"])
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)
        request_id = _request_id.get()
        if request_id is not None:
            log_data.setdefault("request_id", request_id)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            # uvicorn's access line: '%s - "%s %s HTTP/%s" %d' % (client, method, path, version, status)
            client, method, path, _, status = record.args
            log_data.update(client=client, method=method, path=path, status=status)


def uvicorn_json_config() -> dict[str, Any]:
    """uvicorn's logging configuration (its own default's loggers, handlers and
    streams: errors to stderr, access lines to stdout) with JSON lines."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": JsonFormatter}, "access": {"()": JsonFormatter}},
        "handlers": {
            "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
            "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send `app.*` records at `level` and above to stderr, as text or JSON, if nothing
    else is set up (in JSON mode every other logger's WARNING and above as well)."""
    root, app = logging.getLogger(), logging.getLogger("app")
    ours = [(logger, h) for logger in (root, app) for h in logger.handlers if h.name == _HANDLER_NAME]
    if not ours and (root.handlers or app.handlers):
        return
    # Set up again from scratch: a process that runs several apps (the tests) may
    # change format between them.
    for logger, handler in ours:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.name = _HANDLER_NAME
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        # On the root logger: a library's warning is a line too, and must be JSON. The
        # root's own level (WARNING unless set) still holds for the other loggers.
        root.addHandler(handler)
        app.propagate = True
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
        app.addHandler(handler)
        # Ours is the only handler for these records: should someone configure the root
        # logger later, they are not printed twice.
        app.propagate = False
    app.setLevel(level)


# -- request ids -----------------------------------------------------------------------

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

        token = _request_id.set(request_id.decode())
        await self.app(scope, receive, send_with_id)
        # Not reset when the app raised: the lines logged further out about that
        # failure (the 500, its access line) are this request's too. Each request runs
        # in a context of its own under uvicorn, so the id goes no further.
        _request_id.reset(token)


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
