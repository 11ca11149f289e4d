"""A campaign in print: its QR codes and its poster.

    GET /qr/{keyword}.svg?src=TAG&scale=N    the QR code of the page (app.qr)
    GET /qr/{keyword}.png?src=TAG&scale=N
    GET /{keyword}/poster?src=TAG&format=letter|a4|tent

A code is the same bytes for as long as the campaign and OPTIN_PUBLIC_URL stay as they
are, so it is cached for a day by anyone (`public`) and revalidated by its ETag (304).
The poster is a page to print from the browser, laid out by static/poster.css for one
sheet of its format; its QR code is the SVG above, with the same `src`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from ..consent import page_url
from ..qr import BadParameter, Kind, QRImage, placement, qr_image, scale_of
from ..site import Listing
from .deps import ListingDep, LocalizedListingDep, ResourcesDep, TemplatesDep
from .languages import words

router = APIRouter(include_in_schema=False)

# A day, as the issue asks of a printed code's image; a changed campaign or public URL
# makes other bytes and so another ETag.
QR_CACHE_CONTROL = "public, max-age=86400"

# The poster's sheets (static/poster.css gives each its @page size).
POSTER_FORMATS = ("letter", "a4", "tent")


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


@router.get("/{keyword}/poster")
async def poster(
    request: Request, listing: LocalizedListingDep, resources: ResourcesDep, templates: TemplatesDep
) -> Response:
    """A page to print: the title, the QR code, the short address, the text-to line
    and the whole disclosure with its links written out."""
    try:
        src = placement(request.query_params.get("src"))
        sheet = _format_of(request.query_params.get("format"))
    except BadParameter as exc:
        return bad_request(request, templates, str(exc))
    campaign = listing.campaign
    source = {"src": src} if src else {}
    public_url = resources.settings.public_url
    context = {
        **words(listing.language),
        "campaign": campaign,
        # The campaign's logo and colour, as its pages show them (app.branding).
        "brand": listing.brand,
        "format": sheet,
        "formats": [(name, _poster_link(campaign.path, src, name)) for name in POSTER_FORMATS],
        "disclosure": Markup(listing.disclosure.text),
        "qr_src": f"/qr/{campaign.keyword}.svg" + (f"?{urlencode(source)}" if source else ""),
        "page_url": page_url(public_url, campaign, source),
        # What a person types: no https:// (browsers add it), the keyword as written.
        "short_url": (public_url + campaign.path).removeprefix("https://"),
        "text_to": campaign.text_to,
    }
    return templates.TemplateResponse(request, "poster.html", context, headers={"content-language": listing.language})


def _format_of(value: str | None) -> str:
    if value is None:
        return POSTER_FORMATS[0]
    if value.lower() not in POSTER_FORMATS:
        raise BadParameter("format must be letter, a4 or tent (the default is letter).")
    return value.lower()


def _poster_link(path: str, src: str | None, sheet: str) -> str:
    query = {"src": src} if src else {}
    return f"{path}/poster?{urlencode(query | {'format': sheet})}"


def bad_request(request: Request, templates: Jinja2Templates, detail: str) -> HTMLResponse:
    """400 in the site's look, saying what to change in the address."""
    return templates.TemplateResponse(
        request,
        "message.html",
        {"heading": "Something was wrong with that address", "detail": detail},
        status_code=400,
    )
