"""Migrations: a database made by an older schema, rows included, carried to the newest.

The database is made by Alembic at revision 0001 (one `signups` row per signup, its
delivery state beside its consent record) and filled as the code of that schema wrote
it; then `migrate()` upgrades it, and everything is checked through today's code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, Text, insert, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from app import packaged, upstream
from app.consent import ConsentRecord, Disclosure
from app.delivery import Delivery
from app.outbox import Kind, RetryPolicy, State
from app.pacing import Pacer
from app.sandbox import FakeProTexting
from app.storage import SCHEMA_REVISION, Outbox, UTCDateTime, create_engine, migrate

pytestmark = pytest.mark.anyio

DISCLOSURE = Disclosure.of("<p>Recurring automated texts. Reply <strong>STOP</strong> to cancel.</p>")
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(autouse=True)
def _now() -> None:
    """The rows' times from the test's own start, not the module's import: a long suite
    would otherwise put the "one minute ago" signup outside the duplicate window."""
    global NOW
    NOW = datetime.now(UTC).replace(microsecond=0)


# Revision 0001's tables, as its code wrote them.
_old = MetaData()
old_signups = Table(
    "signups",
    _old,
    Column("id", Integer, primary_key=True),
    Column("created_at", UTCDateTime),
    Column("campaign", String),
    Column("phone", String),
    Column("group_ids", JSON),
    Column("disclosure_sha256", String),
    Column("page_url", Text),
    Column("source", JSON),
    Column("client_ip", String),
    Column("user_agent", Text),
    Column("request", JSON),
    Column("state", String),
    Column("attempts", Integer),
    Column("next_attempt_at", UTCDateTime),
    Column("lease_until", UTCDateTime),
    Column("leased_by", String),
    Column("last_error", Text),
    Column("upstream_messages", JSON),
    Column("duplicate_of", Integer),
    Column("updated_at", UTCDateTime),
)
old_events = Table(
    "signup_events",
    _old,
    Column("id", Integer, primary_key=True),
    Column("signup_id", Integer),
    Column("at", UTCDateTime),
    Column("state", String),
    Column("detail", Text),
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _alembic(connection: Connection, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(packaged("migrations")))
    config.attributes["connection"] = connection
    (command.downgrade if down else command.upgrade)(config, revision)


def _signup(phone: str, *, at: datetime, state: str, **delivery: Any) -> dict[str, Any]:
    return {
        "created_at": at,
        "campaign": "JOIN",
        "phone": phone,
        "group_ids": [4],
        "disclosure_sha256": DISCLOSURE.sha256,
        "page_url": "https://signup.example/JOIN?src=poster",
        "source": {"src": "poster"},
        "client_ip": "203.0.113.7",
        "user_agent": "Mozilla/5.0 (old)",
        "request": {
            "phone": phone,
            "group_ids": [4],
            "cta_message": "Reply YES",
            "confirm_message": None,
            "send_cta_message": True,
        },
        "state": state,
        "attempts": 0,
        "next_attempt_at": at,
        "lease_until": None,
        "leased_by": None,
        "last_error": None,
        "upstream_messages": None,
        "duplicate_of": None,
        "updated_at": at,
        **delivery,
    }


def _fill_0001(conn: Connection) -> dict[str, int]:
    """A pending signup (tried once, its crashed worker's lease run out), a delivered
    one, its duplicate, a failed one and a rejected one, each with its history."""
    conn.execute(
        text("INSERT INTO disclosures (sha256, text, first_shown_at) VALUES (:s, :t, :at)"),
        {"s": DISCLOSURE.sha256, "t": DISCLOSURE.text, "at": NOW.replace(tzinfo=None)},
    )
    ids: dict[str, int] = {}

    def add(name: str, row: dict[str, Any], events: list[tuple[str, str | None]]) -> None:
        ids[name] = conn.execute(insert(old_signups).returning(old_signups.c.id), row).scalar_one()
        for state, detail in events:
            conn.execute(
                insert(old_events), {"signup_id": ids[name], "at": row["updated_at"], "state": state, "detail": detail}
            )

    hour = timedelta(hours=1)
    add("delivered", _signup("12015550202", at=NOW - timedelta(minutes=1), state="delivered", attempts=1),
        [("pending", None), ("delivered", "ProTexting accepted (HTTP 201)")])  # fmt: skip
    add("duplicate", _signup("12015550202", at=NOW, state="duplicate", duplicate_of=ids["delivered"]),
        [("duplicate", f"duplicate of {ids['delivered']}")])  # fmt: skip
    add("failed", _signup("12015550203", at=NOW - 3 * hour, state="failed", attempts=12, last_error="timed out"),
        [("pending", None), ("failed", "gave up after 12 attempts: timed out")])  # fmt: skip
    add("rejected", _signup("12015550204", at=NOW - hour, state="rejected", attempts=1,
                            upstream_messages=[{"field": "PhoneNumber", "message": "opted out"}]),
        [("pending", None), ("rejected", "ProTexting refused: opted out")])  # fmt: skip
    add("pending", _signup("12015550201", at=NOW - hour, state="pending", attempts=1, last_error="HTTP 503",
                           next_attempt_at=NOW - hour, lease_until=NOW - hour, leased_by="crashed"),
        [("pending", None), ("pending", "HTTP 503; retry in 2.0s")])  # fmt: skip
    return ids


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def _at_0001_with_rows(engine: AsyncEngine) -> tuple[dict[str, int], list[dict[str, Any]]]:
    """The ids of the rows written at 0001, and what an export of them showed."""
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "0001")
        ids = await conn.run_sync(_fill_0001)
    return ids, await _read_0001(engine)


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return {
        **{k: record[k] for k in ("id", "campaign", "phone", "group_ids", "page_url", "source", "client_ip")},
        **{k: record[k] for k in ("user_agent", "state", "attempts", "last_error", "upstream_messages")},
        "duplicate_of": record["duplicate_of"],
        "history": [(e["state"], e["detail"]) for e in record["history"]],
    }


async def test_signups_stored_by_the_first_schema_are_kept_and_the_pending_one_is_delivered(
    engine: AsyncEngine,
) -> None:
    ids, before = await _at_0001_with_rows(engine)

    await migrate(engine)

    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one() == SCHEMA_REVISION
    outbox = Outbox(engine, policy=RetryPolicy(), lease=timedelta(seconds=30))
    fake = FakeProTexting(token="t")
    signed = upstream.token_transport(token="t", transport=httpx.ASGITransport(fake.app()))
    protexting = upstream.ProTexting(signed, base_url="http://protexting.test/v1")
    pacer = Pacer("100/second")
    delivery = Delivery(outbox=outbox, protexting=protexting, pacer=pacer)
    try:
        # Every signup is there as it was: the record, its state, its history.
        assert [_comparable(r) async for r in outbox.export()] == before
        assert sorted(await outbox.counts()) == [
            ("JOIN", "delivered", 1), ("JOIN", "duplicate", 1), ("JOIN", "failed", 1),
            ("JOIN", "pending", 1), ("JOIN", "rejected", 1),
        ]  # fmt: skip

        # The pending one is due: the worker takes it, as an opt-in with its request,
        # and ProTexting gets it once. Nothing else is sent.
        await delivery.drain()
        assert [(call["PhoneNumber"], call["GroupIds"]) for call in fake.calls] == [("12015550201", [4])]
        row = await outbox.get(ids["pending"])
        assert row is not None and row["state"] == "delivered" and row["attempts"] == 2 and row["kind"] == Kind.OPT_IN
        assert [state for state, _ in await outbox.history(ids["pending"])] == ["pending", "pending", "delivered"]

        # The duplicate check still sees the delivered signup of before; a new signup
        # takes a new id, after the old ones.
        # NOW is the collection's time: a loaded run can reach this test many minutes
        # later, so the window reaches back to it.
        window = datetime.now(UTC) - NOW + timedelta(minutes=10)
        again = await outbox.add(_record("12015550202"), _optin("12015550202"), duplicate_window=window)
        assert again.state == State.DUPLICATE and again.earlier == State.DELIVERED
        fresh = await outbox.add(_record("12015550205"), _optin("12015550205"))
        assert fresh.id > max(ids.values()) and again.id > max(ids.values()) and fresh.id != again.id
        exported = [r async for r in outbox.export()]
        assert [r["id"] for r in exported] == [*sorted(ids.values()), again.id, fresh.id]
        assert exported[-1]["history"] == [{"at": fresh.created_at.isoformat(), "state": "pending", "detail": None}]
    finally:
        await delivery.stop()
        await outbox.close()
        await protexting.aclose()
        await pacer.close()


async def test_a_migrated_database_goes_back_to_the_first_schema_with_its_rows(engine: AsyncEngine) -> None:
    _, before = await _at_0001_with_rows(engine)
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "0001", down=True)
    assert await _read_0001(engine) == before
    # The first schema's code can write again: ids go on from the highest.
    async with engine.begin() as conn:
        new = (
            await conn.execute(
                insert(old_signups).returning(old_signups.c.id), _signup("12015550299", at=NOW, state="pending")
            )
        ).scalar_one()
    assert new > max(row["id"] for row in before)


async def _read_0001(engine: AsyncEngine) -> list[dict[str, Any]]:
    """The signups of a database at revision 0001, as an export would show them."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(old_signups).order_by(old_signups.c.id))).mappings().all()
        events = (await conn.execute(select(old_events).order_by(old_events.c.id))).mappings().all()
    return [
        {
            **{k: row[k] for k in ("id", "campaign", "phone", "group_ids", "page_url", "source", "client_ip")},
            **{k: row[k] for k in ("user_agent", "state", "attempts", "last_error", "upstream_messages")},
            "duplicate_of": row["duplicate_of"],
            "history": [(e["state"], e["detail"]) for e in events if e["signup_id"] == row["id"]],
        }
        for row in rows
    ]


async def test_signups_stored_before_languages_are_english_and_a_spanish_one_keeps_its_language(
    engine: AsyncEngine,
) -> None:
    # A database at the revision before languages, with its rows; then today's schema.
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, "0001")
        ids = await conn.run_sync(_fill_0001)
        await conn.run_sync(_alembic, BEFORE_LANGUAGES)
    await migrate(engine)

    outbox = Outbox(engine, policy=RetryPolicy(), lease=timedelta(seconds=30))
    try:
        spanish = await outbox.add(_record("12015550206", language="es"), _optin("12015550206"))
        exported = {r["id"]: r async for r in outbox.export()}
        assert {exported[i]["language"] for i in ids.values()} == {"en"}
        assert exported[spanish.id]["language"] == "es"
    finally:
        await outbox.close()

    # And back: the column goes, the rows stay.
    async with engine.begin() as conn:
        await conn.run_sync(_alembic, BEFORE_LANGUAGES, down=True)
        columns = await conn.run_sync(lambda c: [col["name"] for col in inspect(c).get_columns("signups")])
        count = (await conn.execute(text("SELECT count(*) FROM signups"))).scalar_one()
    assert "language" not in columns and count == len(ids) + 1


# The revision just before 0005 (languages).
BEFORE_LANGUAGES = "0004"


def _record(phone: str, language: str = "en") -> ConsentRecord:
    return ConsentRecord(
        created_at=datetime.now(UTC),
        campaign="JOIN",
        phone=phone,
        group_ids=(4,),
        disclosure_sha256=DISCLOSURE.sha256,
        page_url="https://signup.example/JOIN",
        source={},
        client_ip="198.51.100.4",
        user_agent="test",
        language=language,
    )


def _optin(phone: str) -> upstream.OptIn:
    return upstream.OptIn(phone=phone, group_ids=(4,))
