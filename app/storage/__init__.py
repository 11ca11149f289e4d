"""Storage: the engine and its migrations, the tables, the writer that owns every write,
the outbox's statements and the operator's reports.

    engine.py    create_engine(), the SQLite writer thread's engine, migrate()
    tables.py    disclosures, jobs, job_events, signups
    writer.py    the group commit; on SQLite one thread owns every write
    queries.py   the outbox's writes and its duplicate check, one transaction each
    reports.py   export, history, counts
    outbox.py    Outbox: the above, for app.delivery and the CLI
"""

from .engine import (
    DATABASE_TIMEOUT_SECONDS,
    SCHEMA_REVISION,
    StorageError,
    create_engine,
    migrate,
    schema_is_current,
    thread_engine_for,
    unreachable,
)
from .outbox import Outbox
from .tables import UTCDateTime, disclosures, job_events, jobs, metadata, signups, utcnow

__all__ = [
    "DATABASE_TIMEOUT_SECONDS",
    "SCHEMA_REVISION",
    "Outbox",
    "StorageError",
    "UTCDateTime",
    "create_engine",
    "disclosures",
    "job_events",
    "jobs",
    "metadata",
    "migrate",
    "schema_is_current",
    "signups",
    "thread_engine_for",
    "unreachable",
    "utcnow",
]
