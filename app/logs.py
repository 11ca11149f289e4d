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
(`uvicorn_json_config`). Each request gets an id (`app.web.request_ids`): its proxy's
`X-Request-ID` when the peer is one of OPTIN_TRUSTED_PROXIES, a new one otherwise,
sent back in the `X-Request-ID` header and carried to every line logged on its behalf
by a context variable. The middleware is installed in JSON mode only:
text lines do not show the id, and a page view does not pay for it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

_HANDLER_NAME = "optin-pages"
_TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"

# The id of the request being answered (app.web.request_ids sets it), for its lines.
current_request_id: ContextVar[str | None] = ContextVar("optin_request_id", default=None)


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
        request_id = current_request_id.get()
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
