"""The tables (Alembic's migrations in app/migrations/ shape them to this).

disclosures   every disclosure text ever shown, keyed by its SHA-256
jobs          the outbox: one row per call to make to ProTexting, of a kind
              (app.outbox.Kind) with its payload, and where its delivery stands;
              committed before ProTexting is called
job_events    the delivery history of each job
signups       one row per valid submission: the consent record, whose id is the
              id of its opt-in job (a record of another kind gets a table of its
              own the same way)
opt_outs      one row per web opt-out: the revocation's record, whose id is the
              id of its opt-out job; the words its page showed are in disclosures
funnel_counts the console's funnel: views and submissions by campaign, src, hour
              and metric, added into by every replica (app.storage.console)
audit_log     every action taken in the console, with its time and address
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which has no time zones) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return _sqlite_datetime() if dialect.name == "sqlite" else super().load_dialect_impl(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite compares timestamps as text: keep one format, without an offset,
            # the one SQLAlchemy's SQLite DATETIME writes ("2026-12-01 09:30:00.000000"),
            # made here in one C call rather than by its per-field formatting: every
            # signup binds about ten timestamps.
            return value.replace(tzinfo=None).isoformat(" ", "microseconds")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Id = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

disclosures = Table(
    "disclosures",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("text", Text, nullable=False),
    Column("first_shown_at", UTCDateTime, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    # Due jobs are taken lowest first (app.outbox.Kind.priority).
    Column("priority", SmallInteger, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Whom and what the call is for: the duplicate check and the reports go by these.
    Column("phone", String(20), nullable=False),
    Column("campaign", String(64), nullable=True),
    # What to send (app.outbox.encode) and where delivery stands.
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("leased_by", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("upstream_messages", JSON, nullable=True),
    Column("duplicate_of", Id, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)
Index("ix_jobs_due", jobs.c.state, jobs.c.priority, jobs.c.next_attempt_at)
Index("ix_jobs_number", jobs.c.phone, jobs.c.kind, jobs.c.created_at)

job_events = Table(
    "job_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("job_id", Id, ForeignKey("jobs.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("detail", Text, nullable=True),
)

signups = Table(
    "signups",
    metadata,
    # The id of the signup's opt-in job.
    Column("id", Id, ForeignKey("jobs.id"), primary_key=True, autoincrement=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The consent record: who agreed, to what, where, from which device.
    Column("campaign", String(64), nullable=False),
    Column("phone", String(20), nullable=False),
    Column("group_ids", JSON, nullable=False),
    Column("disclosure_sha256", String(64), ForeignKey("disclosures.sha256"), nullable=False),
    Column("page_url", Text, nullable=False),
    Column("source", JSON, nullable=False),
    Column("client_ip", String(45), nullable=True),
    Column("user_agent", Text, nullable=True),
    # The language of the page and its disclosure (app.i18n); the CTA and confirm texts
    # sent were in it too.
    Column("language", String(8), nullable=False, server_default="en"),
)
Index("ix_signups_created", signups.c.created_at)

opt_outs = Table(
    "opt_outs",
    metadata,
    # The id of the opt-out's job.
    Column("id", Id, ForeignKey("jobs.id"), primary_key=True, autoincrement=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Who asked to stop (a keyed hash once forgotten: app.consent.forgotten), where and how.
    Column("phone", String(20), nullable=False),
    Column("campaign", String(64), nullable=True),
    Column("page_url", Text, nullable=False),
    Column("language", String(16), nullable=False),
    # What the page told them, kept as a disclosure is.
    Column("notice_sha256", String(64), ForeignKey("disclosures.sha256"), nullable=False),
    Column("client_ip", String(45), nullable=True),
    Column("user_agent", Text, nullable=True),
)
Index("ix_opt_outs_phone", opt_outs.c.phone)
Index("ix_opt_outs_created", opt_outs.c.created_at)
funnel_counts = Table(
    "funnel_counts",
    metadata,
    # The campaign's key (app.site.Listing.key), as the tally counts it.
    Column("campaign", String(64), primary_key=True),
    Column("src", String(200), primary_key=True),
    Column("hour", UTCDateTime, primary_key=True),
    # "views", or a submission's outcome (app.metrics.Outcome).
    Column("metric", String(32), primary_key=True),
    Column("count", BigInteger, nullable=False),
)
Index("ix_funnel_counts_hour", funnel_counts.c.hour)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String(32), nullable=False),
    Column("address", String(45), nullable=True),
    Column("detail", Text, nullable=True),
)


@functools.cache
def _sqlite_datetime() -> TypeEngine[Any]:
    # Imported here: a PostgreSQL deployment need not load the SQLite dialect.
    from sqlalchemy.dialects.sqlite import DATETIME

    class FormattedDATETIME(DATETIME):
        """SQLite's DATETIME, the same column and the same text, for values that
        UTCDateTime has already written as that text; read back as DATETIME reads."""

        def bind_processor(self, dialect: Dialect) -> None:
            return None

        def literal_processor(self, dialect: Dialect) -> Callable[[str], str]:
            # A literal in SQL text (an offline migration, a printed statement).
            return lambda text: f"'{text}'"

    return FormattedDATETIME()  # type: ignore[no-untyped-call]  # DATETIME.__init__ has no annotations


def utcnow() -> datetime:
    return datetime.now(UTC)
