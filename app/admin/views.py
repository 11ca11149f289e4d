"""The console's pages (every one behind `app.admin.gate.Gate`):

    GET  /admin                  campaigns: links, the embed snippet, QR codes, posters
    GET  /admin/login            the login form;  POST: log in
    POST /admin/logout
    GET  /admin/funnel           views to delivered signups, by campaign and src, for a period
    GET  /admin/queue            signups by state; the failed ones with their last error
    POST /admin/queue/retry      queue failed signups again (one, a campaign's, or all)
    GET  /admin/export           the export's form;  POST: the export, streamed
    GET  /admin/audit            what was done in the console, by whom (address) and when
    GET  /admin/proof            a number's proof of consent, once a lookup is wired in;  POST: look up

Forms follow Post/Redirect/Get; bad input is the same page again with a 400 that says
what to change. The console is in English.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..exports import FORMATS, export_text, moment_of
from ..funnel import VIEWS, FunnelRow, funnel_rows
from ..i18n import NAMES
from ..qr import BadParameter, placement
from ..site import Listing, Site
from ..throttle import TooManyRequests
from ..web.qr import POSTER_FORMATS
from ..web.visits import visitor_ip
from .auth import LOGIN_COOKIE
from .charts import bar_chart
from .console import Console
from .gate import CSRF_FIELD, LOGIN_PATH, console_of, end_session, form_of, session_of

HOME = "/admin"
PERIODS = {"today": "Today", "7d": "7 days", "30d": "30 days", "custom": "Custom"}
MAX_PERIOD_DAYS = 366
WRONG_PASSWORD = "That password is not right."


class BadInput(Exception):
    """A console form's value the page cannot use; the message says what to change."""


def _address(request: Request, console: Console) -> str | None:
    return visitor_ip(request.scope, console.settings)


async def _render(
    request: Request, name: str, context: Mapping[str, Any], *, status_code: int = 200, page: str = ""
) -> Response:
    console = console_of(request)
    session = session_of(request)
    response: Response = request.app.state.templates.TemplateResponse(
        request,
        f"admin/{name}",
        {
            "csrf_field": CSRF_FIELD,
            "csrf": console.sessions.csrf(session) if session is not None else "",
            "signed_in": session is not None,
            "page": page,
            "paused": await console.delivery.pacer.paused_for() if session is not None else 0,
            "proof": console.proof is not None,
            **context,
        },
        status_code=status_code,
    )
    return response


# -- access ----------------------------------------------------------------------


async def login_page(request: Request) -> Response:
    if session_of(request) is not None:
        return RedirectResponse(HOME, status_code=303)
    return await _login_form(request)


async def _login_form(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    console = console_of(request)
    nonce = request.cookies.get(LOGIN_COOKIE)
    cookie = None
    if not nonce:
        nonce, cookie = console.sessions.login_nonce()
    response = await _render(
        request,
        "login.html",
        {"login_csrf": console.sessions.login_csrf(nonce), "error": error},
        status_code=status_code,
    )
    if cookie is not None:
        response.headers.append("set-cookie", cookie)
    return response


async def log_in(request: Request) -> Response:
    console = console_of(request)
    address = _address(request, console)
    try:
        await console.login_limit.attempt(address)
    except TooManyRequests as exc:
        response = await _login_form(
            request, error="Too many login attempts. Please wait a few minutes and try again.", status_code=429
        )
        response.headers["retry-after"] = str(exc.retry_after)
        return response
    if not await console.passwords.check(form_of(request).get("password", "")):
        await console.audit("login failed", address)
        # Every wrong password gets this same answer.
        return await _login_form(request, error=WRONG_PASSWORD, status_code=401)
    request.scope["admin.session"] = console.sessions.start()
    await console.audit("login", address)
    response = RedirectResponse(HOME, status_code=303)
    response.headers.append("set-cookie", console.sessions.cleared(LOGIN_COOKIE))
    return response


async def log_out(request: Request) -> Response:
    console = console_of(request)
    session = session_of(request)
    assert session is not None  # the gate lets no one here without
    await console.sessions.end(session)
    end_session(request)
    await console.audit("logout", _address(request, console))
    return RedirectResponse(LOGIN_PATH, status_code=303)


# -- campaigns -------------------------------------------------------------------


def _kit(listing: Listing, public_url: str, src: str | None) -> dict[str, Any]:
    """A campaign's links for one placement (`src`): what to print, embed and share."""
    campaign = listing.campaign
    keyword = campaign.keyword
    query = f"?{urlencode({'src': src})}" if src else ""
    joined = f"&{urlencode({'src': src})}" if src else ""
    snippet = (
        f'<script async src="{public_url}/static/embed.js" data-optin-campaign="{keyword}"'
        + (f' data-optin-src="{src}"' if src else "")
        + "></script>"
    )
    return {
        "listing": listing,
        "campaign": campaign,
        "src": src or "",
        "page_url": f"{public_url}{campaign.path}{query}",
        "embed_url": f"{public_url}/embed/{keyword}{query}",
        # Each of its other languages' page and embed, to check what a visitor reads.
        "translations": [
            (NAMES.get(language, language), f"{public_url}{path}{query}{'&' if query else '?'}lang={language}")
            for language in campaign.languages
            if language != campaign.default_language
            for path in (campaign.path, f"/embed/{keyword}")
        ],
        "snippet": snippet,
        "qr_svg": f"/qr/{keyword}.svg{query}",
        "qr_png": f"/qr/{keyword}.png{query}",
        "posters": [(name, f"/{keyword}/poster?format={name}{joined}") for name in POSTER_FORMATS],
        "text_to": campaign.text_to,
    }


async def campaigns(request: Request) -> Response:
    console = console_of(request)
    site: Site = request.app.state.site
    chosen = request.query_params.get("campaign", "")
    public_url = console.settings.public_url
    kits = []
    errors: dict[str, str] = {}
    for listing in site.listings:
        src = None
        if listing.key == chosen.lower():
            try:
                src = placement(request.query_params.get("src") or None)
            except BadParameter as exc:
                errors[listing.key] = str(exc)
        kits.append(_kit(listing, public_url, src))
    return await _render(
        request,
        "campaigns.html",
        {"kits": kits, "errors": errors},
        status_code=400 if errors else 200,
        page="campaigns",
    )


# -- funnel ----------------------------------------------------------------------


def period_of(params: Mapping[str, str], now: datetime) -> tuple[str, datetime, datetime]:
    """The period a funnel's query asks for: its name, from (midnight UTC), up to."""
    name = params.get("period") or "7d"
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    tomorrow = today + timedelta(days=1)
    if name == "today":
        return name, today, tomorrow
    if name in ("7d", "30d"):
        return name, tomorrow - timedelta(days=int(name[:-1])), tomorrow
    if name != "custom":
        raise BadInput(f"period must be one of {', '.join(PERIODS)}")
    try:
        # Whole days: the chart's bars and the table's hours begin at midnight UTC.
        since = datetime.combine(date.fromisoformat(params.get("since", "")), time(), UTC)
        until = datetime.combine(date.fromisoformat(params.get("until", "")), time(), UTC) + timedelta(days=1)
    except ValueError:
        raise BadInput("a custom period needs a From and a To date, such as 2026-12-01") from None
    if until <= since:
        raise BadInput("the To date must not be before the From date")
    if until - since > timedelta(days=MAX_PERIOD_DAYS):
        raise BadInput(f"a period can be at most {MAX_PERIOD_DAYS} days")
    return name, since, until


def _series(counts: list[tuple[str, str, datetime, str, int]], since: datetime, until: datetime) -> list[Any]:
    """Views and signups (delivered at once or queued) per hour for a day, else per day."""
    hourly = until - since <= timedelta(days=1)
    step = timedelta(hours=1) if hourly else timedelta(days=1)
    buckets: dict[datetime, list[int]] = {}
    start = since
    while start < until:
        buckets[start] = [0, 0]
        start += step
    for _campaign, _src, hour, metric, count in counts:
        slot = hour.replace(minute=0, second=0, microsecond=0) if hourly else hour.replace(hour=0, minute=0)
        slot = slot.replace(second=0, microsecond=0)
        if slot not in buckets:
            continue
        if metric == VIEWS:
            buckets[slot][0] += count
        elif metric in ("delivered", "queued"):
            buckets[slot][1] += count
    label = "%H:00" if hourly else "%d %b"
    return [(slot.strftime(label), views, signups) for slot, (views, signups) in buckets.items()]


async def funnel(request: Request) -> Response:
    console = console_of(request)
    await console.up_to_date()
    params = request.query_params
    campaign = params.get("campaign") or None
    try:
        name, since, until = period_of(params, datetime.now(UTC))
    except BadInput as exc:
        return await _render(
            request,
            "funnel.html",
            {"error": str(exc), "periods": PERIODS, "period": params.get("period", ""), "rows": [], "params": params},
            status_code=400,
            page="funnel",
        )
    counts = await console.store.counts(since=since, until=until, campaign=campaign)
    delivery = await console.store.delivery(since=since, until=until, campaign=campaign)
    opt_outs = await console.opt_outs(since, until, campaign) if console.opt_outs is not None else None
    rows: list[FunnelRow] = funnel_rows(counts, delivery, opt_outs)
    site: Site = request.app.state.site
    return await _render(
        request,
        "funnel.html",
        {
            "periods": PERIODS,
            "period": name,
            "since": since,
            "until": until - timedelta(days=1),
            "rows": rows,
            "chart": bar_chart(_series(counts, since, until)),
            "campaigns": [item.key for item in site.listings],
            "campaign": campaign or "",
            "params": params,
        },
        page="funnel",
    )


# -- queue -----------------------------------------------------------------------

# The states an operator can act on: failed, and held once signups can be held.
STUCK_STATES = ("failed", "held")


async def queue(request: Request) -> Response:
    console = console_of(request)
    counts = await console.delivery.outbox.counts()
    by_state: dict[str, int] = {}
    for _campaign, state, count in counts:
        by_state[state] = by_state.get(state, 0) + count
    stuck = await console.store.stuck(STUCK_STATES)
    return await _render(
        request,
        "queue.html",
        {"counts": counts, "by_state": sorted(by_state.items()), "stuck": stuck, "done": request.query_params},
        page="queue",
    )


async def retry(request: Request) -> Response:
    console = console_of(request)
    form = form_of(request)
    job = form.get("job") or None
    campaign = form.get("campaign") or None
    # Held signups (refused for the business's set-up) are sent again only when asked
    # for by name, once the set-up is fixed: as `optin retry-failed --held`.
    held = form.get("held") == "1"
    if job is not None and not job.isdigit():
        return await _render(
            request,
            "message.html",
            {"heading": "Bad request", "detail": "job must be a signup's number"},
            status_code=400,
        )
    count = await console.delivery.outbox.retry_failed(campaign=campaign, held=held, job_id=int(job) if job else None)
    console.delivery.wake()
    kind = "held" if held else "failed"
    what = f"signup {job}" if job else f"{kind} signups of {campaign}" if campaign else f"all {kind} signups"
    await console.audit("retry", _address(request, console), f"{what}: {count} queued again")
    return RedirectResponse(f"{HOME}/queue?retried={count}", status_code=303)


# -- export ----------------------------------------------------------------------


async def export_page(request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    site: Site = request.app.state.site
    return await _render(
        request,
        "export.html",
        {
            "formats": FORMATS,
            "campaigns": [item.campaign.keyword for item in site.listings],
            "error": error,
            "form": form_of(request),
        },
        status_code=status_code,
        page="export",
    )


async def export(request: Request) -> Response:
    console = console_of(request)
    form = form_of(request)
    fmt = form.get("format") or "csv"
    try:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        since = moment_of(form["since"]) if form.get("since") else None
        until = moment_of(form["until"]) if form.get("until") else None
    except ValueError as exc:
        return await export_page(request, error=str(exc), status_code=400)
    campaign = form.get("campaign") or None
    filters = ", ".join(
        f"{k}={v}"
        for k, v in (
            ("format", fmt),
            ("since", form.get("since")),
            ("until", form.get("until")),
            ("campaign", campaign),
        )
        if v
    )
    await console.audit("export", _address(request, console), filters)
    records = console.delivery.outbox.export(since=since, until=until, campaign=campaign)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        (text.encode() async for text in export_text(records, fmt)),
        media_type="text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson",
        headers={"content-disposition": f'attachment; filename="optin-export-{stamp}.{fmt}"'},
    )


# -- proof -----------------------------------------------------------------------


async def proof_page(request: Request) -> Response:
    """A number's proof of consent, printable; only once a lookup is wired in
    (`Console.proof`). The number is posted, so it stays out of URLs and access logs."""
    console = console_of(request)
    if console.proof is None:
        raise HTTPException(404)
    records = None
    phone = ""
    if request.method == "POST":
        phone = form_of(request).get("phone", "").strip()
        if not phone:
            return await _render(
                request, "proof.html", {"error": "Type the number to look up.", "phone": ""}, status_code=400
            )
        records = await console.proof(phone)
        # Masked: the audit log must not keep a number that `optin forget` may erase.
        digits = "".join(ch for ch in phone if ch.isdigit())
        await console.audit("number looked up", _address(request, console), "•••" + digits[-4:])
    return await _render(request, "proof.html", {"records": records, "phone": phone, "error": None}, page="proof")


# -- audit -----------------------------------------------------------------------


async def audit(request: Request) -> Response:
    console = console_of(request)
    return await _render(request, "audit.html", {"entries": await console.store.audit()}, page="audit")


routes = [
    Route(HOME, campaigns, methods=["GET"], name="admin"),
    Route(LOGIN_PATH, login_page, methods=["GET"]),
    Route(LOGIN_PATH, log_in, methods=["POST"]),
    Route(f"{HOME}/logout", log_out, methods=["POST"]),
    Route(f"{HOME}/funnel", funnel, methods=["GET"]),
    Route(f"{HOME}/queue", queue, methods=["GET"]),
    Route(f"{HOME}/queue/retry", retry, methods=["POST"]),
    Route(f"{HOME}/export", export_page, methods=["GET"]),
    Route(f"{HOME}/export", export, methods=["POST"]),
    Route(f"{HOME}/audit", audit, methods=["GET"]),
    Route(f"{HOME}/proof", proof_page, methods=["GET", "POST"]),
]
