"""What the running service holds: built by the lifespan, read by the endpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .campaigns import Campaign
from .consent import Disclosure
from .delivery import Delivery
from .guard import Guard
from .settings import Settings

if TYPE_CHECKING:
    from .pages import PrerenderedPage


@dataclass(frozen=True)
class Resources:
    settings: Settings
    campaigns: dict[str, Campaign]
    # Rendered once at start-up, keyed like `campaigns`: the page shows exactly this
    # text and each consent record points at its hash.
    disclosures: dict[str, Disclosure]
    delivery: Delivery
    guard: Guard
    # Each campaign's signup page, rendered once (see app.pages.prerender).
    pages: dict[str, PrerenderedPage] = field(default_factory=dict)

    @property
    def sandbox(self) -> bool:
        return self.settings.sandbox

    def campaign(self, keyword: str) -> Campaign | None:
        return self.campaigns.get(keyword.lower())
