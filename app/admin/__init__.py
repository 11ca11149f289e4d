"""The operator's console under /admin (the edge, as app.web is): campaigns with their
embed and print kit, the funnel by placement, the queue, the export, the audit log.

    auth.py      the password, the session cookie, CSRF, the login limit
    gate.py      the route of /admin/*: every request is checked there first
    views.py     the pages
    charts.py    the funnel's chart as inline SVG
    console.py   the parts the lifespan builds (`open_console`)

It exists only when OPTIN_ADMIN_PASSWORD_HASH is set; otherwise every path under
/admin answers 404, as any path the service lacks.
"""

from __future__ import annotations

from .console import Console, open_console
from .gate import Gate
from .views import routes


def console_route() -> Gate:
    """The route of /admin and below, for the app to declare."""
    return Gate(routes)


__all__ = ["Console", "Gate", "console_route", "open_console"]
