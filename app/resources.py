"""What the running service holds: built by the lifespan, read by the endpoints.

The campaigns, their disclosures and pages are not here but in `app.state.site`
(`app.site.Site`), which a reload of the campaigns file swaps whole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.datastructures import State

from .delivery import Delivery
from .guard import Guard
from .settings import Settings

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

    from .site import Site


@dataclass(frozen=True)
class Resources:
    settings: Settings
    delivery: Delivery
    guard: Guard

    @property
    def sandbox(self) -> bool:
        return self.settings.sandbox


class AppState(State):
    """`app.state`, with its attributes read as plain attributes: Starlette's `State`
    finds each through a Python `__getattr__` (half a microsecond), and the page view
    reads two. Set by the lifespan; until then reading one raises AttributeError."""

    resources: Resources
    # Swapped whole by a reload of the campaigns file: each request reads it once.
    site: Site
    templates: Jinja2Templates

    def __init__(self) -> None:
        super().__init__()

    def __setattr__(self, key: Any, value: Any) -> None:
        # Into the instance's own dict, where attribute lookup finds it at once.
        object.__setattr__(self, key, value)

    def __delattr__(self, key: Any) -> None:
        object.__delattr__(self, key)
