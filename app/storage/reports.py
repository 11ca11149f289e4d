"""What the operator reads: the export of consent records, a job's history, the counts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..exports import EXPORT_FIELDS
from .tables import disclosures, job_events, jobs, signups

Reading = Callable[[], AbstractAsyncContextManager[AsyncConnection]]

_EXPORT_PAGE = 500

# A consent record with its disclosure's text and where its opt-in job stands.
_SIGNUP_WITH_JOB = (
    select(
        signups,
        disclosures.c.text.label("disclosure_text"),
        jobs.c.state,
        jobs.c.attempts,
        jobs.c.upstream_messages,
        jobs.c.last_error,
        jobs.c.duplicate_of,
        jobs.c.updated_at,
    )
    .join(jobs, jobs.c.id == signups.c.id)
    .join(disclosures, disclosures.c.sha256 == signups.c.disclosure_sha256)
)


async def export(
    reading: Reading, *, since: datetime | None = None, until: datetime | None = None, campaign: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Consent records with their disclosure text and delivery history, oldest first."""
    where = []
    if since is not None:
        where.append(signups.c.created_at >= since)
    if until is not None:
        where.append(signups.c.created_at < until)
    if campaign is not None:
        where.append(func.lower(signups.c.campaign) == campaign.lower())
    # In pages of ids, each read in one short transaction: nothing is held open
    # while the caller writes a page out, so signups keep flowing during an export.
    after = 0
    while True:
        page = _SIGNUP_WITH_JOB.where(signups.c.id > after, *where).order_by(signups.c.id).limit(_EXPORT_PAGE)
        async with reading() as conn:
            rows = (await conn.execute(page)).mappings().all()
            if not rows:
                return
            ids = [row["id"] for row in rows]
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
        for row in rows:
            yield {**{key: row[key] for key in EXPORT_FIELDS}, "history": history.get(row["id"], [])}
        after = ids[-1]


async def history(reading: Reading, job_id: int) -> list[tuple[str, str | None]]:
    query = select(job_events.c.state, job_events.c.detail).where(job_events.c.job_id == job_id)
    async with reading() as conn:
        rows = (await conn.execute(query.order_by(job_events.c.id))).all()
    return [(row.state, row.detail) for row in rows]


async def counts(reading: Reading) -> list[tuple[str, str, int]]:
    """(campaign, state, count) for every campaign and state that has jobs."""
    query = (
        select(jobs.c.campaign, jobs.c.state, func.count())
        .group_by(jobs.c.campaign, jobs.c.state)
        .order_by(jobs.c.campaign, jobs.c.state)
    )
    async with reading() as conn:
        return [(row[0], row[1], row[2]) for row in (await conn.execute(query)).all()]
