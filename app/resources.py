"""What the running service holds: built by the lifespan, read by the endpoints."""

from __future__ import annotations

from dataclasses import dataclass

from .campaigns import Campaign
from .settings import Settings
from .upstream import ProTexting


@dataclass(frozen=True)
class Resources:
    settings: Settings
    campaigns: dict[str, Campaign]
    protexting: ProTexting

    @property
    def sandbox(self) -> bool:
        return self.settings.sandbox
