"""The funnel's counting (app.funnel) and its table (app.storage.console): the tally's
flushes become counts by campaign, src and hour, added up across replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.funnel import OTHER, VIEWS, Funnel, funnel_rows
from app.metrics import Metrics, Outcome
from app.storage import Outbox, create_engine, migrate
from app.storage.console import AuditEntry, ConsoleStore
from app.upstream import Unavailable
from tests.support.clocks import Clock
from tests.test_outbox import DISCLOSURE, POLICY, optin, record

pytestmark = pytest.mark.anyio

HOUR_START = datetime(2026, 12, 2, 9, tzinfo=UTC)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ConsoleStore]:
    engine = create_engine(database_url)
    await migrate(engine)
    outbox = Outbox(engine, policy=POLICY, lease=timedelta(seconds=60))
    yield ConsoleStore(outbox)
    await outbox.close()
    await engine.dispose()


def flushed(
    funnel: Funnel, views: Sequence[tuple[str, bytes]], submissions: Sequence[tuple[str, Outcome, str]] = ()
) -> None:
    """A page's views and submissions, counted by the tally and flushed to `funnel`."""
    metrics = Metrics()
    metrics.readers.append(funnel.read)
    for campaign, query in views:
        metrics.tally.view(campaign, query)
    for campaign, outcome, src in submissions:
        metrics.tally.submission(campaign, outcome, src)
    metrics.flush()


def test_a_flush_counts_views_by_src_read_from_the_query_string() -> None:
    funnel = Funnel(clock=Clock(HOUR_START.timestamp() + 1800))
    flushed(
        funnel,
        [("join", b"src=poster-1"), ("join", b"src=poster-1&utm_source=x"), ("join", b""), ("join", b"src=a%20b")],
        [("join", Outcome.DELIVERED, "poster-1")],
    )
    counts = {(c.campaign, c.src, c.metric): c.count for c in funnel.take()}
    assert counts == {
        ("join", "poster-1", VIEWS): 2,
        ("join", "", VIEWS): 1,
        ("join", "a b", VIEWS): 1,
        ("join", "poster-1", "delivered"): 1,
    }
    assert funnel.take() == []


def test_past_the_limit_of_sources_in_an_hour_the_rest_count_as_other() -> None:
    clock = Clock(HOUR_START.timestamp())
    funnel = Funnel(max_sources=2, clock=clock)
    flushed(funnel, [("join", f"src=s{n}".encode()) for n in range(5)])
    flushed(funnel, [("join", b"src=s0"), ("alerts", b"src=s9")])
    counts = {(c.campaign, c.src): c.count for c in funnel.take()}
    assert counts == {("join", "s0"): 2, ("join", "s1"): 1, ("join", OTHER): 3, ("alerts", "s9"): 1}
    # A new hour, a new allowance.
    clock.advance(3600)
    flushed(funnel, [("join", b"src=s4")])
    assert [(c.src, c.hour) for c in funnel.take()] == [("s4", HOUR_START + timedelta(hours=1))]


async def test_counts_of_two_replicas_add_up_in_the_table(store: ConsoleStore) -> None:
    clock = Clock(HOUR_START.timestamp() + 10)
    replicas = [Funnel(clock=clock), Funnel(clock=clock)]
    for replica in replicas:
        flushed(replica, [("join", b"src=poster-1")] * 3, [("join", Outcome.INVALID_NUMBER, "poster-1")])
        await store.add_counts(replica.take())
    flushed(replicas[0], [("join", b"src=poster-1")])
    await store.add_counts(replicas[0].take())
    rows = await store.counts(since=HOUR_START, until=HOUR_START + timedelta(hours=1))
    assert sorted(rows) == [
        ("join", "poster-1", HOUR_START, "invalid_number", 2),
        ("join", "poster-1", HOUR_START, VIEWS, 7),
    ]
    assert await store.counts(since=HOUR_START + timedelta(hours=1), until=HOUR_START + timedelta(hours=2)) == []


def test_counts_the_table_did_not_take_wait_for_the_next_write() -> None:
    funnel = Funnel(clock=Clock(HOUR_START.timestamp()))
    flushed(funnel, [("join", b"")] * 2)
    taken = funnel.take()
    flushed(funnel, [("join", b"")])
    funnel.put_back(taken)
    assert [(c.metric, c.count) for c in funnel.take()] == [(VIEWS, 3)]


def test_the_funnel_rows_put_each_campaign_before_its_sources_most_viewed_first() -> None:
    counts = [
        ("join", "a", HOUR_START, VIEWS, 2),
        ("join", "b", HOUR_START, VIEWS, 5),
        ("join", "b", HOUR_START, "delivered", 1),
        ("join", "b", HOUR_START, "rate_limited", 1),
    ]
    rows = funnel_rows(
        counts, [("join", "b", "delivered", 1), ("join", "a", "failed", 1), ("join", "a", "duplicate", 1)]
    )
    assert [(r.campaign, r.src) for r in rows] == [("join", None), ("join", "b"), ("join", "a")]
    total = rows[0]
    assert (total.views, total.submissions, total.rate_limited, total.delivered, total.failed) == (7, 2, 1, 1, 1)
    assert total.conversion == pytest.approx(1 / 7) and total.opt_outs is None


async def test_the_signups_of_a_period_by_src_and_state_stuck_ones_and_the_audit_log(store: ConsoleStore) -> None:
    outbox = store.outbox
    await outbox.remember_disclosures([DISCLOSURE])
    now = datetime.now(UTC)
    failing = await outbox.add(record(phone="12015550125", source={"src": "poster-1"}), optin("12015550125"))
    for _ in range(POLICY.max_attempts):
        async with outbox.engine.begin() as conn:
            await conn.execute(text("UPDATE jobs SET next_attempt_at = created_at WHERE id = :id"), {"id": failing.id})
        [claimed] = await outbox.claim("w")
        await outbox.settle(claimed, Unavailable("timed out"), worker="w")
    await outbox.add(record(source={"src": "poster-1"}), optin())
    await outbox.add(record(phone="12015550124", source={}), optin("12015550124"))
    period = {"since": now - timedelta(minutes=1), "until": now + timedelta(minutes=1)}
    assert sorted(await store.delivery(**period)) == [
        ("join", "", "pending", 1),
        ("join", "poster-1", "failed", 1),
        ("join", "poster-1", "pending", 1),
    ]
    assert await store.delivery(since=now + timedelta(minutes=1), until=now + timedelta(minutes=2)) == []

    [stuck] = await store.stuck()
    assert (stuck.id, stuck.state, stuck.phone, stuck.attempts, stuck.last_error) == (
        failing.id,
        "failed",
        "12015550125",
        3,
        "timed out",
    )
    assert await outbox.retry_failed(job_id=failing.id + 1) == 0
    assert await outbox.retry_failed(job_id=failing.id) == 1
    assert await store.stuck() == []

    await store.record(AuditEntry(now, "login", "203.0.113.7", None))
    await store.record(AuditEntry(now, "export", "203.0.113.7", "format=csv"))
    assert [(e.action, e.address, e.detail) for e in await store.audit()] == [
        ("export", "203.0.113.7", "format=csv"),
        ("login", "203.0.113.7", None),
    ]
