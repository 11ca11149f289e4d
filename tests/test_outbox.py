"""The outbox: consent records, the delivery state machine, leases, on both databases."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from app.consent import ConsentRecord, Disclosure
from app.outbox import Job, Kind, RetryPolicy, State, transition
from app.storage import Outbox, create_engine, migrate, thread_engine_for
from app.storage.tables import jobs
from app.upstream import Accepted, FieldError, OptIn, RateLimit, Rejected, Unavailable

pytestmark = pytest.mark.anyio

DISCLOSURE = Disclosure.of("<p>By submitting this form you agree ... <strong>STOP</strong> to cancel.</p>")
POLICY = RetryPolicy(max_attempts=3, max_age=timedelta(hours=1), base=2.0, cap=60.0)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _signup(attempts: int = 0, created_at: datetime = NOW) -> Job:
    return Job(1, Kind.OPT_IN, OptIn("12015550123", (1,)), State.PENDING, attempts, created_at, "12015550123", "JOIN")


def record(phone: str = "12015550123", campaign: str = "JOIN", **changes: object) -> ConsentRecord:
    values: dict[str, object] = {
        "created_at": datetime.now(UTC),
        "campaign": campaign,
        "phone": phone,
        "group_ids": (1, 2),
        "disclosure_sha256": DISCLOSURE.sha256,
        "page_url": f"https://signup.example/{campaign}?src=poster",
        "source": {"src": "poster"},
        "client_ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (test)",
    }
    values.update(changes)
    return ConsentRecord(**values)  # type: ignore[arg-type]


def optin(phone: str = "12015550123") -> OptIn:
    return OptIn(phone=phone, group_ids=(1, 2), cta_message="Reply YES", send_cta_message=True)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def outbox(database_url: str) -> AsyncIterator[Outbox]:
    engine = create_engine(database_url)
    await migrate(engine)
    box = Outbox(engine, policy=POLICY, lease=timedelta(seconds=60))
    await box.remember_disclosures([DISCLOSURE])
    yield box
    await box.close()
    await engine.dispose()


# -- the state machine, as a pure function ----------------------------------------


def test_accepted_is_delivered() -> None:
    step = transition(_signup(attempts=1), Accepted(201), now=NOW, policy=POLICY)
    assert (step.state, step.attempts, step.retry_in) == (State.DELIVERED, 2, None)


def test_rejected_keeps_protextings_messages() -> None:
    outcome = Rejected((FieldError("PhoneNumber", "Phone number is opted out."),))
    step = transition(_signup(), outcome, now=NOW, policy=POLICY)
    assert step.state == State.REJECTED
    assert step.messages == [{"field": "PhoneNumber", "message": "Phone number is opted out."}]


def test_a_refusal_of_the_set_up_holds_the_signup_naming_the_cause() -> None:
    outcome = Rejected((FieldError(None, "Not enough credit.", 5),))
    step = transition(_signup(), outcome, now=NOW, policy=POLICY)
    assert (step.state, step.attempts, step.retry_in) == (State.HELD, 1, None)
    assert step.error == "not enough credit on the ProTexting account (code 5: 'Not enough credit.')"
    assert step.messages == [{"field": None, "message": "Not enough credit.", "code": 5}]


def test_a_422_we_cannot_read_holds_the_signup() -> None:
    step = transition(_signup(), Rejected((), unreadable="body over 1 MB"), now=NOW, policy=POLICY)
    assert (step.state, step.messages) == (State.HELD, [])
    assert step.error == "a 422 that could not be read (body over 1 MB)"


def test_a_refusal_of_the_number_and_the_set_up_is_the_numbers() -> None:
    # Sending it again, set-up fixed, would be refused for the number all the same.
    outcome = Rejected((FieldError("GroupIds", "Group Ids is invalid."), FieldError("PhoneNumber", "Invalid.")))
    assert transition(_signup(), outcome, now=NOW, policy=POLICY).state == State.REJECTED


def test_unavailable_retries_with_backoff_then_fails() -> None:
    down = Unavailable("HTTP 503", status=503)
    first = transition(_signup(attempts=0), down, now=NOW, policy=POLICY, rng=random.Random(1))
    assert first.state == State.PENDING and first.attempts == 1
    assert 0 <= first.retry_in <= POLICY.base
    second = transition(_signup(attempts=1), down, now=NOW, policy=POLICY, rng=random.Random(1))
    assert second.state == State.PENDING and 0 <= second.retry_in <= POLICY.base * 2
    last = transition(_signup(attempts=2), down, now=NOW, policy=POLICY)
    assert (last.state, last.attempts) == (State.FAILED, 3)
    assert last.error == "HTTP 503"


def test_too_old_a_signup_fails_even_with_attempts_left() -> None:
    old = _signup(attempts=0, created_at=NOW - timedelta(hours=2))
    assert transition(old, Unavailable("timed out"), now=NOW, policy=POLICY).state == State.FAILED


@pytest.mark.parametrize("status", [401, 403, 429])
def test_account_and_pace_problems_do_not_use_up_attempts(status: int) -> None:
    outcome = Unavailable(f"HTTP {status}", status=status, rate_limit=RateLimit(60, 0, 30.0))
    step = transition(_signup(attempts=2), outcome, now=NOW, policy=POLICY)
    assert (step.state, step.attempts) == (State.PENDING, 2)
    if status == 429:
        assert step.retry_in == 30.0  # X-Rate-Limit-Reset: seconds until the allowance is back


@pytest.mark.parametrize("status", [200, 204, 301])
def test_a_set_up_error_waits_without_using_up_attempts(status: int) -> None:
    outcome = Unavailable(f"HTTP {status}, which ProTexting never answers (check PROTEXTING_API_URL)", status=status)
    step = transition(_signup(attempts=POLICY.max_attempts - 1), outcome, now=NOW, policy=POLICY)
    assert (step.state, step.attempts) == (State.PENDING, POLICY.max_attempts - 1)  # never given up for it


def test_a_201_that_could_not_be_checked_is_delivered_all_the_same() -> None:
    step = transition(_signup(), Accepted(201, verified=False, reason="body over 1 MB"), now=NOW, policy=POLICY)
    assert (step.state, step.attempts) == (State.DELIVERED, 1)


def test_backoff_is_full_jitter_capped() -> None:
    rng = random.Random(7)
    waits = [POLICY.backoff(10, rng) for _ in range(500)]
    assert max(waits) <= POLICY.cap
    assert min(waits) < POLICY.cap / 10  # full jitter: anywhere from zero up
    assert max(waits) > POLICY.cap * 0.9


# -- storage, on SQLite and PostgreSQL --------------------------------------------


async def test_a_consent_record_is_committed_with_everything_needed_as_proof(outbox: Outbox) -> None:
    signup = await outbox.add(record(), optin())
    # Read back through a different engine: committed, not just in this session.
    other = create_engine(outbox.engine.url.render_as_string(hide_password=False))
    async with other.connect() as conn:
        query = text("SELECT * FROM signups JOIN jobs USING (id) WHERE id = :id")
        row = (await conn.execute(query, {"id": signup.id})).mappings().one()
    await other.dispose()
    assert row["phone"] == "12015550123"
    assert row["campaign"] == "JOIN"
    assert row["state"] == "pending"
    assert row["client_ip"] == "203.0.113.7"
    assert row["user_agent"] == "Mozilla/5.0 (test)"
    assert row["page_url"] == "https://signup.example/JOIN?src=poster"
    assert row["disclosure_sha256"] == DISCLOSURE.sha256

    [exported] = [r async for r in outbox.export()]
    assert exported["disclosure_text"] == DISCLOSURE.text
    assert exported["source"] == {"src": "poster"}
    assert exported["group_ids"] == [1, 2]
    assert exported["created_at"].tzinfo is not None


async def test_claim_leases_a_row_to_one_worker(outbox: Outbox) -> None:
    added = await outbox.add(record(), optin())
    [claimed] = await outbox.claim("worker-a")
    assert claimed.id == added.id
    assert claimed.kind == Kind.OPT_IN and claimed.payload == optin()
    assert await outbox.claim("worker-b") == []


async def test_a_row_held_by_the_request_is_not_claimed_until_its_lease_ends(outbox: Outbox) -> None:
    await outbox.add(record(), optin(), leased_by="request")
    assert await outbox.claim("worker") == []
    expired = Outbox(outbox.engine, policy=POLICY, lease=timedelta(seconds=-1))
    await expired.add(record(phone="12015550124"), optin("12015550124"), leased_by="crashed")
    # A lease that has run out (its holder died): the row is due again.
    [claimed] = await outbox.claim("worker")
    assert claimed.phone == "12015550124"


async def test_settle_records_state_and_history(outbox: Outbox) -> None:
    await outbox.add(record(), optin())
    [signup] = await outbox.claim("w")
    step = await outbox.settle(signup, Unavailable("HTTP 503", status=503), worker="w")
    assert step.state == State.PENDING
    row = await outbox.get(signup.id)
    assert row is not None and row["attempts"] == 1 and row["last_error"] == "HTTP 503"
    assert row["lease_until"] is None and row["next_attempt_at"] > signup.created_at

    again = dataclasses.replace(signup, attempts=1)
    async with outbox.engine.begin() as conn:  # make it due now rather than after the backoff
        await conn.execute(text("UPDATE jobs SET next_attempt_at = created_at"))
    [_] = await outbox.claim("w")
    await outbox.settle(again, Accepted(201), worker="w")
    row = await outbox.get(signup.id)
    assert row is not None and row["state"] == "delivered" and row["attempts"] == 2
    history = await outbox.history(signup.id)
    assert [state for state, _ in history] == ["pending", "pending", "delivered"]
    assert "HTTP 503" in (history[1][1] or "")


async def test_only_the_lease_holder_can_settle(outbox: Outbox) -> None:
    await outbox.add(record(), optin())
    [signup] = await outbox.claim("owner")
    await outbox.settle(signup, Accepted(201), worker="someone-else")
    row = await outbox.get(signup.id)
    assert row is not None and row["state"] == "pending" and row["leased_by"] == "owner"


async def test_rejected_keeps_messages_and_is_final(outbox: Outbox) -> None:
    await outbox.add(record(), optin())
    [signup] = await outbox.claim("w")
    await outbox.settle(signup, Rejected((FieldError("PhoneNumber", "Phone number is opted out."),)), worker="w")
    row = await outbox.get(signup.id)
    assert row is not None and row["state"] == "rejected"
    assert row["upstream_messages"] == [{"field": "PhoneNumber", "message": "Phone number is opted out."}]
    assert await outbox.claim("w") == []


async def test_failed_signups_can_be_retried_by_the_operator(outbox: Outbox) -> None:
    await outbox.add(record(campaign="JOIN"), optin())
    await outbox.add(record(campaign="ALERTS", phone="12015550124"), optin("12015550124"))
    for _ in range(POLICY.max_attempts):
        async with outbox.engine.begin() as conn:
            await conn.execute(text("UPDATE jobs SET next_attempt_at = created_at"))
        for signup in await outbox.claim("w", limit=10):
            await outbox.settle(signup, Unavailable("timed out"), worker="w")
    assert sorted(await outbox.counts()) == [("ALERTS", "failed", 1), ("JOIN", "failed", 1)]

    assert await outbox.retry_failed(campaign="join") == 1
    assert sorted(await outbox.counts()) == [("ALERTS", "failed", 1), ("JOIN", "pending", 1)]
    [again] = await outbox.claim("w")
    assert again.campaign == "JOIN" and again.attempts == 0


async def test_held_signups_are_queued_again_only_when_the_operator_asks_for_held_ones(outbox: Outbox) -> None:
    await outbox.add(record(campaign="JOIN"), optin())
    await outbox.add(record(campaign="ALERTS", phone="12015550124"), optin("12015550124"))
    for signup in await outbox.claim("w", limit=10):
        await outbox.settle(signup, Rejected((FieldError("GroupIds", "Group Ids is invalid."),)), worker="w")
    assert sorted(await outbox.counts()) == [("ALERTS", "held", 1), ("JOIN", "held", 1)]
    assert await outbox.claim("w") == []  # not due: it waits for the set-up to be fixed

    assert await outbox.retry_failed() == 0
    assert await outbox.retry_failed(campaign="join", held=True) == 1
    assert sorted(await outbox.counts()) == [("ALERTS", "held", 1), ("JOIN", "pending", 1)]
    [again] = await outbox.claim("w")
    assert again.campaign == "JOIN" and again.attempts == 0
    history = await outbox.history(again.id)
    assert [state for state, _ in history] == ["pending", "held", "pending"]
    assert "group_ids" in (history[1][1] or "") and history[2][1] == "retry requested by operator"


async def test_a_held_signup_counts_as_live_for_the_duplicate_check(outbox: Outbox) -> None:
    # Held signups all go once the set-up is fixed: a second of the same number would text twice.
    first = await outbox.add(record(), optin())
    [signup] = await outbox.claim("w")
    await outbox.settle(signup, Rejected((FieldError(None, "Not enough credit.", 5),)), worker="w")
    window = timedelta(minutes=10)
    assert await outbox.recent("JOIN", "12015550123", window=window) == (first.id, State.HELD)
    again = await outbox.add(record(), optin(), duplicate_window=window)
    assert (again.state, again.earlier) == (State.DUPLICATE, State.HELD)


async def test_recent_finds_a_live_signup_of_the_same_number_and_campaign(outbox: Outbox) -> None:
    window = timedelta(minutes=10)
    assert await outbox.recent("JOIN", "12015550123", window=window) is None
    first = await outbox.add(record(), optin())
    assert await outbox.recent("JOIN", "12015550123", window=window) == (first.id, State.PENDING)
    assert await outbox.recent("ALERTS", "12015550123", window=window) is None
    assert await outbox.recent("JOIN", "12015550199", window=window) is None
    assert await outbox.recent("JOIN", "12015550123", window=timedelta(0)) is None

    [signup] = await outbox.claim("w")
    await outbox.settle(signup, Rejected((FieldError("PhoneNumber", "opted out"),)), worker="w")
    # A refused signup is not a reason to skip the next try.
    assert await outbox.recent("JOIN", "12015550123", window=window) is None


async def test_a_signups_writes_look_up_its_own_rows_by_index_not_every_job(tmp_path: Path) -> None:
    # The duplicate check and the lease check run on every batch: read by the job's
    # state (ix_jobs_due), they would go through every delivered job, and a signup
    # would cost more with each one stored.
    path = tmp_path / "optin.db"
    statements: list[tuple[str, Any]] = []

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "UPDATE") and " jobs" in statement:
            statements.append((statement, parameters[0] if executemany else parameters))

    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(engine)
    box = Outbox(engine, policy=POLICY, lease=timedelta(seconds=60))
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        await box.remember_disclosures([DISCLOSURE])
        # Batches, as under load: the planner's choice changes with the number of values.
        numbers = [f"1201555{n:04d}" for n in range(8)]
        window = timedelta(minutes=10)
        added = await asyncio.gather(
            *(box.add(record(phone=n), optin(n), leased_by="w", duplicate_window=window) for n in numbers)
        )
        await asyncio.gather(*(box.settle(job, Accepted(201), worker="w") for job in added))
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
        await box.close()
        await engine.dispose()

    assert len(statements) >= 2  # the duplicate check, the lease holders' check
    with sqlite3.connect(path) as db:
        for statement, parameters in statements:
            plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert "ix_jobs_due" not in plan and "SCAN jobs" not in plan, (statement, plan)


async def test_export_filters_by_time_and_campaign(outbox: Outbox) -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    await outbox.add(record(created_at=day), optin())
    await outbox.add(record(created_at=day + timedelta(days=1), campaign="ALERTS"), optin())
    await outbox.add(record(created_at=day + timedelta(days=2)), optin())

    async def ids(**filters: object) -> list[str]:
        return [r["created_at"].date().isoformat() + " " + r["campaign"] async for r in outbox.export(**filters)]

    assert await ids() == ["2026-03-01 JOIN", "2026-03-02 ALERTS", "2026-03-03 JOIN"]
    assert await ids(since=day + timedelta(days=1)) == ["2026-03-02 ALERTS", "2026-03-03 JOIN"]
    assert await ids(until=day + timedelta(days=1)) == ["2026-03-01 JOIN"]
    assert await ids(campaign="join") == ["2026-03-01 JOIN", "2026-03-03 JOIN"]


async def test_workers_claim_disjoint_rows(outbox: Outbox) -> None:
    for n in range(30):
        await outbox.add(record(phone=f"1201555{n:04d}"), optin(f"1201555{n:04d}"))
    boxes = [
        Outbox(
            create_engine(outbox.engine.url.render_as_string(hide_password=False)), policy=POLICY, lease=outbox.lease
        )
        for _ in range(3)
    ]

    async def claim_all(box: Outbox, name: str) -> list[int]:
        got: list[int] = []
        while batch := await box.claim(name, limit=2):
            got += [s.id for s in batch]
        return got

    results = await asyncio.gather(*(claim_all(box, f"w{i}") for i, box in enumerate(boxes)))
    for box in boxes:
        await box.close()
        await box.engine.dispose()
    every = [i for ids in results for i in ids]
    assert len(every) == 30 and len(set(every)) == 30


async def test_signups_arriving_together_are_committed_together_and_a_bad_one_fails_alone(outbox: Outbox) -> None:
    good = [outbox.add(record(phone=f"1201555{n:04d}"), optin(f"1201555{n:04d}")) for n in range(20)]
    bad = outbox.add(
        record(phone="12015559999", disclosure_sha256="0" * 64), optin("12015559999")
    )  # unknown disclosure
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    stored, failed = results[:-1], results[-1]
    assert isinstance(failed, Exception)  # the database refused it (foreign key)
    assert all(isinstance(s, Job) and s.state == State.PENDING for s in stored)
    assert len({s.id for s in stored}) == 20  # type: ignore[union-attr]
    assert sorted(await outbox.counts()) == [("JOIN", "pending", 20)]


async def test_each_signup_of_a_batch_gets_its_own_job_and_record(outbox: Outbox) -> None:
    numbers = [f"1201555{n:04d}" for n in range(20)]
    for _ in range(2):  # two batches: the second's ids follow the first's
        jobs = await asyncio.gather(*(outbox.add(record(phone=n, source={"src": n}), optin(n)) for n in numbers))
        assert [job.phone for job in jobs] == numbers
        for job in jobs:
            row = await outbox.get(job.id)
            assert row is not None
            assert (row["phone"], row["source"], row["payload"]["phone"]) == (job.phone, {"src": job.phone}, job.phone)
    assert sorted(await outbox.counts()) == [("JOIN", "pending", 40)]


async def test_sqlite_keeps_every_time_as_utc_text_in_one_format(tmp_path: Path) -> None:
    # SQLite compares the times as text (the due jobs, the duplicate window, exports
    # by date): a time must be written the same way whatever its offset or microseconds.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}")
    await migrate(engine)
    box = Outbox(engine, policy=POLICY, lease=timedelta(seconds=60))
    try:
        await box.remember_disclosures([DISCLOSURE])
        new_york = timezone(timedelta(hours=-5))
        await box.add(record(created_at=datetime(2026, 11, 27, 7, 0, tzinfo=new_york)), optin())
        await box.add(record(phone="12015550124", created_at=datetime(2026, 11, 27, 12, 0, 0, 5, tzinfo=UTC)), optin())
        async with engine.connect() as conn:
            stored = (await conn.execute(text("SELECT created_at, next_attempt_at FROM jobs ORDER BY id"))).all()
            records = (await conn.execute(text("SELECT created_at FROM signups ORDER BY id"))).scalars().all()
    finally:
        await box.close()
        await engine.dispose()
    assert [tuple(row) for row in stored] == [
        ("2026-11-27 12:00:00.000000", "2026-11-27 12:00:00.000000"),
        ("2026-11-27 12:00:00.000005", "2026-11-27 12:00:00.000005"),
    ]
    assert records == ["2026-11-27 12:00:00.000000", "2026-11-27 12:00:00.000005"]


def test_a_time_printed_into_sqlite_sql_is_the_text_sqlite_holds() -> None:
    # Offline migrations and logged statements render times as literals.
    since = datetime(2026, 11, 27, 7, 0, tzinfo=timezone(timedelta(hours=-5)))
    sql = select(jobs.c.id).where(jobs.c.created_at >= since)
    printed = str(sql.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    assert printed.endswith("jobs.created_at >= '2026-11-27 12:00:00.000000'")


async def test_in_one_batch_the_second_submission_of_a_number_is_its_duplicate(outbox: Outbox) -> None:
    window = timedelta(minutes=10)
    first, second = await asyncio.gather(
        outbox.add(record(), optin(), duplicate_window=window), outbox.add(record(), optin(), duplicate_window=window)
    )
    assert (first.state, second.state) == (State.PENDING, State.DUPLICATE)
    row = await outbox.get(second.id)
    assert row is not None and row["duplicate_of"] == first.id


async def test_on_sqlite_one_writer_thread_makes_every_write(tmp_path: Path) -> None:
    # SQLite has one writer at a time: every write of the process, claims and the
    # operator's retries included, is made by the outbox's own thread, in turn, rather
    # than by connections competing in SQLite's busy handler.
    writes: list[tuple[str, str]] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            writes.append((threading.current_thread().name, statement.split(None, 3)[2]))

    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}")
    await migrate(engine)
    event.listen(Engine, "before_cursor_execute", seen)
    box = Outbox(engine, policy=RetryPolicy(max_attempts=1), lease=timedelta(seconds=60))
    try:
        await box.remember_disclosures([DISCLOSURE])
        await box.add(record(), optin())
        [job] = await box.claim("w")
        await box.settle(job, Unavailable("timed out"), worker="w")  # failed at once
        assert await box.retry_failed() == 1
        [job] = await box.claim("w")
        await box.release(job, worker="w", reason="shutting down")
        assert [state for state, _ in await box.history(job.id)] == ["pending", "failed", "pending", "pending"]
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
        await box.close()
        await engine.dispose()
    assert {table for _, table in writes} >= {"disclosures", "jobs", "signups", "job_events"}
    assert {thread.split("_")[0] for thread, _ in writes} == {"storage-writer"}


async def test_every_sqlite_connection_commits_durably_with_a_1_mb_page_cache(tmp_path: Path) -> None:
    # Both engines on a SQLite file (the requests' and the writer thread's): WAL, each
    # commit synced before the person sees "thanks" (FULL is 2), foreign keys kept,
    # and a page cache of 1 MB (app.storage.engine says why).
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}")
    wanted = ["wal", 2, 1, -1000]
    pragmas = [f"PRAGMA {name}" for name in ("journal_mode", "synchronous", "foreign_keys", "cache_size")]
    try:
        async with engine.connect() as connection:
            assert [(await connection.exec_driver_sql(p)).scalar() for p in pragmas] == wanted
        writer = thread_engine_for(engine)
        assert writer is not None
        with writer.connect() as connection:
            assert [connection.exec_driver_sql(p).scalar() for p in pragmas] == wanted
        writer.dispose()
    finally:
        await engine.dispose()
