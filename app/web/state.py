"""`app.state`: what the lifespan builds, as the endpoints read it."""

from __future__ import annotations

from typing import Any

from fastapi.templating import Jinja2Templates
from starlette.datastructures import State

from ..admin.console import Console
from ..reload import CampaignsWatcher
from ..resources import Resources
from ..site import Site


class AppState(State):
    """`app.state`, with its attributes read as plain attributes: Starlette's `State`
    finds each through a Python `__getattr__` (half a microsecond), and the page view
    reads two. Set by the lifespan; until then reading one raises AttributeError."""

    resources: Resources
    # Swapped whole by a reload of the campaigns file: each request reads it once.
    site: Site
    templates: Jinja2Templates
    # The campaigns file's watcher (app.reload): what a test or the console asks to reload now.
    reloader: CampaignsWatcher[Site]
    # The operator's console (app.admin); None while OPTIN_ADMIN_PASSWORD_HASH is unset.
    console: Console | None

    def __init__(self) -> None:
        super().__init__()

    def __setattr__(self, key: Any, value: Any) -> None:
        # Into the instance's own dict, where attribute lookup finds it at once.
        object.__setattr__(self, key, value)

    def __delattr__(self, key: Any) -> None:
        object.__delattr__(self, key)
