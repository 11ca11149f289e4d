"""What endpoints take as parameters: `Annotated` aliases over what the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from .campaigns import Campaign, CampaignNotFound
from .resources import Resources


async def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


async def _campaign(keyword: str, resources: Annotated[Resources, Depends(_resources)]) -> Campaign:
    campaign = resources.campaign(keyword)
    if campaign is None:
        raise CampaignNotFound(keyword)
    return campaign


# (async functions on purpose: FastAPI runs plain `def` dependencies in a thread pool)
ResourcesDep = Annotated[Resources, Depends(_resources)]
TemplatesDep = Annotated[Jinja2Templates, Depends(_templates)]
CampaignDep = Annotated[Campaign, Depends(_campaign)]
