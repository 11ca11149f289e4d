"""The gate every request under /admin passes first, whatever its route: so a route
added later is behind it without a word.

- No console (OPTIN_ADMIN_PASSWORD_HASH unset): 404, as for any path the service lacks.
- No live session: a GET goes to the login page (303), anything else is refused (403);
  only the login page itself is open.
- Every POST carries the CSRF token of its session (of the login form's cookie, for
  the login): otherwise 403, before the endpoint runs.
- Every answer is never cached, and renews the session's cookie (its idle time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Router
from starlette.types import Message, Receive, Scope, Send

from ..web.forms import read_form
from ..web.security import BodyLimit
from .auth import LOGIN_COOKIE, SESSION_COOKIE, Session
from .console import Console

LOGIN_PATH = "/admin/login"
# The paths open without a session.
PUBLIC_PATHS = frozenset({LOGIN_PATH})
CSRF_FIELD = "csrf"
# Every field a console form has (app.admin.views); others are not read.
FORM_FIELDS = frozenset({CSRF_FIELD, "password", "campaign", "job", "format", "since", "until", "phone", "held"})


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def session_of(request: Request) -> Session | None:
    session: Session | None = request.scope.get("admin.session")
    return session


def form_of(request: Request) -> dict[str, str]:
    """A POST's form, as the gate read it."""
    form: dict[str, str] = request.scope.get("admin.form", {})
    return form


def end_session(request: Request) -> None:
    """The answer clears the session's cookie rather than renew it (logout)."""
    request.scope["admin.session"] = None


class Gate(BaseRoute):
    """The route of /admin and every path below it, for the app to declare: its
    requests pass the checks above, then go to the console's own `routes` (full
    paths). No slash is added or taken away (a redirect built from the Host header)."""

    def __init__(self, routes: Sequence[BaseRoute], prefix: str = "/admin") -> None:
        self.prefix = prefix
        self.router = Router(list(routes), redirect_slashes=False)
        # The login's and the other forms' bodies are read here, within the body limit.
        self._limited = BodyLimit(self._checked)

    @property
    def routes(self) -> list[BaseRoute]:
        """The console's routes (Starlette's Mount lists them from here)."""
        return self.router.routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        return self.router.url_path_for(name, **path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if getattr(scope["app"].state, "console", None) is None:
            raise HTTPException(404)
        await self._limited(scope, receive, send)

    async def _checked(self, scope: Scope, receive: Receive, send: Send) -> None:
        console: Console = scope["app"].state.console
        request = Request(scope, receive)
        public = scope["path"] in PUBLIC_PATHS
        session = await console.sessions.read(request.cookies.get(SESSION_COOKIE))
        if session is None and not public:
            refused: Response
            if request.method in ("GET", "HEAD"):
                refused = RedirectResponse(LOGIN_PATH, status_code=303)
            else:
                refused = _refusal(request, 403, "Your console session has ended. Please log in again.")
            await _no_store(refused)(scope, receive, send)
            return
        if request.method == "POST":
            form = await read_form(request, fields=FORM_FIELDS)
            scope["admin.form"] = form
            if session is not None and not public:
                expected = console.sessions.csrf(session)
            else:
                nonce = request.cookies.get(LOGIN_COOKIE)
                expected = console.sessions.login_csrf(nonce) if nonce else ""
            if not expected or not console.sessions.same(form.get(CSRF_FIELD), expected):
                refused = _refusal(
                    request,
                    403,
                    "This form has expired or was not sent from the console. Please reload it and try again.",
                )
                await _no_store(refused)(scope, receive, send)
                return
        scope["admin.session"] = session
        had_session = session is not None

        async def renewing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"cache-control", b"no-store")]
                current: Session | None = scope.get("admin.session")
                if current is not None:
                    headers.append((b"set-cookie", console.sessions.session_cookie(current).encode()))
                elif had_session:
                    headers.append((b"set-cookie", console.sessions.cleared().encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.router(scope, receive, renewing)


def _refusal(request: Request, status: int, detail: str) -> Response:
    templates = request.app.state.templates
    response: Response = templates.TemplateResponse(
        request,
        "admin/message.html",
        {"heading": "Not allowed", "detail": detail, "signed_in": False, "paused": 0, "page": ""},
        status_code=status,
    )
    return response


def _no_store(response: Response) -> Response:
    response.headers["cache-control"] = "no-store"
    return response
