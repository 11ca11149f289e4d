"""The outbox's writes and its duplicate check, on a synchronous connection: each
function is the body of one transaction, run by app.storage.writer (on the writer's
thread on SQLite, through `run_sync` on PostgreSQL)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection

from ..consent import ConsentRecord, Disclosure
from ..outbox import Job, Kind, Payload, State, decode, encode, kind_of
from .tables import UTCDateTime, disclosures, job_events, jobs, signups, utcnow


@dataclass(slots=True)
class Add:
    """A new job and its record (a signup's consent record for an opt-in)."""

    record: ConsentRecord
    payload: Payload
    leased_by: str | None
    window: timedelta


@dataclass(slots=True)
class Update:
    """An outcome or a release: `values` are written to the job only while `worker`
    still holds its lease."""

    job_id: int
    worker: str
    values: dict[str, Any]
    state: State
    detail: str | None
    at: datetime


Write = Add | Update

# A number's calls of one kind, to one campaign: what the duplicate check compares.
Number = tuple[Kind, str, str]


def _number(item: Add) -> Number:
    return (kind_of(item.payload), item.record.campaign, item.record.phone)


def write_key(item: Write) -> Hashable | None:
    """What a write touches that a later write of the same batch could too: the job it
    updates, or the number it checks for duplicates (app.storage.writer.next_batch)."""
    if isinstance(item, Update):
        return item.job_id
    return _number(item) if item.window > timedelta(0) else None


def job_of(row: Any) -> Job:
    kind = Kind(row.kind)
    return Job(
        id=row.id,
        kind=kind,
        payload=decode(kind, row.payload),
        state=State(row.state),
        attempts=row.attempts,
        created_at=row.created_at,
        phone=row.phone,
        campaign=row.campaign,
    )


JOB_COLUMNS = (
    jobs.c.id,
    jobs.c.kind,
    jobs.c.payload,
    jobs.c.state,
    jobs.c.attempts,
    jobs.c.created_at,
    jobs.c.phone,
    jobs.c.campaign,
)


def write_batch(conn: Connection, batch: list[Write], *, lease: timedelta) -> list[Any]:
    """The writes of one group commit; a result per item, in order (a Job for an Add,
    whether the lease was held for an Update)."""
    adds = [item for item in batch if isinstance(item, Add)]
    updates = [item for item in batch if isinstance(item, Update)]
    # Each statement costs about as much as a dozen of its rows: the history of the
    # whole batch, new jobs and outcomes alike, goes in one INSERT.
    events: list[dict[str, Any]] = []
    added = _insert(conn, adds, lease, events) if adds else []
    held = _apply_updates(conn, updates, events) if updates else set()
    if events:
        conn.execute(_INSERT_EVENT, events)
    results = iter(added)
    return [next(results) if isinstance(item, Add) else item.job_id in held for item in batch]


def _insert(conn: Connection, batch: list[Add], lease: timedelta, events: list[dict[str, Any]]) -> list[Job]:
    """Store new jobs and their records: a duplicate check for all their numbers, one
    multi-row INSERT for the jobs, one for their records; their first events are added
    to `events`."""
    checked = [item for item in batch if item.window > timedelta(0)]
    numbers = sorted({_number(i) for i in checked})
    found: dict[Number, list[tuple[int, State, datetime]]] = {}
    if numbers:
        _lock_numbers(conn, numbers)
        found = recent(conn, numbers, utcnow() - max(item.window for item in checked))

    job_rows: list[dict[str, Any]] = []
    earliers: list[tuple[int, State] | None] = []
    for item in batch:
        earlier: tuple[int, State] | None = None
        if item.window > timedelta(0):
            since = utcnow() - item.window
            earlier = next(((i, st) for i, st, at in found.get(_number(item), ()) if at >= since), None)
        earliers.append(earlier)
        job_rows.append(_job_row(item, earlier, lease))
    ids = _insert_jobs(conn, job_rows)
    conn.execute(_INSERT_SIGNUP, [_signup_row(item.record, job_id) for item, job_id in zip(batch, ids, strict=True)])

    written = []
    for item, job_id, earlier, row in zip(batch, ids, earliers, job_rows, strict=True):
        detail = f"duplicate of {earlier[0]}" if earlier else None
        events.append({"job_id": job_id, "at": row["created_at"], "state": row["state"], "detail": detail})
        written.append(
            Job(
                job_id, row["kind"], item.payload, row["state"], 0, row["created_at"], row["phone"], row["campaign"],
                earlier[1] if earlier else None,
            )
        )  # fmt: skip
    return written


def _insert_jobs(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert the jobs; their ids, in the order of the rows."""
    if conn.dialect.name != "sqlite":
        return list(conn.execute(_INSERT_JOB, rows).scalars())
    # SQLite cannot tie the ids of a multi-row INSERT ... RETURNING to its rows, so
    # SQLAlchemy would run one INSERT per row: a batch's costliest statement. The
    # transaction holds SQLite's one write lock from BEGIN IMMEDIATE (app.storage.
    # engine), so nobody else can insert meanwhile, and the ids are the ones SQLite
    # gives an INTEGER PRIMARY KEY anyway: one more than the largest, in order.
    first = (conn.execute(_LAST_JOB_ID).scalar() or 0) + 1
    ids = list(range(first, first + len(rows)))
    conn.execute(_INSERT_JOB_WITH_ID, [{**row, "id": job_id} for row, job_id in zip(rows, ids, strict=True)])
    return ids


def _job_row(item: Add, earlier: tuple[int, State] | None, lease: timedelta) -> dict[str, Any]:
    record = item.record
    kind = kind_of(item.payload)
    now = record.created_at
    holder = item.leased_by if earlier is None else None
    return {
        "kind": kind,
        "priority": kind.priority,
        "created_at": now,
        "phone": record.phone,
        "campaign": record.campaign,
        "payload": encode(item.payload),
        "state": State.DUPLICATE if earlier is not None else State.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": now + lease if holder else None,
        "leased_by": holder,
        "duplicate_of": earlier[0] if earlier else None,
        "updated_at": now,
    }


def _signup_row(record: ConsentRecord, job_id: int) -> dict[str, Any]:
    return {
        "id": job_id,
        "created_at": record.created_at,
        "campaign": record.campaign,
        "phone": record.phone,
        "group_ids": list(record.group_ids),
        "disclosure_sha256": record.disclosure_sha256,
        "page_url": record.page_url,
        "source": record.source,
        "client_ip": record.client_ip,
        "user_agent": record.user_agent,
        "language": record.language,
    }


def _apply_updates(conn: Connection, updates: list[Update], events: list[dict[str, Any]]) -> set[int]:
    """Write the updates whose worker still holds the job's lease; their ids. Their
    events are added to `events`."""
    # Only the lease holder may write: a worker whose lease ran out must not overwrite
    # what the job's next holder recorded. Read the holders first (locking the rows on
    # PostgreSQL), then write each group of same-shaped updates in one executemany.
    holders = {
        job_id: holder
        for job_id, holder, state in conn.execute(_HOLDERS, {"h_ids": [u.job_id for u in updates]})
        if state == State.PENDING
    }
    held = [u for u in updates if holders.get(u.job_id) == u.worker]
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for u in held:
        shapes.setdefault(tuple(sorted(u.values)), []).append({"held_id": u.job_id, "held_by": u.worker, **u.values})
    for params in shapes.values():
        conn.execute(_UPDATE_HELD, params)
    events.extend({"job_id": u.job_id, "at": u.at, "state": u.state, "detail": u.detail} for u in held)
    return {u.job_id for u in held}


def recent(conn: Connection, numbers: list[Number], since: datetime) -> dict[Number, list[tuple[int, State, datetime]]]:
    """Jobs of these numbers since `since` that were or will be delivered, newest first."""
    found: dict[Number, list[tuple[int, State, datetime]]] = {}
    wanted = set(numbers)
    params = {
        "r_kinds": sorted({k for k, _, _ in numbers}),
        "r_campaigns": sorted({c for _, c, _ in numbers}),
        "r_phones": sorted({p for _, _, p in numbers}),
        "r_since": since,
    }
    for row in conn.execute(_RECENT, params):
        # The query matches kinds, campaigns and numbers apart: keep the ones asked for,
        # in the states that count (see _RECENT for why not in SQL).
        number = (Kind(row.kind), row.campaign, row.phone)
        if number in wanted and row.state in _LIVE:
            found.setdefault(number, []).append((row.id, State(row.state), row.created_at))
    return found


def claim(conn: Connection, *, worker: str, limit: int, lease: timedelta) -> list[Job]:
    """Lease up to `limit` due pending jobs for `worker`, the most urgent kind first."""
    now = utcnow()
    due = (
        select(jobs.c.id)
        .where(
            jobs.c.state == State.PENDING,
            jobs.c.next_attempt_at <= now,
            or_(jobs.c.lease_until.is_(None), jobs.c.lease_until < now),
        )
        .order_by(jobs.c.priority, jobs.c.next_attempt_at, jobs.c.id)
        .limit(limit)
        # PostgreSQL: replicas claim different rows instead of queueing on the same
        # ones. SQLite has one writer at a time, which is lock enough.
        .with_for_update(skip_locked=True)
    )
    leased = (
        update(jobs)
        .where(jobs.c.id.in_(due.scalar_subquery()))
        .values(lease_until=now + lease, leased_by=worker, updated_at=now)
        .returning(*JOB_COLUMNS)
    )
    return sorted((job_of(row) for row in conn.execute(leased).all()), key=lambda job: job.id)


def retry_failed(
    conn: Connection, *, campaign: str | None, state: State = State.FAILED, job_id: int | None = None
) -> int:
    """Put jobs in `state` (failed, or held) back in the queue with fresh attempts (only
    `job_id`, when given); how many."""
    now = utcnow()
    where = [jobs.c.state == state]
    if campaign is not None:
        where.append(func.lower(jobs.c.campaign) == campaign.lower())
    if job_id is not None:
        where.append(jobs.c.id == job_id)
    ids = conn.execute(select(jobs.c.id).where(*where)).scalars().all()
    if ids:
        conn.execute(
            update(jobs)
            .where(jobs.c.id.in_(ids), jobs.c.state == state)
            .values(state=State.PENDING, attempts=0, next_attempt_at=now, updated_at=now)
        )
        conn.execute(
            _INSERT_EVENT,
            [
                {"job_id": job_id, "at": now, "state": State.PENDING, "detail": "retry requested by operator"}
                for job_id in ids
            ],
        )
    return len(ids)


def remember_disclosures(conn: Connection, texts: Sequence[Disclosure]) -> None:
    """Keep every disclosure text (once per distinct text)."""
    # The dialect's own INSERT, imported here: PostgreSQL's pulls in asyncpg (a few
    # MB that a SQLite deployment need not hold).
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        # The other dialect's INSERT under the same name: both have on_conflict_do_nothing.
        from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
    now = utcnow()
    for disclosure in texts:
        statement = dialect_insert(disclosures).values(
            sha256=disclosure.sha256, text=disclosure.text, first_shown_at=now
        )
        conn.execute(statement.on_conflict_do_nothing(index_elements=["sha256"]))


# The statements of the signup path, built once: building SQLAlchemy expressions per
# call (`.values(**row)`) cost more CPU than running them. Parameters are bound at
# execute time, and the compiled form is cached.
# Many rows in one INSERT ... RETURNING, ids in the order of the rows given.
_INSERT_JOB = insert(jobs).returning(jobs.c.id, sort_by_parameter_order=True)
_INSERT_JOB_WITH_ID = insert(jobs)
_LAST_JOB_ID = select(func.max(jobs.c.id))
_INSERT_SIGNUP = insert(signups)
_INSERT_EVENT = insert(job_events)
# SET takes the columns named in the parameters; only the lease holder may write.
_UPDATE_HELD = update(jobs).where(
    jobs.c.id == bindparam("held_id"),
    jobs.c.state == State.PENDING.value,
    jobs.c.leased_by == bindparam("held_by"),
)
# The states are compared in Python, not in SQL, here and in _RECENT: given a state
# condition, SQLite's planner (which has no statistics on a database nobody ANALYZEd)
# takes ix_jobs_due for it and reads every pending or delivered job, the whole table
# soon enough, on every batch, instead of the few rows of the ids or numbers asked for
# (tests/test_outbox.py, the query plans).
_HOLDERS = (
    select(jobs.c.id, jobs.c.leased_by, jobs.c.state)
    .where(jobs.c.id.in_(bindparam("h_ids", expanding=True)))
    .with_for_update()
)
# Jobs of some kinds for some numbers to some campaigns since a time, newest first (a
# superset: the caller keeps the numbers asked for, in the states in _LIVE).
_RECENT = (
    select(jobs.c.id, jobs.c.kind, jobs.c.state, jobs.c.campaign, jobs.c.phone, jobs.c.created_at)
    .where(
        jobs.c.phone.in_(bindparam("r_phones", expanding=True)),
        jobs.c.kind.in_(bindparam("r_kinds", expanding=True)),
        jobs.c.campaign.in_(bindparam("r_campaigns", expanding=True)),
        jobs.c.created_at >= bindparam("r_since", type_=UTCDateTime),
    )
    .order_by(jobs.c.id.desc())
)
# A job in these states was or will be delivered (a held one once its set-up is
# fixed): a second one of its number within the window is its duplicate.
_LIVE = frozenset({State.PENDING.value, State.DELIVERED.value, State.HELD.value})
# PostgreSQL: one advisory lock per number, taken in one statement and in one order
# everywhere, so two replicas never wait on each other in a cycle.
_LOCK_NUMBERS = text(
    "SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS s"
)


def _lock_key(number: Number) -> str:
    kind, campaign, phone = number
    # An opt-in's key is the one it had before jobs had kinds.
    return f"optin-pages:{campaign.lower()}:{phone}" if kind == Kind.OPT_IN else f"optin-pages:{kind}:{phone}"


def _lock_numbers(conn: Connection, numbers: list[Number]) -> None:
    """Serialise the writes of these numbers' jobs until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_NUMBERS, {"keys": [_lock_key(number) for number in numbers]})
    # SQLite: every transaction begins IMMEDIATE (app.storage.engine), so this one
    # already holds the database's single write lock.
