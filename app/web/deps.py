"""What endpoints take as parameters: `Annotated` aliases over what the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from ..campaigns import Campaign, CampaignNotFound
from ..resources import Resources
from ..site import Listing, Site
from .languages import request_language


async def _resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


async def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


async def _site(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


async def _listing(keyword: str, site: Annotated[Site, Depends(_site)]) -> Listing:
    listing = site.listing(keyword)
    if listing is None:
        raise CampaignNotFound(keyword)
    return listing


async def _localized(request: Request, keyword: str, site: Annotated[Site, Depends(_site)]) -> Listing:
    default = await _listing(keyword, site)
    language = request_language(request, default.languages)
    return site.listing(keyword, language) or default


async def _campaign(listing: Annotated[Listing, Depends(_listing)]) -> Campaign:
    return listing.campaign


# (async functions on purpose: FastAPI runs plain `def` dependencies in a thread pool)
ResourcesDep = Annotated[Resources, Depends(_resources)]
TemplatesDep = Annotated[Jinja2Templates, Depends(_templates)]
SiteDep = Annotated[Site, Depends(_site)]
# The campaign of the path's {keyword}, with its disclosure; CampaignNotFound (404) else.
ListingDep = Annotated[Listing, Depends(_listing)]
# The same in the visitor's language (`?lang=`, Accept-Language): for the pages a person reads.
LocalizedListingDep = Annotated[Listing, Depends(_localized)]
CampaignDep = Annotated[Campaign, Depends(_campaign)]
