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

from ..consent import ConsentRecord, Disclosure, OptOutRecord
from ..outbox import Job, Kind, Payload, State, decode, encode, kind_of
from .tables import UTCDateTime, disclosures, job_events, jobs, opt_outs, signups, utcnow


@dataclass(slots=True)
class Add:
    """A new job and its record (a signup's consent record for an opt-in, an opt-out
    record for an opt-out)."""

    record: ConsentRecord | OptOutRecord
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
# An opt-out is the account's, whatever page it came from: its campaign is "".
Number = tuple[Kind, str, str]


def _number(item: Add) -> Number:
    kind = kind_of(item.payload)
    if isinstance(item.record, OptOutRecord):
        return (kind, "", item.record.phone)
    return (kind, item.record.campaign, item.record.phone)


def _checked(item: Add) -> bool:
    """Whether the write looks at the number's other jobs: an opt-in within a duplicate
    window; an opt-out always (it cancels the number's opt-ins not yet sent)."""
    return item.window > timedelta(0) or isinstance(item.record, OptOutRecord)


def write_key(item: Write) -> Hashable | None:
    """What a write touches that a later write of the same batch could too: the job it
    updates, or the number it checks for duplicates (app.storage.writer.next_batch)."""
    if isinstance(item, Update):
        return item.job_id
    return _number(item) if _checked(item) else None


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
    to `events`. An opt-out cancels the opt-ins of its number not yet sent, and an
    opt-in that an opt-out of its number has overtaken is stored cancelled."""
    checked = [item for item in batch if _checked(item)]
    numbers = sorted({_number(i) for i in checked})
    rows: dict[str, list[_Row]] = {}
    if numbers:
        _lock_numbers(conn, numbers)
        windows = [item.window for item in checked] + [timedelta(0)]
        rows = _rows(conn, sorted({phone for _, _, phone in numbers}), utcnow() - max(windows))

    # The newest opt-out of each number in this batch (nearly always none).
    stops: dict[str, datetime] = {}
    for item in batch:
        if isinstance(item.record, OptOutRecord):
            stops[item.record.phone] = max(item.record.created_at, stops.get(item.record.phone, item.record.created_at))

    job_rows: list[dict[str, Any]] = []
    earliers: list[tuple[int, State] | None] = []
    revoked: list[bool] = []
    for item in batch:
        earlier: tuple[int, State] | None = None
        if item.window > timedelta(0):
            since = utcnow() - item.window
            earlier = next(((i, st) for i, st, at in _live(rows, _number(item)) if at >= since), None)
        earliers.append(earlier)
        gone = _overtaken(item.record, stops, rows)
        revoked.append(gone)
        job_rows.append(_job_row(item, earlier, lease, cancelled=gone))
    waits = {i: _cancel_opt_ins(conn, item) for i, item in enumerate(batch) if isinstance(item.record, OptOutRecord)}
    for i, (_, until) in waits.items():
        if until is not None:
            job_rows[i]["next_attempt_at"] = max(job_rows[i]["next_attempt_at"], until)
    ids = _insert_jobs(conn, job_rows)
    _insert_records(conn, batch, ids)

    written = []
    for index, (item, job_id, earlier, row) in enumerate(zip(batch, ids, earliers, job_rows, strict=True)):
        detail = f"duplicate of {earlier[0]}" if earlier else None
        if revoked[index]:
            detail = "cancelled: an opt-out of this number came after it"
        cancelled, until = waits.get(index, ([], None))
        if until is not None:
            detail = f"waits until {until.isoformat()}: an opt-in of this number was being sent when it came"
        events.append({"job_id": job_id, "at": row["created_at"], "state": row["state"], "detail": detail})
        events.extend(
            {
                "job_id": other,
                "at": row["created_at"],
                "state": State.CANCELLED,
                "detail": f"cancelled by opt-out {job_id}",
            }
            for other in cancelled
        )
        written.append(
            Job(
                job_id, row["kind"], item.payload, row["state"], 0, row["created_at"], row["phone"], row["campaign"],
                earlier[1] if earlier else None,
            )
        )  # fmt: skip
    return written


def _insert_records(conn: Connection, batch: list[Add], ids: list[int]) -> None:
    """The records of new jobs: consent records in `signups`, opt-outs in `opt_outs`
    (with the words their page showed, kept once each in `disclosures`)."""
    signed, stopped = [], []
    for item, job_id in zip(batch, ids, strict=True):
        if isinstance(item.record, OptOutRecord):
            stopped.append((item.record, job_id))
        else:
            signed.append(_signup_row(item.record, job_id))
    if signed:
        conn.execute(_INSERT_SIGNUP, signed)
    if stopped:
        remember_disclosures(conn, list({record.notice.sha256: record.notice for record, _ in stopped}.values()))
        conn.execute(_INSERT_OPT_OUT, [_opt_out_row(record, job_id) for record, job_id in stopped])


# One job of a number, as the duplicate and revocation checks read it.
_Row = tuple[int, Kind, str | None, str, datetime]


def _rows(conn: Connection, phones: list[str], since: datetime) -> dict[str, list[_Row]]:
    """Every job of these numbers since `since`, newest first, by number."""
    found: dict[str, list[_Row]] = {}
    for row in conn.execute(_RECENT, {"r_phones": phones, "r_since": since}):
        found.setdefault(row.phone, []).append((row.id, Kind(row.kind), row.campaign, row.state, row.created_at))
    return found


def _live(rows: dict[str, list[_Row]], number: Number) -> list[tuple[int, State, datetime]]:
    """The jobs of `number` that were or will be delivered, newest first, as far back as
    the last call of the other kind: an opt-in before an opt-out of its number is
    revoked, so a signup after the opt-out is sent again, as new consent; an opt-out
    before a new signup is undone by it, so the next opt-out is sent again too."""
    kind, campaign, phone = number
    found = []
    for job_id, row_kind, row_campaign, state, at in rows.get(phone, ()):
        if row_kind != kind:
            # The other kind: an opt-out (any state) ends an opt-in's run; an opt-in
            # that was or will be sent ends an opt-out's.
            if kind == Kind.OPT_OUT and state not in _LIVE:
                continue
            break
        if state in _LIVE and (kind == Kind.OPT_OUT or row_campaign == campaign):
            found.append((job_id, State(state), at))
    return found


def _overtaken(record: ConsentRecord | OptOutRecord, stops: dict[str, datetime], rows: dict[str, list[_Row]]) -> bool:
    """An opt-in that an opt-out of its number, in this batch (`stops`) or stored, came
    after: it is revoked before it was sent (two replicas, one stamping the signup
    before the other the opt-out, and committing after)."""
    if isinstance(record, OptOutRecord):
        return False
    stop = stops.get(record.phone)
    if stop is not None and stop >= record.created_at:
        return True
    return any(kind == Kind.OPT_OUT and at >= record.created_at for _, kind, _, _, at in rows.get(record.phone, ()))


def _cancel_opt_ins(conn: Connection, item: Add) -> tuple[list[int], datetime | None]:
    """Cancel the opt-ins of an opt-out's number that came before it and are not sent
    (pending, or failed or held: `optin retry-failed` must not send them either). The ids, and
    until when the opt-out must wait: while a worker holds one, its call may be under
    way, and ProTexting must get the opt-out after it (the lease outlives the call)."""
    record = item.record
    now = utcnow()
    cancelled = conn.execute(
        _CANCEL_OPT_INS, {"c_phone": record.phone, "c_before": record.created_at, "c_now": now}
    ).all()
    leases = [row.lease_until for row in cancelled if row.lease_until is not None and row.lease_until > now]
    return [row.id for row in cancelled], max(leases, default=None)


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


def _job_row(
    item: Add, earlier: tuple[int, State] | None, lease: timedelta, *, cancelled: bool = False
) -> dict[str, Any]:
    record = item.record
    kind = kind_of(item.payload)
    now = record.created_at
    holder = item.leased_by if earlier is None and not cancelled else None
    state = State.CANCELLED if cancelled else State.DUPLICATE if earlier is not None else State.PENDING
    return {
        "kind": kind,
        "priority": kind.priority,
        "created_at": now,
        "phone": record.phone,
        "campaign": record.campaign,
        "payload": encode(item.payload),
        "state": state,
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


def _opt_out_row(record: OptOutRecord, job_id: int) -> dict[str, Any]:
    return {
        "id": job_id,
        "created_at": record.created_at,
        "phone": record.phone,
        "campaign": record.campaign,
        "page_url": record.page_url,
        "language": record.language,
        "notice_sha256": record.notice.sha256,
        "client_ip": record.client_ip,
        "user_agent": record.user_agent,
    }


def _apply_updates(conn: Connection, updates: list[Update], events: list[dict[str, Any]]) -> set[int]:
    """Write the updates whose worker still holds the job's lease; their ids. Their
    events are added to `events`."""
    # Only the lease holder may write: a worker whose lease ran out must not overwrite
    # what the job's next holder recorded. Read the holders first (locking the rows on
    # PostgreSQL), then write each group of same-shaped updates in one executemany.
    found = list(conn.execute(_HOLDERS, {"h_ids": [u.job_id for u in updates]}))
    holders = {job_id: holder for job_id, holder, state in found if state == State.PENDING}
    held = [u for u in updates if holders.get(u.job_id) == u.worker]
    # An opt-in cancelled by an opt-out while its call was under way: the call's
    # outcome stays in its history (the proof of what ProTexting was sent), and
    # its state stays cancelled.
    revoked = {job_id: holder for job_id, holder, state in found if state == State.CANCELLED}
    events.extend(
        {"job_id": u.job_id, "at": u.at, "state": State.CANCELLED, "detail": f"{u.detail} (sent before its opt-out)"}
        for u in updates
        if revoked.get(u.job_id) == u.worker and "attempts" in u.values
    )
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for u in held:
        shapes.setdefault(tuple(sorted(u.values)), []).append({"held_id": u.job_id, "held_by": u.worker, **u.values})
    for params in shapes.values():
        conn.execute(_UPDATE_HELD, params)
    events.extend({"job_id": u.job_id, "at": u.at, "state": u.state, "detail": u.detail} for u in held)
    return {u.job_id for u in held}


def recent(conn: Connection, numbers: list[Number], since: datetime) -> dict[Number, list[tuple[int, State, datetime]]]:
    """Jobs of these numbers since `since` that were or will be delivered, newest first
    (and not undone since by a job of the other kind: `_live`)."""
    rows = _rows(conn, sorted({phone for _, _, phone in numbers}), since)
    return {number: live for number in numbers if (live := _live(rows, number))}


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


def vet(conn: Connection, *, job: Job, worker: str) -> bool:
    """Whether `worker` may send `job` now: it still holds the job, pending, and no
    opt-out of its number has come since it was stored. An opt-in that one has is
    cancelled here, under the worker's lease, and never sent. The check and an opt-out's
    cancel lock the job's row (PostgreSQL; SQLite has one writer): whichever comes
    second sees the first, and an opt-out that comes after this check waits for the
    lease, so ProTexting gets it after the call (`_cancel_opt_ins`)."""
    found = conn.execute(_HOLDERS, {"h_ids": [job.id]}).first()
    if found is None or found.state != State.PENDING or found.leased_by != worker:
        return False
    if job.kind != Kind.OPT_IN:
        return True
    opt_out = conn.execute(_OPT_OUT_SINCE, {"o_phone": job.phone, "o_since": job.created_at}).scalar()
    if opt_out is None:
        return True
    now = utcnow()
    conn.execute(
        update(jobs)
        .where(jobs.c.id == job.id)
        .values(state=State.CANCELLED, lease_until=None, leased_by=None, updated_at=now)
    )
    conn.execute(
        _INSERT_EVENT,
        {"job_id": job.id, "at": now, "state": State.CANCELLED, "detail": f"cancelled by opt-out {opt_out}"},
    )
    return False


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
_INSERT_OPT_OUT = insert(opt_outs)
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
# Every job of some numbers since a time, newest first (the caller picks the kinds,
# campaigns and states it asks about: `_live`, `_overtaken`).
_RECENT = (
    select(jobs.c.id, jobs.c.kind, jobs.c.state, jobs.c.campaign, jobs.c.phone, jobs.c.created_at)
    .where(
        jobs.c.phone.in_(bindparam("r_phones", expanding=True)),
        jobs.c.created_at >= bindparam("r_since", type_=UTCDateTime),
    )
    .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
)
# The opt-ins of a number stored before its opt-out and not sent: cancelled (by id
# from the number's index; the states are compared on those few rows).
_CANCEL_OPT_INS = (
    update(jobs)
    .where(
        jobs.c.phone == bindparam("c_phone"),
        jobs.c.kind == Kind.OPT_IN.value,
        jobs.c.created_at <= bindparam("c_before", type_=UTCDateTime),
        jobs.c.state.in_([State.PENDING.value, State.FAILED.value, State.HELD.value]),
    )
    .values(state=State.CANCELLED.value, updated_at=bindparam("c_now", type_=UTCDateTime))
    .returning(jobs.c.id, jobs.c.lease_until)
)
# The first opt-out of a number stored since a time.
_OPT_OUT_SINCE = (
    select(jobs.c.id)
    .where(
        jobs.c.phone == bindparam("o_phone"),
        jobs.c.kind == Kind.OPT_OUT.value,
        jobs.c.created_at >= bindparam("o_since", type_=UTCDateTime),
    )
    .order_by(jobs.c.created_at, jobs.c.id)
    .limit(1)
)
# A job in these states was or will be delivered (a held one once its set-up is
# fixed): a second one of its number within the window is its duplicate.
_LIVE = frozenset({State.PENDING.value, State.DELIVERED.value, State.HELD.value})
# PostgreSQL: one advisory lock per number, taken in one statement and in one order
# everywhere, so two replicas never wait on each other in a cycle.
_LOCK_NUMBERS = text(
    "SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS s"
)


def _lock_keys(number: Number) -> tuple[str, ...]:
    kind, campaign, phone = number
    # An opt-in's key is the one it had before jobs had kinds. Every write of a number's
    # opt-out takes the number's own key, and so does every checked opt-in: an opt-out
    # and a signup of one number are written one after the other, even on two replicas.
    # ("opt-out" cannot be a campaign's keyword: app.web.pages.RESERVED_PATHS.)
    whole = f"optin-pages:opt-out:{phone}"
    return (f"optin-pages:{campaign.lower()}:{phone}", whole) if kind == Kind.OPT_IN else (whole,)


def _lock_numbers(conn: Connection, numbers: list[Number]) -> None:
    """Serialise the writes of these numbers' jobs until the transaction ends."""
    if conn.dialect.name == "postgresql":
        keys = sorted({key for number in numbers for key in _lock_keys(number)})
        conn.execute(_LOCK_NUMBERS, {"keys": keys})
    # SQLite: every transaction begins IMMEDIATE (app.storage.engine), so this one
    # already holds the database's single write lock.
