"""What the operator reads: the export of records, one number's proof, a job's history, the counts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, null, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..exports import EXPORT_FIELDS
from ..outbox import Kind
from .tables import disclosures, job_events, jobs, opt_outs, signups

Reading = Callable[[], AbstractAsyncContextManager[AsyncConnection]]

_EXPORT_PAGE = 500

_SIGNUP_TEXT = disclosures.alias("signup_text")
_OPT_OUT_TEXT = disclosures.alias("opt_out_text")
# A signup's language, once signups keep one (a column of its own); None until then.
_SIGNUP_LANGUAGE = signups.c["language"] if "language" in signups.c else null()

# Every record, a signup's or an opt-out's, with its disclosure's text and where its
# job stands: one row per job that has a record.
_RECORD_WITH_JOB = (
    select(
        jobs.c.id,
        jobs.c.kind,
        jobs.c.created_at,
        func.coalesce(signups.c.campaign, opt_outs.c.campaign).label("campaign"),
        func.coalesce(signups.c.phone, opt_outs.c.phone).label("phone"),
        signups.c.group_ids,
        func.coalesce(signups.c.page_url, opt_outs.c.page_url).label("page_url"),
        signups.c.source,
        func.coalesce(_SIGNUP_LANGUAGE, opt_outs.c.language).label("language"),
        func.coalesce(signups.c.client_ip, opt_outs.c.client_ip).label("client_ip"),
        func.coalesce(signups.c.user_agent, opt_outs.c.user_agent).label("user_agent"),
        func.coalesce(signups.c.disclosure_sha256, opt_outs.c.notice_sha256).label("disclosure_sha256"),
        func.coalesce(_SIGNUP_TEXT.c.text, _OPT_OUT_TEXT.c.text).label("disclosure_text"),
        jobs.c.state,
        jobs.c.attempts,
        jobs.c.upstream_messages,
        jobs.c.last_error,
        jobs.c.duplicate_of,
        jobs.c.updated_at,
    )
    .outerjoin(signups, signups.c.id == jobs.c.id)
    .outerjoin(_SIGNUP_TEXT, _SIGNUP_TEXT.c.sha256 == signups.c.disclosure_sha256)
    .outerjoin(opt_outs, opt_outs.c.id == jobs.c.id)
    .outerjoin(_OPT_OUT_TEXT, _OPT_OUT_TEXT.c.sha256 == opt_outs.c.notice_sha256)
    .where(or_(signups.c.id.is_not(None), opt_outs.c.id.is_not(None)))
)


async def export(
    reading: Reading,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    campaign: str | None = None,
    kind: Kind | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """Records (signups and opt-outs, or one `kind`) with their disclosure text and
    delivery history, oldest first."""
    where = []
    if since is not None:
        where.append(jobs.c.created_at >= since)
    if until is not None:
        where.append(jobs.c.created_at < until)
    if campaign is not None:
        where.append(func.lower(jobs.c.campaign) == campaign.lower())
    if kind is not None:
        where.append(jobs.c.kind == kind.value)
    # In pages of ids, each read in one short transaction: nothing is held open
    # while the caller writes a page out, so signups keep flowing during an export.
    after = 0
    while True:
        page = _RECORD_WITH_JOB.where(jobs.c.id > after, *where).order_by(jobs.c.id).limit(_EXPORT_PAGE)
        async with reading() as conn:
            rows = (await conn.execute(page)).mappings().all()
            if not rows:
                return
            history = await _histories(conn, [row["id"] for row in rows])
        for row in rows:
            yield {**{key: row[key] for key in EXPORT_FIELDS}, "history": history.get(row["id"], [])}
        after = rows[-1]["id"]


async def _histories(conn: AsyncConnection, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """The delivery history of each of these jobs, oldest first."""
    events = (
        await conn.execute(
            select(job_events.c.job_id, job_events.c.at, job_events.c.state, job_events.c.detail)
            .where(job_events.c.job_id.in_(ids))
            .order_by(job_events.c.id)
        )
    ).all()
    history: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        history.setdefault(event.job_id, []).append(
            {"at": event.at.isoformat(), "state": event.state, "detail": event.detail}
        )
    return history


async def proof(reading: Reading, phones: list[str]) -> list[dict[str, Any]]:
    """Every record of a number, oldest first, as `export` gives them: each signup with
    the exact disclosure shown, its page and source, address and device, and its
    delivery history; each opt-out with the notice its page showed. `phones` are the
    forms the number may be stored under: its digits, and its keyed hash once its
    person was forgotten (app.consent.forgotten)."""
    query = _RECORD_WITH_JOB.where(jobs.c.phone.in_(phones)).order_by(jobs.c.created_at, jobs.c.id)
    async with reading() as conn:
        rows = (await conn.execute(query)).mappings().all()
        history = await _histories(conn, [row["id"] for row in rows]) if rows else {}
    return [{**{key: row[key] for key in EXPORT_FIELDS}, "history": history.get(row["id"], [])} for row in rows]


async def history(reading: Reading, job_id: int) -> list[tuple[str, str | None]]:
    query = select(job_events.c.state, job_events.c.detail).where(job_events.c.job_id == job_id)
    async with reading() as conn:
        rows = (await conn.execute(query.order_by(job_events.c.id))).all()
    return [(row.state, row.detail) for row in rows]


# Opt-outs are the account's, whichever page took them: counted apart from every
# campaign's signups, under this name (no keyword has brackets).
OPT_OUTS = "(opt-outs)"


async def counts(reading: Reading) -> list[tuple[str, str, int]]:
    """(campaign, state, count) for every campaign and state that has jobs; opt-outs
    under `OPT_OUTS`."""
    campaign = case((jobs.c.kind == Kind.OPT_OUT.value, OPT_OUTS), else_=jobs.c.campaign).label("campaign")
    query = (
        select(campaign, jobs.c.state, func.count()).group_by(campaign, jobs.c.state).order_by(campaign, jobs.c.state)
    )
    async with reading() as conn:
        return [(row[0], row[1], row[2]) for row in (await conn.execute(query)).all()]
