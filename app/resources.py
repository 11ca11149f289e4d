"""What the running service holds: built by the lifespan, read by the endpoints.

The campaigns, their disclosures and pages are not here but in `app.state.site`
(`app.site.Site`), which a reload of the campaigns file swaps whole."""

from __future__ import annotations

from dataclasses import dataclass

from .delivery import Delivery
from .guard import Guard
from .metrics import Metrics
from .settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    delivery: Delivery
    guard: Guard
    metrics: Metrics

    @property
    def sandbox(self) -> bool:
        return self.settings.sandbox
