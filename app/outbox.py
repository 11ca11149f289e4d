"""The outbox: every signup's consent record and where its delivery stands.

States of a signup:

    pending ──> delivered    ProTexting answered 201 (its body unread or not: never re-sent)
        │  ──> rejected     ProTexting answered 422; its messages are kept
        │  ──> failed       gave up after the configured attempts or age
        └─ (retry later)    timeout, refused connection, 5xx, 429, 401/403, 200/3xx, pacing
    duplicate               the same number for the same campaign within the window:
                            the consent is kept, ProTexting is not called again

A row is written, and committed, before anyone calls ProTexting. Whoever attempts a
delivery first takes a lease on the row (`lease_until`); a process that dies with a
lease in hand loses it when it ends, and the row comes due again.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .consent import ConsentRecord, Disclosure
from .storage import UTCDateTime, disclosures, signup_events, signups, thread_engine_for, unreachable, utcnow
from .upstream import Accepted, OptIn, Outcome, Rejected, Unavailable


class State(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 12
    max_age: timedelta = timedelta(days=1)
    base: float = 5.0
    cap: float = 1800.0

    def backoff(self, attempts: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): U(0, min(cap, base*2^n))."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True, slots=True)
class Signup:
    id: int
    campaign: str
    phone: str
    state: State
    attempts: int
    created_at: datetime
    optin: OptIn
    # For a duplicate: the state of the earlier signup it repeats.
    earlier: State | None = None


@dataclass(slots=True)
class _Add:
    """A consent record waiting for the next group commit."""

    record: ConsentRecord
    optin: OptIn
    leased_by: str | None
    window: timedelta
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Update:
    """An outcome or a release waiting for the next group commit: `values` are written
    to the row only while `worker` still holds its lease."""

    signup_id: int
    worker: str
    values: dict[str, Any]
    state: State
    detail: str | None
    at: datetime
    future: asyncio.Future[Any]


_Write = _Add | _Update

# Enough to absorb a burst in a few transactions, small enough to keep each short.
_MAX_BATCH = 200


def _resolve(future: asyncio.Future[Any], *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the caller gave up waiting (what it asked for is written all the same)
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _next_batch(queue: list[_Write]) -> tuple[list[_Write], list[_Write]]:
    """The writes for one transaction, and the rest. A second write of the same row,
    or a second signup of the same number (a double click), waits for the next
    transaction: each sees what the one before it wrote."""
    batch: list[_Write] = []
    seen: set[object] = set()
    for index, item in enumerate(queue):
        if isinstance(item, _Update):
            key: object = item.signup_id
        elif item.window > timedelta(0):
            key = (item.record.campaign, item.record.phone)
        else:
            key = None
        if len(batch) == _MAX_BATCH or (key is not None and key in seen):
            return batch, queue[index:]
        seen.add(key)
        batch.append(item)
    return batch, []


@dataclass(frozen=True, slots=True)
class Transition:
    """What one outcome does to a pending signup."""

    state: State
    attempts: int
    retry_in: float | None = None  # seconds; set when the row stays pending
    error: str | None = None
    messages: list[dict[str, str | None]] | None = None


def transition(
    signup: Signup, outcome: Outcome, *, now: datetime, policy: RetryPolicy, rng: random.Random | None = None
) -> Transition:
    """The delivery state machine, as a pure function."""
    match outcome:
        case Accepted():
            return Transition(State.DELIVERED, signup.attempts + 1)
        case Rejected():
            messages = [{"field": e.field, "message": e.message} for e in outcome.errors]
            return Transition(State.REJECTED, signup.attempts + 1, messages=messages)
        case Unavailable() if outcome.unauthorized or outcome.rate_limited or outcome.misconfigured:
            # Not this signup's fault: the account, the set-up or the pace. Wait without
            # using up an attempt; the caller pauses all delivery as well.
            wait = outcome.rate_limit.reset if outcome.rate_limited and outcome.rate_limit.reset else policy.base
            return Transition(State.PENDING, signup.attempts, retry_in=wait, error=outcome.reason)
        case Unavailable():
            attempts = signup.attempts + 1
            too_old = now - signup.created_at >= policy.max_age
            if attempts >= policy.max_attempts or too_old:
                return Transition(State.FAILED, attempts, error=outcome.reason)
            return Transition(State.PENDING, attempts, retry_in=policy.backoff(attempts, rng), error=outcome.reason)
    raise TypeError(f"not an outcome: {outcome!r}")


def _signup(row: Any) -> Signup:
    request = row.request
    return Signup(
        id=row.id,
        campaign=row.campaign,
        phone=row.phone,
        state=State(row.state),
        attempts=row.attempts,
        created_at=row.created_at,
        optin=OptIn(
            phone=request["phone"],
            group_ids=tuple(request["group_ids"]),
            cta_message=request.get("cta_message"),
            confirm_message=request.get("confirm_message"),
            send_cta_message=bool(request.get("send_cta_message")),
        ),
    )


_SIGNUP_COLUMNS = (
    signups.c.id,
    signups.c.campaign,
    signups.c.phone,
    signups.c.state,
    signups.c.attempts,
    signups.c.created_at,
    signups.c.request,
)


class Outbox:
    """Consent records and their delivery state, in the database behind `engine`."""

    def __init__(self, engine: AsyncEngine, *, policy: RetryPolicy, lease: timedelta) -> None:
        self.engine = engine
        self.policy = policy
        self.lease = lease
        # SQLite has one writer, and its busy handler waits by sleeping (1, 2, 5, 10 ms
        # ...): queue this process's transactions here instead, in order, without sleeps.
        self._serial = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # SQLite: the signup path's batches run whole in a worker thread (see
        # app.storage.thread_engine_for); PostgreSQL's driver is natively async.
        self._thread_engine = thread_engine_for(engine)
        # Its own thread: the default executor also runs other libraries' work (the
        # `limits` memory storage's expiry, DNS lookups), which must not queue a commit.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="outbox-writer") if self._thread_engine else None
        self._queue: list[_Write] = []
        self._writing = False

    async def close(self) -> None:
        if self._thread_engine is not None and self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._writer, self._thread_engine.dispose)
            self._writer.shutdown()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        if self._serial is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._serial, self.engine.begin() as conn:
            yield conn

    async def remember_disclosures(self, texts: Sequence[Disclosure]) -> None:
        """Keep every disclosure text the pages show (once per distinct text)."""
        # The dialect's own INSERT, imported here: PostgreSQL's pulls in asyncpg (a few
        # MB that a SQLite deployment need not hold).
        if self.engine.dialect.name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            # The other dialect's INSERT under the same name: both have on_conflict_do_nothing.
            from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
        now = utcnow()
        async with self._transaction() as conn:
            for disclosure in texts:
                statement = dialect_insert(disclosures).values(
                    sha256=disclosure.sha256, text=disclosure.text, first_shown_at=now
                )
                await conn.execute(statement.on_conflict_do_nothing(index_elements=["sha256"]))

    async def recent(self, campaign: str, phone: str, *, window: timedelta) -> tuple[int, State] | None:
        """The id and state of a signup of this number to this campaign within
        `window` that was or will be delivered; None when there is none."""
        async with self._transaction() as conn:
            found = await conn.run_sync(_recent, [(campaign, phone)], utcnow() - window)
        return next(((i, state) for i, state, _ in found.get((campaign, phone), ())), None)

    async def add(
        self,
        record: ConsentRecord,
        optin: OptIn,
        *,
        leased_by: str | None = None,
        duplicate_window: timedelta = timedelta(0),
    ) -> Signup:
        """Store a consent record, pending delivery; return once it is committed. With
        `leased_by`, the caller holds the lease and will attempt delivery itself.

        When the same number signed up to the same campaign within `duplicate_window`
        and that signup was or will be delivered, the record is stored as a
        duplicate instead, and will not be sent. The check and the insert hold a lock
        on the number, so a double click or two replicas cannot both send."""
        signup: Signup = await self._queued(
            _Add(record, optin, leased_by, duplicate_window, asyncio.get_running_loop().create_future())
        )
        return signup

    async def claim(self, worker: str, *, limit: int = 1) -> list[Signup]:
        """Lease up to `limit` due pending signups for `worker`."""
        now = utcnow()
        due = (
            select(signups.c.id)
            .where(
                signups.c.state == State.PENDING,
                signups.c.next_attempt_at <= now,
                or_(signups.c.lease_until.is_(None), signups.c.lease_until < now),
            )
            .order_by(signups.c.next_attempt_at, signups.c.id)
            .limit(limit)
            # PostgreSQL: replicas claim different rows instead of queueing on the same
            # ones. SQLite has one writer at a time, which is lock enough.
            .with_for_update(skip_locked=True)
        )
        claim = (
            update(signups)
            .where(signups.c.id.in_(due.scalar_subquery()))
            .values(lease_until=now + self.lease, leased_by=worker, updated_at=now)
            .returning(*_SIGNUP_COLUMNS)
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(claim)).all()
        return sorted((_signup(row) for row in rows), key=lambda s: s.id)

    async def settle(self, signup: Signup, outcome: Outcome, *, worker: str) -> Transition:
        """Record the outcome of one delivery attempt made under `worker`'s lease."""
        now = utcnow()
        step = transition(signup, outcome, now=now, policy=self.policy)
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
        await self._update(signup.id, worker, values, step.state, _detail(outcome, step), now)
        return step

    async def release(self, signup: Signup, *, worker: str, delay: float = 0.0, reason: str) -> None:
        """Give a leased signup back untouched, due again after `delay` seconds."""
        now = utcnow()
        values = {
            "lease_until": None,
            "leased_by": None,
            "next_attempt_at": now + timedelta(seconds=delay),
            "updated_at": now,
        }
        await self._update(signup.id, worker, values, State.PENDING, f"released: {reason}", now)

    async def _update(
        self, signup_id: int, worker: str, values: dict[str, Any], state: State, detail: str | None, now: datetime
    ) -> bool:
        """Write `values` to a row `worker` holds; False when the lease had passed on."""
        future = asyncio.get_running_loop().create_future()
        held: bool = await self._queued(_Update(signup_id, worker, values, state, detail, now, future))
        return held

    # -- group commit ----------------------------------------------------------

    # Every write of the signup path (new consent records, outcomes, releases) queues
    # here. While one transaction is being written, the writes that arrive wait, and
    # the next transaction takes them all: one BEGIN, one COMMIT and one fsync for a
    # whole batch, and a few statements for it instead of a few per signup. That is
    # what lets a burst be absorbed (README, Performance).

    async def _queued(self, item: _Write) -> Any:
        self._queue.append(item)
        if not self._writing:
            self._writing = True
            # Held until it ends: the loop keeps only a weak reference to a task.
            self._writer_task = asyncio.ensure_future(self._write_queue())
        return await item.future

    async def _write_queue(self) -> None:
        try:
            while self._queue:
                batch, self._queue = _next_batch(self._queue)
                try:
                    results = await self._write(batch)
                except Exception as exc:
                    if unreachable(exc):
                        # The database did not answer in time or dropped the connection:
                        # written one by one, or in the next batch, each write would wait
                        # as long again. They fail together; the next write tries afresh.
                        failed, self._queue = [*batch, *self._queue], []
                        for item in failed:
                            _resolve(item.future, exception=exc)
                        continue
                    if len(batch) == 1:
                        _resolve(batch[0].future, exception=exc)
                        continue
                    # One bad write must not fail the others: write them one by one.
                    for item in batch:
                        try:
                            [result] = await self._write([item])
                        except Exception as single:
                            _resolve(item.future, exception=single)
                        else:
                            _resolve(item.future, result=result)
                    continue
                for item, result in zip(batch, results, strict=True):
                    _resolve(item.future, result=result)
        finally:
            self._writing = False

    async def _write(self, batch: list[_Write]) -> list[Any]:
        """Write a batch in one transaction; a result per item, in order."""
        if self._writer is not None:
            assert self._serial is not None
            async with self._serial:
                return await asyncio.get_running_loop().run_in_executor(self._writer, self._write_in_thread, batch)
        async with self._transaction() as conn:
            return await conn.run_sync(_write_batch, batch, self.lease)

    def _write_in_thread(self, batch: list[_Write]) -> list[Any]:
        assert self._thread_engine is not None
        with self._thread_engine.begin() as conn:
            return _write_batch(conn, batch, self.lease)

    async def get(self, signup_id: int) -> dict[str, Any] | None:
        async with self._transaction() as conn:
            row = (await conn.execute(select(signups).where(signups.c.id == signup_id))).mappings().first()
        return dict(row) if row else None

    async def history(self, signup_id: int) -> list[tuple[str, str | None]]:
        query = select(signup_events.c.state, signup_events.c.detail).where(signup_events.c.signup_id == signup_id)
        async with self._transaction() as conn:
            rows = (await conn.execute(query.order_by(signup_events.c.id))).all()
        return [(row.state, row.detail) for row in rows]

    async def counts(self) -> list[tuple[str, str, int]]:
        """(campaign, state, count) for every campaign and state that has signups."""
        query = (
            select(signups.c.campaign, signups.c.state, func.count())
            .group_by(signups.c.campaign, signups.c.state)
            .order_by(signups.c.campaign, signups.c.state)
        )
        async with self._transaction() as conn:
            return [(row[0], row[1], row[2]) for row in (await conn.execute(query)).all()]

    async def retry_failed(self, *, campaign: str | None = None) -> int:
        """Put failed signups back in the queue with fresh attempts; returns how many."""
        now = utcnow()
        where = [signups.c.state == State.FAILED]
        if campaign is not None:
            where.append(func.lower(signups.c.campaign) == campaign.lower())
        async with self._transaction() as conn:
            ids = (await conn.execute(select(signups.c.id).where(*where))).scalars().all()
            if ids:
                await conn.execute(
                    update(signups)
                    .where(signups.c.id.in_(ids), signups.c.state == State.FAILED)
                    .values(state=State.PENDING, attempts=0, next_attempt_at=now, updated_at=now)
                )
                for signup_id in ids:
                    await _event(conn, signup_id, State.PENDING, "retry requested by operator", now)
        return len(ids)

    async def export(
        self, *, since: datetime | None = None, until: datetime | None = None, campaign: str | None = None
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
            page = (
                select(signups, disclosures.c.text.label("disclosure_text"))
                .join(disclosures, disclosures.c.sha256 == signups.c.disclosure_sha256)
                .where(signups.c.id > after, *where)
                .order_by(signups.c.id)
                .limit(_EXPORT_PAGE)
            )
            async with self._transaction() as conn:
                rows = (await conn.execute(page)).mappings().all()
                if not rows:
                    return
                ids = [row["id"] for row in rows]
                events = (
                    await conn.execute(
                        select(
                            signup_events.c.signup_id, signup_events.c.at, signup_events.c.state, signup_events.c.detail
                        )
                        .where(signup_events.c.signup_id.in_(ids))
                        .order_by(signup_events.c.id)
                    )
                ).all()
            history: dict[int, list[dict[str, Any]]] = {}
            for event in events:
                history.setdefault(event.signup_id, []).append(
                    {"at": event.at.isoformat(), "state": event.state, "detail": event.detail}
                )
            for row in rows:
                yield {**{key: row[key] for key in EXPORT_FIELDS}, "history": history.get(row["id"], [])}
            after = ids[-1]


_EXPORT_PAGE = 500


# The columns of an exported consent record, in order ("history" follows them).
EXPORT_FIELDS = (
    "id",
    "created_at",
    "campaign",
    "phone",
    "group_ids",
    "page_url",
    "source",
    "client_ip",
    "user_agent",
    "disclosure_sha256",
    "disclosure_text",
    "state",
    "attempts",
    "upstream_messages",
    "last_error",
    "duplicate_of",
    "updated_at",
)


def _recent(
    conn: Connection, numbers: list[tuple[str, str]], since: datetime
) -> dict[tuple[str, str], list[tuple[int, State, datetime]]]:
    """Signups of these (campaign, number) pairs since `since` that were or will be
    delivered, newest first."""
    found: dict[tuple[str, str], list[tuple[int, State, datetime]]] = {}
    wanted = set(numbers)
    params = {
        "r_campaigns": sorted({c for c, _ in numbers}),
        "r_phones": sorted({p for _, p in numbers}),
        "r_since": since,
    }
    for row in conn.execute(_RECENT, params):
        # The query matches campaigns and numbers apart: keep the pairs asked for.
        if (row.campaign, row.phone) in wanted:
            found.setdefault((row.campaign, row.phone), []).append((row.id, State(row.state), row.created_at))
    return found


def _write_batch(conn: Connection, batch: list[_Write], lease: timedelta) -> list[Any]:
    """The writes of one transaction (synchronous: it runs in a worker thread on SQLite
    and through `run_sync` on PostgreSQL); a result per item, in order."""
    adds = [item for item in batch if isinstance(item, _Add)]
    updates = [item for item in batch if isinstance(item, _Update)]
    added = _insert(conn, adds, lease) if adds else []
    held = _apply_updates(conn, updates) if updates else set()
    results = iter(added)
    return [next(results) if isinstance(item, _Add) else item.signup_id in held for item in batch]


def _insert(conn: Connection, batch: list[_Add], lease: timedelta) -> list[Signup]:
    """Store new consent records: a duplicate check for all their numbers, one
    multi-row INSERT, one for their first events."""
    checked = [item for item in batch if item.window > timedelta(0)]
    numbers = sorted({(i.record.campaign, i.record.phone) for i in checked})
    recent: dict[tuple[str, str], list[tuple[int, State, datetime]]] = {}
    if numbers:
        _lock_numbers(conn, numbers)
        recent = _recent(conn, numbers, utcnow() - max(item.window for item in checked))

    rows_: list[dict[str, Any]] = []
    earliers: list[tuple[int, State] | None] = []
    for item in batch:
        record = item.record
        earlier: tuple[int, State] | None = None
        if item.window > timedelta(0):
            since = utcnow() - item.window
            key = (record.campaign, record.phone)
            earlier = next(((i, st) for i, st, at in recent.get(key, ()) if at >= since), None)
        earliers.append(earlier)
        rows_.append(_signup_row(record, item.optin, earlier, item.leased_by, lease))
    ids = conn.execute(_INSERT_SIGNUP, rows_).scalars().all()

    events = []
    written = []
    for item, signup_id, earlier, row in zip(batch, ids, earliers, rows_, strict=True):
        detail = f"duplicate of {earlier[0]}" if earlier else None
        events.append({"signup_id": signup_id, "at": row["created_at"], "state": row["state"], "detail": detail})
        written.append(
            Signup(
                signup_id, item.record.campaign, item.record.phone, row["state"], 0, row["created_at"],
                item.optin, earlier[1] if earlier else None,
            )
        )  # fmt: skip
    conn.execute(_INSERT_EVENT, events)
    return written


def _signup_row(
    record: ConsentRecord, optin: OptIn, earlier: tuple[int, State] | None, leased_by: str | None, lease: timedelta
) -> dict[str, Any]:
    now = record.created_at
    holder = leased_by if earlier is None else None
    return {
        "created_at": now,
        "campaign": record.campaign,
        "phone": record.phone,
        "group_ids": list(record.group_ids),
        "disclosure_sha256": record.disclosure_sha256,
        "page_url": record.page_url,
        "source": record.source,
        "client_ip": record.client_ip,
        "user_agent": record.user_agent,
        "request": {
            "phone": optin.phone,
            "group_ids": list(optin.group_ids),
            "cta_message": optin.cta_message,
            "confirm_message": optin.confirm_message,
            "send_cta_message": optin.send_cta_message,
        },
        "state": State.DUPLICATE if earlier is not None else State.PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": now + lease if holder else None,
        "leased_by": holder,
        "duplicate_of": earlier[0] if earlier else None,
        "updated_at": now,
    }


def _apply_updates(conn: Connection, updates: list[_Update]) -> set[int]:
    """Write the updates whose worker still holds the row's lease; their ids."""
    # Only the lease holder may write: a worker whose lease ran out must not overwrite
    # what the row's next holder recorded. Read the holders first (locking the rows on
    # PostgreSQL), then write each group of same-shaped updates in one executemany.
    holders = dict((conn.execute(_HOLDERS, {"h_ids": [u.signup_id for u in updates]})).all())
    held = [u for u in updates if holders.get(u.signup_id) == u.worker]
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for u in held:
        shapes.setdefault(tuple(sorted(u.values)), []).append({"held_id": u.signup_id, "held_by": u.worker, **u.values})
    for params in shapes.values():
        conn.execute(_UPDATE_HELD, params)
    if held:
        conn.execute(
            _INSERT_EVENT, [{"signup_id": u.signup_id, "at": u.at, "state": u.state, "detail": u.detail} for u in held]
        )
    return {u.signup_id for u in held}


# The statements of the signup path, built once: building SQLAlchemy expressions per
# call (`.values(**row)`) cost more CPU than running them. Parameters are bound at
# execute time, and the compiled form is cached.
# Many rows in one INSERT ... RETURNING, ids in the order of the rows given.
_INSERT_SIGNUP = insert(signups).returning(signups.c.id, sort_by_parameter_order=True)
_INSERT_EVENT = insert(signup_events)
# SET takes the columns named in the parameters; only the lease holder may write.
_UPDATE_HELD = update(signups).where(
    signups.c.id == bindparam("held_id"),
    signups.c.state == State.PENDING.value,
    signups.c.leased_by == bindparam("held_by"),
)
_HOLDERS = (
    select(signups.c.id, signups.c.leased_by)
    .where(signups.c.id.in_(bindparam("h_ids", expanding=True)), signups.c.state == State.PENDING.value)
    .with_for_update()
)
# Signups of some numbers to some campaigns since a time that were or will be
# delivered, newest first (a superset: the caller pairs campaigns and numbers).
_RECENT = (
    select(signups.c.id, signups.c.state, signups.c.campaign, signups.c.phone, signups.c.created_at)
    .where(
        signups.c.campaign.in_(bindparam("r_campaigns", expanding=True)),
        signups.c.phone.in_(bindparam("r_phones", expanding=True)),
        signups.c.created_at >= bindparam("r_since", type_=UTCDateTime),
        signups.c.state.in_([State.PENDING.value, State.DELIVERED.value]),
    )
    .order_by(signups.c.id.desc())
)
# PostgreSQL: one advisory lock per number, taken in one statement and in one order
# everywhere, so two replicas never wait on each other in a cycle.
_LOCK_NUMBERS = text(
    "SELECT count(pg_advisory_xact_lock(hashtext(k))) FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS s"
)


def _lock_numbers(conn: Connection, numbers: list[tuple[str, str]]) -> None:
    """Serialise signups of these numbers to their campaigns until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(_LOCK_NUMBERS, {"keys": [f"optin-pages:{c.lower()}:{p}" for c, p in numbers]})
    # SQLite: every transaction begins IMMEDIATE (app.storage), so this one already
    # holds the database's single write lock.


async def _event(conn: AsyncConnection, signup_id: int, state: State, detail: str | None, at: datetime) -> None:
    await conn.execute(_INSERT_EVENT, {"signup_id": signup_id, "at": at, "state": state, "detail": detail})


def _detail(outcome: Outcome, step: Transition) -> str:
    match outcome:
        case Accepted() if not outcome.verified:
            return f"ProTexting accepted (HTTP {outcome.status}), unverified: {outcome.reason}; not sent again"
        case Accepted():
            return f"ProTexting accepted (HTTP {outcome.status})"
        case Rejected():
            return "ProTexting refused: " + "; ".join(e.message for e in outcome.errors)
        case Unavailable():
            if step.state == State.FAILED:
                return f"gave up after {step.attempts} attempts: {outcome.reason}"
            return f"{outcome.reason}; retry in {step.retry_in:.1f}s"
    return ""
