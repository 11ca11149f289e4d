"""The engine, and the migrations that shape its schema.

One code path for both databases: SQLite through aiosqlite for a single process (the
default), PostgreSQL through asyncpg for several replicas. Alembic owns the schema;
`migrate()` runs at start-up and from `optin migrate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

from .. import packaged


class StorageError(Exception):
    """The database cannot be opened or migrated."""


def _prepare_sqlite(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; FULL makes every commit durable
    # before the person sees "thanks"; the busy timeout queues writers instead of failing.
    # The driver must not open transactions itself: _sqlite_begin does (SQLAlchemy's
    # documented recipe for SQLite transactions).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A page cache of 1 MB a connection, not SQLite's 2 MB: a burst of 5,000 signups
    # filled the 2 MB of the writer's connection, and the process kept it (make bench's
    # RSS after the burst: 1.2 MB less). What a signup's writes read again (the indexes'
    # upper pages, the newest rows) fits; the rest comes back from the OS's page cache.
    # Alternated runs at 100 ms upstream found no more CPU a signup (1.19 ms against
    # 1.26, four pairs); with 500 KB they found about 8% more.
    cursor.execute("PRAGMA cache_size=-1000")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so a transaction that reads and then
    # writes never has to upgrade its lock (SQLite would fail that at once, busy
    # timeout or not), and the check-then-insert of a signup is serialised.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# How long PostgreSQL may take to accept a connection, to answer a statement, and how
# long a request waits for a free connection of the pool (OPTIN_DATABASE_TIMEOUT_SECONDS).
DATABASE_TIMEOUT_SECONDS = 3.0


def create_engine(url: str, *, timeout: float = DATABASE_TIMEOUT_SECONDS) -> AsyncEngine:
    """An async engine for `url` (sqlite+aiosqlite:// or postgresql+asyncpg://).

    On PostgreSQL, `timeout` bounds each wait on the server: a server that accepts
    connections and never answers fails a signup with TimeoutError (an OSError, the
    plain 503) after about twice `timeout` (the pool's check of an idle connection,
    then a new connection), instead of holding it for as long as TCP lasts. SQLite
    keeps its busy timeout: there the wait is for this machine's one writer, which
    finishes."""
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        _prepare_sqlite(url)
        engine = create_async_engine(url, connect_args={"timeout": 10})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_async_engine(
            url,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            pool_timeout=timeout,
            connect_args={"timeout": timeout, "command_timeout": timeout},
        )
    raise StorageError(f"unsupported database {backend!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://")


def unreachable(exc: BaseException) -> bool:
    """True when `exc` says the database is not there (no answer in time, no free
    connection, a dropped connection) rather than that it refused one write."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    return isinstance(exc, (OSError, PoolTimeout))


def thread_engine_for(engine: AsyncEngine) -> Engine | None:
    """For a SQLite file, a synchronous engine on the same database, or None.

    aiosqlite makes one trip to its thread (and back to the event loop) per driver
    call, about twenty for a transaction; with this engine a whole transaction runs
    in one trip to a worker thread (app.storage.writer writes every transaction so)."""
    url = engine.url
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    sync = create_sync_engine(url.set(drivername="sqlite"), connect_args={"timeout": 10})
    event.listen(sync, "connect", _sqlite_pragmas)
    event.listen(sync, "begin", _sqlite_begin)
    return sync


def _alembic_config(connection: Connection | None = None) -> AlembicConfig:
    # Imported here: Alembic is loaded only when the schema is behind (README, Performance).
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(packaged("migrations")))
    config.attributes["connection"] = connection
    return config


# An arbitrary constant: replicas starting together take turns migrating.
_MIGRATION_LOCK = 7_305_123


def _upgrade(connection: Connection) -> None:
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    command.upgrade(_alembic_config(connection), "head")


# The newest migration in app/migrations/versions (a test checks it is Alembic's head).
SCHEMA_REVISION = "0005"


def _at_head(connection: Connection) -> bool:
    if not inspect(connection).has_table("alembic_version"):
        return False
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [SCHEMA_REVISION]


async def schema_is_current(engine: AsyncEngine) -> bool:
    """Whether the database's schema is this release's (`SCHEMA_REVISION`, Alembic's
    head), read without loading Alembic; raises what the database raises when it
    cannot be asked (readiness, app.web.health, and `migrate` both ask it)."""
    async with engine.connect() as connection:
        return await connection.run_sync(_at_head)


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration (safe to run from several replicas)."""
    try:
        # A replica restarting on an up-to-date database does not import Alembic at
        # all: it would hold several MB for the life of the process (make bench).
        if await schema_is_current(engine):
            return
        await _upgrade_with(engine)
    except (TimeoutError, OSError) as exc:
        raise StorageError(f"cannot reach the database: {type(exc).__name__}: {exc}") from None


async def _upgrade_with(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
        return
    # A migration may rightly take longer than the engine's statement timeout (an index
    # on a large table, or the lock while another replica migrates): run it on a
    # connection of its own without one. The server answered a moment ago.
    untimed = create_async_engine(engine.url, poolclass=NullPool)
    try:
        async with untimed.begin() as connection:
            await connection.run_sync(_upgrade)
    finally:
        await untimed.dispose()
