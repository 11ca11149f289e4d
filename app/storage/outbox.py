"""The outbox, stored: jobs and their records committed, leased, settled and reported.

A job is written, and committed, with its record before anyone calls ProTexting.
Whoever attempts a delivery first takes a lease on the job (`lease_until`); a process
that dies with a lease in hand loses it when it ends, and the job comes due again.
Every write goes through the writer (app.storage.writer): on SQLite its own thread
owns them all. The rules (states, transitions, retries) are app.outbox's.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..consent import ConsentRecord, Disclosure
from ..outbox import Job, Kind, Payload, RetryPolicy, State, Transition, describe, transition
from ..upstream import Outcome
from . import queries, reports
from .tables import jobs, signups, utcnow
from .writer import Writer

Result = TypeVar("Result")


class Outbox:
    """Jobs, their records and their delivery state, in the database behind `engine`."""

    def __init__(self, engine: AsyncEngine, *, policy: RetryPolicy, lease: timedelta) -> None:
        self.engine = engine
        self.policy = policy
        self.lease = lease
        self._writer: Writer[queries.Write] = Writer(
            engine, write_batch=functools.partial(queries.write_batch, lease=lease), key=queries.write_key
        )

    async def close(self) -> None:
        await self._writer.close()

    async def remember_disclosures(self, texts: Sequence[Disclosure]) -> None:
        """Keep every disclosure text the pages show (once per distinct text)."""
        await self._writer.run(functools.partial(queries.remember_disclosures, texts=list(texts)))

    async def recent(self, campaign: str, phone: str, *, window: timedelta) -> tuple[int, State] | None:
        """The id and state of a signup of this number to this campaign within
        `window` that was or will be delivered; None when there is none."""
        number = (Kind.OPT_IN, campaign, phone)
        async with self._writer.reading() as conn:
            found = await conn.run_sync(queries.recent, [number], utcnow() - window)
        return next(((i, state) for i, state, _ in found.get(number, ())), None)

    async def add(
        self,
        record: ConsentRecord,
        payload: Payload,
        *,
        leased_by: str | None = None,
        duplicate_window: timedelta = timedelta(0),
    ) -> Job:
        """Store a record and its job, pending delivery; return once it is committed.
        With `leased_by`, the caller holds the lease and will attempt delivery itself.

        When the same number signed up to the same campaign within `duplicate_window`
        and that job was or will be delivered, the job is stored as a duplicate
        instead, and will not be sent. The check and the insert hold a lock on the
        number, so a double click or two replicas cannot both send."""
        job: Job = await self._writer.submit(queries.Add(record, payload, leased_by, duplicate_window))
        return job

    async def claim(self, worker: str, *, limit: int = 1) -> list[Job]:
        """Lease up to `limit` due pending jobs for `worker`."""
        jobs_: list[Job] = await self._writer.run(
            functools.partial(queries.claim, worker=worker, limit=limit, lease=self.lease)
        )
        return jobs_

    async def settle(self, job: Job, outcome: Outcome, *, worker: str) -> Transition:
        """Record the outcome of one delivery attempt made under `worker`'s lease."""
        now = utcnow()
        step = transition(job, outcome, now=now, policy=self.policy)
        values: dict[str, Any] = {
            "state": step.state,
            "attempts": step.attempts,
            "lease_until": None,
            "leased_by": None,
            "updated_at": now,
        }
        if step.retry_in is not None:
            values["next_attempt_at"] = now + timedelta(seconds=step.retry_in)
        if step.error is not None:
            values["last_error"] = step.error
        if step.messages is not None:
            values["upstream_messages"] = step.messages
        await self._update(job.id, worker, values, step.state, describe(outcome, step), now)
        return step

    async def release(self, job: Job, *, worker: str, delay: float = 0.0, reason: str) -> None:
        """Give a leased job back untouched, due again after `delay` seconds."""
        now = utcnow()
        values = {
            "lease_until": None,
            "leased_by": None,
            "next_attempt_at": now + timedelta(seconds=delay),
            "updated_at": now,
        }
        await self._update(job.id, worker, values, State.PENDING, f"released: {reason}", now)

    async def _update(
        self, job_id: int, worker: str, values: dict[str, Any], state: State, detail: str | None, now: datetime
    ) -> bool:
        """Write `values` to a job `worker` holds; False when the lease had passed on."""
        held: bool = await self._writer.submit(queries.Update(job_id, worker, values, state, detail, now))
        return held

    async def retry_failed(self, *, campaign: str | None = None, held: bool = False, job_id: int | None = None) -> int:
        """Put failed signups (`held`: held ones) back in the queue with fresh attempts
        (only `job_id`'s, when given); returns how many."""
        state = State.HELD if held else State.FAILED
        count: int = await self._writer.run(
            functools.partial(queries.retry_failed, campaign=campaign, state=state, job_id=job_id)
        )
        return count

    async def run(self, work: Callable[[Connection], Result]) -> Result:
        """A transaction of another table's (app.storage.console), in turn with the outbox's writes."""
        return await self._writer.run(work)

    def reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction for reads, in turn with the outbox's writes."""
        return self._writer.reading()

    # -- reads ------------------------------------------------------------------

    async def get(self, job_id: int) -> dict[str, Any] | None:
        """A job's row, with its record's columns (a signup's consent record)."""
        record = [column for column in signups.c if column.name not in jobs.c]
        query = select(jobs, *record).outerjoin(signups, signups.c.id == jobs.c.id).where(jobs.c.id == job_id)
        async with self._writer.reading() as conn:
            row = (await conn.execute(query)).mappings().first()
        return dict(row) if row else None

    async def history(self, job_id: int) -> list[tuple[str, str | None]]:
        return await reports.history(self._writer.reading, job_id)

    async def counts(self) -> list[tuple[str, str, int]]:
        """(campaign, state, count) for every campaign and state that has signups."""
        return await reports.counts(self._writer.reading)

    def export(
        self, *, since: datetime | None = None, until: datetime | None = None, campaign: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Consent records with their disclosure text and delivery history, oldest first."""
        return reports.export(self._writer.reading, since=since, until=until, campaign=campaign)
