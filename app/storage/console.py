"""What the operator's console (app.admin) keeps and reads: the funnel's counts, the
audit log, the signups stuck in the queue. Writes go through the outbox's writer (on
SQLite its one thread owns every write), reads in its turn."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from ..funnel import Count
from ..outbox import State
from .outbox import Outbox
from .reports import OPT_OUTS
from .tables import audit_log, funnel_counts, jobs, opt_outs, signups

_COUNT_KEY = (funnel_counts.c.campaign, funnel_counts.c.src, funnel_counts.c.hour, funnel_counts.c.metric)


def _add_counts(conn: Connection, counts: Sequence[Count]) -> None:
    # The dialect's own INSERT (each has on_conflict_do_update), imported here: a SQLite
    # deployment need not load PostgreSQL's.
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
    statement = dialect_insert(funnel_counts)
    statement = statement.on_conflict_do_update(
        index_elements=list(_COUNT_KEY), set_={"count": funnel_counts.c.count + statement.excluded["count"]}
    )
    conn.execute(statement, [asdict(item) for item in counts])


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    action: str
    address: str | None
    detail: str | None


@dataclass(frozen=True, slots=True)
class Stuck:
    """A signup the queue holds back: failed (or held), with its last error."""

    id: int
    campaign: str
    phone: str
    state: str
    attempts: int
    last_error: str | None
    updated_at: datetime


class ConsoleStore:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def add_counts(self, counts: Sequence[Count]) -> None:
        """Add `counts` into the table, in one transaction (an upsert per row: another
        replica's counts of the same hour add up with these)."""
        if counts:
            await self.outbox.run(functools.partial(_add_counts, counts=counts))

    async def counts(
        self, *, since: datetime, until: datetime, campaign: str | None = None
    ) -> list[tuple[str, str, datetime, str, int]]:
        """(campaign, src, hour, metric, count) of the hours from `since` up to `until`."""
        query = select(*_COUNT_KEY, funnel_counts.c.count).where(
            funnel_counts.c.hour >= since, funnel_counts.c.hour < until
        )
        if campaign is not None:
            query = query.where(funnel_counts.c.campaign == campaign.lower())
        async with self.outbox.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    async def delivery(
        self, *, since: datetime, until: datetime, campaign: str | None = None
    ) -> list[tuple[str, str, str, int]]:
        """(campaign's key, src, state, count) of the signups stored from `since` up to
        `until`, by where their delivery stands now."""
        key = func.lower(signups.c.campaign)
        src = func.coalesce(signups.c.source["src"].as_string(), "")
        query = (
            select(key, src, jobs.c.state, func.count())
            .join(jobs, jobs.c.id == signups.c.id)
            .where(signups.c.created_at >= since, signups.c.created_at < until)
            .group_by(key, src, jobs.c.state)
        )
        if campaign is not None:
            query = query.where(key == campaign.lower())
        async with self.outbox.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    async def opt_outs(
        self, since: datetime, until: datetime, campaign: str | None = None
    ) -> list[tuple[str, str, int]]:
        """(campaign's key, src, count) of the opt-outs recorded from `since` up to
        `until`: a campaign's /{keyword}/stop under its key, /stop's (the account's)
        under `OPT_OUTS`; the src is the one their page's address carried."""
        key = func.lower(opt_outs.c.campaign)
        query = (
            select(key, opt_outs.c.page_url, func.count())
            .where(opt_outs.c.created_at >= since, opt_outs.c.created_at < until)
            .group_by(key, opt_outs.c.page_url)
        )
        if campaign is not None:
            query = query.where(key == campaign.lower())
        async with self.outbox.reading() as conn:
            rows = (await conn.execute(query)).all()
        found: Counter[tuple[str, str]] = Counter()
        for name, page_url, count in rows:
            src = parse_qs(urlsplit(page_url).query).get("src", [""])[0]
            found[(name if name is not None else OPT_OUTS, src)] += count
        return [(name, src, count) for (name, src), count in found.items()]

    async def stuck(self, states: Sequence[str] = (State.FAILED,), *, limit: int = 200) -> list[Stuck]:
        """The newest signups in `states`, with their last error."""
        query = (
            select(
                jobs.c.id,
                jobs.c.campaign,
                jobs.c.phone,
                jobs.c.state,
                jobs.c.attempts,
                jobs.c.last_error,
                jobs.c.updated_at,
            )
            .where(jobs.c.state.in_(list(states)))
            .order_by(jobs.c.updated_at.desc(), jobs.c.id.desc())
            .limit(limit)
        )
        async with self.outbox.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [Stuck(*row) for row in rows]

    async def record(self, entry: AuditEntry) -> None:
        await self.outbox.run(lambda conn: conn.execute(insert(audit_log).values(**asdict(entry))))

    async def audit(self, *, limit: int = 200) -> list[AuditEntry]:
        """The newest entries first."""
        query = (
            select(audit_log.c.at, audit_log.c.action, audit_log.c.address, audit_log.c.detail)
            .order_by(audit_log.c.id.desc())
            .limit(limit)
        )
        async with self.outbox.reading() as conn:
            rows = (await conn.execute(query)).all()
        return [AuditEntry(*row) for row in rows]
