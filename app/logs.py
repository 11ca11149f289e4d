"""The service's own log lines (`app.*`): shown at `OPTIN_LOG_LEVEL` however it is started.

uvicorn configures only its own loggers, so under `uvicorn app.main:app` the root
logger has no handler and Python's fallback prints WARNING and above: the INFO lines
the README promises (bot traps, refusals, deliveries) would never appear. At start-up
the `app` logger gets a handler to stderr and the level of the setting, unless logging
is configured already (a `--log-config`, a test's capture): then that configuration
decides, untouched.
"""

from __future__ import annotations

import logging
import sys

_HANDLER_NAME = "optin-pages"


def configure_logging(level: str) -> None:
    """Send `app.*` records at `level` and above to stderr, if nothing else is set up."""
    logger = logging.getLogger("app")
    ours = [handler for handler in logger.handlers if handler.name == _HANDLER_NAME]
    if not ours and (logging.getLogger().handlers or logger.handlers):
        return
    if not ours:
        handler = logging.StreamHandler(sys.stderr)
        handler.name = _HANDLER_NAME
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        # Ours is the only handler for these records: should someone configure the root
        # logger later, they are not printed twice.
        logger.propagate = False
    logger.setLevel(level)
