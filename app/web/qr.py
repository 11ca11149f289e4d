"""A campaign in print: its QR codes.

    GET /qr/{keyword}.svg?src=TAG&scale=N    the QR code of the page (app.qr)
    GET /qr/{keyword}.png?src=TAG&scale=N

A code is the same bytes for as long as the campaign and OPTIN_PUBLIC_URL stay as they
are, so it is cached for a day by anyone (`public`) and revalidated by its ETag (304).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..consent import page_url
from ..qr import BadParameter, Kind, QRImage, placement, qr_image, scale_of
from ..site import Listing
from .deps import ListingDep, ResourcesDep, TemplatesDep

router = APIRouter(include_in_schema=False)

# A day, as the issue asks of a printed code's image; a changed campaign or public URL
# makes other bytes and so another ETag.
QR_CACHE_CONTROL = "public, max-age=86400"


@router.get("/qr/{keyword}.svg")
async def qr_svg(request: Request, listing: ListingDep, resources: ResourcesDep, templates: TemplatesDep) -> Response:
    return await _qr(request, listing, Kind.SVG, public_url=resources.settings.public_url, templates=templates)


@router.get("/qr/{keyword}.png")
async def qr_png(request: Request, listing: ListingDep, resources: ResourcesDep, templates: TemplatesDep) -> Response:
    return await _qr(request, listing, Kind.PNG, public_url=resources.settings.public_url, templates=templates)


async def _qr(
    request: Request, listing: Listing, kind: Kind, *, public_url: str, templates: Jinja2Templates
) -> Response:
    try:
        src = placement(request.query_params.get("src"))
        scale = scale_of(request.query_params.get("scale"))
    except BadParameter as exc:
        return bad_request(request, templates, str(exc))
    text = page_url(public_url, listing.campaign, {"src": src} if src else {})
    # Made in a thread the first time: a large PNG costs tens of milliseconds of CPU,
    # which signups on the event loop should not wait behind.
    image: QRImage = await run_in_threadpool(qr_image, text, kind, scale)
    headers = {"etag": image.etag, "cache-control": QR_CACHE_CONTROL}
    if _matches(request.headers.get("if-none-match"), image.etag):
        return Response(status_code=304, headers=headers)
    return Response(image.body, media_type=image.media_type, headers=headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether If-None-Match names `etag` (RFC 9110 13.1.2: "*", or any of a list of
    tags, compared weakly, so a W/ that a proxy added still matches)."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def bad_request(request: Request, templates: Jinja2Templates, detail: str) -> HTMLResponse:
    """400 in the site's look, saying what to change in the address."""
    return templates.TemplateResponse(
        request,
        "message.html",
        {"heading": "Something was wrong with that address", "detail": detail},
        status_code=400,
    )
