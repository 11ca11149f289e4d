"""`optin`: the operator's command line. Settings come from the environment, as for the app.

optin serve [--host H] [--port P] [--workers N]
                                    serve the pages (uvicorn, proxy headers off)
optin migrate                       bring the database schema up to date
optin worker [--once]               deliver pending signups (a process of its own)
optin status                        signups by campaign and delivery state
optin retry-failed [--held] [--campaign K]
                                    queue failed (or held) signups again
optin export [--format csv|jsonl] [--since D] [--until D] [--campaign K] [--kind K] [--output F]
                                    consent records and opt-outs, for proof of consent
optin proof NUMBER [--format json|html] [--output F]
                                    every record of one number, for a lawyer
optin purge [--yes]                 delete records past OPTIN_RETENTION_DAYS (a dry run without --yes)
optin forget NUMBER                 erase one person's number, address and device
optin backup PATH                   copy the SQLite database, safely while it is in use
optin hash-password                 the OPTIN_ADMIN_PASSWORD_HASH of a password typed twice
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import sqlite3
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from .campaigns import CampaignsError
from .exports import FORMATS, export_text, moment_of
from .outbox import Kind, State
from .services import open_outbox, open_services
from .settings import Settings, SettingsError, load_settings
from .storage import Outbox, StorageError, create_engine, migrate

logger = logging.getLogger("app.cli")


class CommandError(Exception):
    """An expected failure of a command: `main` prints it on one line and exits 2."""


def _sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite database (also a `file:` URI's); None for any other database."""
    url = make_url(database_url)
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        database = urlsplit(database).path
    return Path(database).expanduser().resolve()


@asynccontextmanager
async def _outbox(settings: Settings, *, existing: bool = False) -> AsyncIterator[Outbox]:
    """The outbox on the configured database. `existing`: a command that only reads or
    revises signups refuses a SQLite file that is not there, rather than create an
    empty one and report nothing (a typo in OPTIN_DATABASE_URL is not "no signups")."""
    database = _sqlite_file(settings.database_url)
    if existing and database is not None and not database.exists():
        raise CommandError(f"no database at {database} (OPTIN_DATABASE_URL); `optin migrate` creates one")
    async with open_outbox(settings) as outbox:
        yield outbox


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url, timeout=settings.database_timeout_seconds)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    print("database is up to date")
    return 0


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from .logs import configure_logging

    # What it delivers, and what it cannot, is told in app.* lines, as by the service.
    configure_logging(settings.log_level, settings.log_format)
    async with open_services(settings) as services:
        delivery = services.delivery
        if args.once:
            await delivery.drain()
            return 0
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        delivery.start()
        running = f"delivery worker {delivery.worker_id} running; Ctrl-C to stop"
        if settings.log_format == "json":
            # Every line a JSON object, this one too.
            logging.getLogger("app.cli").info(running)
        else:
            print(running, file=sys.stderr)
        await stopping.wait()
        await delivery.stop()
    return 0


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    async with _outbox(settings, existing=True) as outbox:
        counts = await outbox.counts()
    if not counts:
        print("no signups yet")
        return 0
    width = max(len("campaign"), *(len(c) for c, _, _ in counts))
    print(f"{'campaign':<{width}}  {'state':<10} {'count':>8}")
    for campaign, state, count in counts:
        print(f"{campaign:<{width}}  {state:<10} {count:>8}")
    held = sum(count for _, state, count in counts if state == State.HELD)
    if held:
        # Beside the table, not in it: scripts read the table.
        print(
            f"{held} signup(s) held: ProTexting refused them for the set-up (the log's ERROR lines say why); "
            "fix it, then run `optin retry-failed --held`",
            file=sys.stderr,
        )
    return 0


async def _retry_failed(settings: Settings, args: argparse.Namespace) -> int:
    async with _outbox(settings, existing=True) as outbox:
        count = await outbox.retry_failed(campaign=args.campaign, held=args.held)
    print(f"{count} {'held' if args.held else 'failed'} signup(s) queued again")
    return 0


def _day(text: str) -> datetime:
    try:
        return moment_of(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


async def _write_export(settings: Settings, args: argparse.Namespace, out: IO[str]) -> int:
    count = 0
    async with _outbox(settings, existing=True) as outbox:
        kind = Kind(args.kind) if args.kind else None
        records = outbox.export(since=args.since, until=args.until, campaign=args.campaign, kind=kind)
        async for text in export_text(records, args.format):
            out.write(text)
            count += 1
    # The CSV header is a piece of its own.
    return count - 1 if args.format == "csv" else count


def _check_output(settings: Settings, output: Path, *, named: str = "--output ") -> None:
    database = _sqlite_file(settings.database_url)
    if database is not None:
        own = {database, *(database.with_name(database.name + end) for end in ("-wal", "-shm", "-journal"))}
        if output.resolve() in own or (output.exists() and database.exists() and output.samefile(database)):
            raise CommandError(f"{named}{output} is the database itself; choose another file")
    if output.is_dir():
        raise CommandError(f"cannot write {output}: it is a directory")


def _partial_beside(output: Path) -> Path:
    """A new, empty file beside `output`, readable by its owner only, to be renamed over
    it once complete (as `export --output` does): a failure on the way leaves the old
    file as it was."""
    try:
        handle, name = tempfile.mkstemp(dir=output.resolve().parent, prefix=f".{output.name}.", suffix=".partial")
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
    os.close(handle)
    return Path(name)


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    if not args.output:
        count = await _write_export(settings, args, sys.stdout)
    else:
        output = Path(args.output)
        _check_output(settings, output)
        # Written beside the file and renamed over it once complete: a failure on the
        # way leaves the old file as it was and no partial one behind.
        try:
            partial = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below)
                "w", dir=output.resolve().parent, prefix=f".{output.name}.", suffix=".partial",
                delete=False, newline="", encoding="utf-8",
            )  # fmt: skip
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
        try:
            with partial:
                count = await _write_export(settings, args, partial)
            os.replace(partial.name, output)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
        finally:
            Path(partial.name).unlink(missing_ok=True)
    print(f"exported {count} consent record(s)", file=sys.stderr)
    return 0


def _number(text: str) -> str:
    """A number as the records keep it: digits only, country code first."""
    from .consent import digits_of

    digits = digits_of(text)
    if digits is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a phone number with its country code (e.g. 12015550123)")
    return digits


async def _proof(settings: Settings, args: argparse.Namespace) -> int:
    from .consent import stored_as

    async with _outbox(settings, existing=True) as outbox:
        secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else None
        records = await outbox.proof(stored_as(args.number, secret))
    if not records:
        raise CommandError("no record of this number")
    made = datetime.now(UTC)
    if args.format == "json":
        document = {
            "number": args.number,
            "generated_at": made.isoformat(),
            "records": records,
        }
        text = json.dumps(document, ensure_ascii=False, indent=2, default=datetime.isoformat) + "\n"
    else:
        from .main import make_templates

        template = make_templates().get_template("proof.html")
        text = template.render(number=args.number, generated_at=made, records=records)
    if args.output:
        output = Path(args.output)
        _check_output(settings, output)
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
    print(f"{len(records)} record(s) of this number", file=sys.stderr)
    return 0


def _shown_disclosures(settings: Settings) -> set[str] | None:
    """The hashes of the disclosures the campaigns file makes its pages show, which a
    purge must keep; None (keep every text) when the file cannot be read."""
    from .campaigns import load_campaigns
    from .main import make_templates
    from .web.pages import RESERVED_PATHS, disclosures

    try:
        campaigns = load_campaigns(settings.campaigns_path, reserved=RESERVED_PATHS)
    except (CampaignsError, OSError) as exc:
        logger.warning("campaigns file not read (%s): every disclosure text is kept", exc)
        return None
    # Each language's, rendered as the pages render them.
    templates = make_templates()
    return {shown.sha256 for c in campaigns.values() for _, shown, _ in disclosures(templates, c)}


async def _purge(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from .logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    before = datetime.now(UTC) - timedelta(days=settings.retention_days)
    async with _outbox(settings, existing=True) as outbox:
        done = await outbox.purge(before=before, keep_texts=_shown_disclosures(settings), apply=args.yes)
    counts = (
        f"{done.signups} signup(s), {done.opt_outs} opt-out(s), {done.jobs} job(s), {done.events} history line(s) "
        f"and {done.disclosures} disclosure text(s) from before {before.date().isoformat()} "
        f"(OPTIN_RETENTION_DAYS={settings.retention_days})"
    )
    if args.yes:
        logger.info("purge deleted %s", counts)
    else:
        logger.info("purge dry run: would delete %s; run with --yes to delete them", counts)
    return 0


async def _forget(settings: Settings, args: argparse.Namespace) -> int:
    from .consent import forgotten
    from .logs import configure_logging
    from .storage.retention import CannotForget

    configure_logging(settings.log_level, settings.log_format)
    if settings.secret_key is None:
        raise CommandError(
            "set OPTIN_SECRET_KEY (the service's own): the number is kept as a hash keyed by it, "
            "so that `optin proof` can still find its records"
        )
    hashed = forgotten(args.number, settings.secret_key.get_secret_value())
    async with _outbox(settings, existing=True) as outbox:
        try:
            done = await outbox.forget(args.number, hashed=hashed)
        except CannotForget as exc:
            raise CommandError(f"not forgotten: {exc}") from None
    # The number itself is never logged: a log kept elsewhere would undo the erasure.
    logger.info(
        "forgot %s: %s signup(s), %s opt-out(s) and %s job(s) now keep only the hash; address and device erased",
        done.hashed,
        done.signups,
        done.opt_outs,
        done.jobs,
    )
    return 0


def _copy_sqlite(database: Path, partial: Path) -> None:
    """`database` into the empty file `partial`, by SQLite's online backup API.

    The copy is made in one step, one read transaction on the live database: in WAL
    mode the service's writer goes on meanwhile, and the copy is the database as it
    stood at one commit. It is then made a file on its own (rollback journal, no -wal
    beside it; the service puts it back in WAL mode when it opens it), checked, and
    flushed to disk."""
    try:
        # mode=rw: never create a database that is not there.
        source = sqlite3.connect(f"{database.as_uri()}?mode=rw", uri=True, timeout=10)
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)
                copy.execute("PRAGMA journal_mode=DELETE")
                (verdict,) = copy.execute("PRAGMA quick_check").fetchone()
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise CommandError(f"cannot back up {database}: {exc}") from None
    if verdict != "ok":
        raise CommandError(f"the copy of {database} does not check out ({verdict}); nothing was written")
    with open(partial, "rb+") as written:
        os.fsync(written.fileno())


async def _backup(settings: Settings, args: argparse.Namespace) -> int:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite":
        raise CommandError(
            "optin backup copies a SQLite database; OPTIN_DATABASE_URL is PostgreSQL: "
            "back it up with pg_dump (for example pg_dump --format=custom --file=optin.dump)"
        )
    database = _sqlite_file(settings.database_url)
    if database is None:
        raise CommandError("OPTIN_DATABASE_URL is an in-memory database: there is nothing to back up")
    if not database.exists():
        raise CommandError(f"no database at {database} (OPTIN_DATABASE_URL)")
    output = Path(args.path)
    _check_output(settings, output, named="")
    partial = _partial_beside(output)
    try:
        await asyncio.to_thread(_copy_sqlite, database, partial)
        os.replace(partial, output)
        # The rename itself survives a power cut once its directory is on disk too.
        directory = os.open(output.resolve().parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    print(f"backed up {database} to {output}")
    return 0


def hash_password(ask: Callable[[str], str] | None = None) -> int:
    """Read a password twice without echo and print its argon2id hash (argon2-cffi's
    defaults): the value of OPTIN_ADMIN_PASSWORD_HASH, which turns the console on."""
    import getpass

    from argon2 import PasswordHasher

    ask = ask or getpass.getpass
    try:
        password = ask("Console password: ")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise CommandError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
        again = ask("Again: ")
    except (EOFError, KeyboardInterrupt):
        raise CommandError("no password read; nothing was made") from None
    if again != password:
        raise CommandError("the two passwords differ; nothing was made")
    print(PasswordHasher().hash(password))
    return 0


MIN_PASSWORD_LENGTH = 12


# h11 answers 400 to a request head still incomplete past this many bytes (its own
# default, said out loud); httptools has no such bound (README, "Serving").
_MAX_HEAD_BYTES = 16 * 1024
# An idle keep-alive connection is closed after this many seconds (uvicorn's default).
_KEEP_ALIVE_SECONDS = 5


def _uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's own lines: its default configuration, or the same loggers and streams
    with JSON lines (OPTIN_LOG_FORMAT=json; app.logs)."""
    import uvicorn.config

    from .logs import uvicorn_json_config

    return uvicorn_json_config() if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    # SIGTERM is how a container, systemd or a supervisor stops the service: a stop
    # asked for and carried out is success (exit 0), as for `optin worker`. uvicorn
    # shuts down gracefully on it, then puts back the handler it found and raises the
    # signal again, which would end the process killed by it (-15, or 143 under an
    # init); it finds this one, which exits 0. Before uvicorn's own is in place,
    # SIGTERM exits at once, as it did.
    signal.signal(signal.SIGTERM, _stopped)
    workers = args.workers or settings.workers
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    # The app reads its settings again in each worker: where it listens, as given here,
    # is what OPTIN_PUBLIC_URL defaults to (app.settings).
    os.environ["OPTIN_HOST"], os.environ["OPTIN_PORT"] = host, str(port)
    if workers > 1 and settings.metrics_token is not None:
        _share_metrics()
    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from
    # 127.0.0.1 and hand the app a client address of the client's choosing. The app
    # alone reads that header, from OPTIN_TRUSTED_PROXIES (app.consent.client_ip).
    uvicorn.run(
        "app.main:app",
        host=host,
        port=port,
        workers=workers,
        http=args.http,
        proxy_headers=False,
        log_level=settings.log_level.lower(),
        log_config=args.log_config or _uvicorn_log_config(settings),
        h11_max_incomplete_event_size=_MAX_HEAD_BYTES,
        timeout_keep_alive=_KEEP_ALIVE_SECONDS,
        limit_concurrency=args.limit_concurrency,
    )
    return 0


def _share_metrics(environ: MutableMapping[str, str] = os.environ) -> None:
    """Several workers: each counts in its own process, so they share their counts
    through prometheus-client's multiprocess mode (`app.metrics`), in a directory that
    must start empty. A fresh one, unless PROMETHEUS_MULTIPROC_DIR names one: then
    what an earlier run left there is cleared. Set before the workers start, so each
    finds it when it imports prometheus-client."""
    from .metrics import MULTIPROC_DIR

    given = environ.get(MULTIPROC_DIR)
    if not given:
        environ[MULTIPROC_DIR] = tempfile.mkdtemp(prefix="optin-metrics-")
        return
    for stale in Path(given).glob("*.db"):
        stale.unlink()


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line, like every other failure of `optin`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="optin", description="Operate an optin-pages deployment.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the pages and the API")
    serve.add_argument("--host", help="address to listen on (default: OPTIN_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: OPTIN_PORT, 8000)")
    serve.add_argument("--workers", type=_positive, help="web processes (default: OPTIN_WORKERS, 1)")
    serve.add_argument(
        "--http", choices=("auto", "httptools", "h11"), default="auto",
        help="uvicorn's HTTP parser: httptools is faster, h11 bounds the request head",
    )  # fmt: skip
    serve.add_argument(
        "--limit-concurrency", type=_positive, help="answer 503 beyond this many connections and requests"
    )
    serve.add_argument("--log-config", help="a logging configuration file for uvicorn (JSON, YAML or INI)")
    serve.set_defaults(run=_serve)

    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=_migrate)

    worker = commands.add_parser("worker", help="deliver pending signups until stopped")
    worker.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    worker.set_defaults(run=_worker)

    commands.add_parser("status", help="signups by campaign and delivery state").set_defaults(run=_status)

    retry = commands.add_parser("retry-failed", help="queue failed signups again")
    retry.add_argument(
        "--held", action="store_true",
        help="queue the held signups instead: those ProTexting refused for the set-up, once it is fixed",
    )  # fmt: skip
    retry.add_argument("--campaign", help="only this campaign's keyword")
    retry.set_defaults(run=_retry_failed)

    export = commands.add_parser("export", help="export consent records")
    export.add_argument("--format", choices=FORMATS, default="csv")
    export.add_argument("--since", type=_day, help="from this date or time (UTC), inclusive")
    export.add_argument("--until", type=_day, help="up to this date or time (UTC), exclusive")
    export.add_argument("--campaign", help="only this campaign's keyword")
    export.add_argument("--kind", choices=[kind.value for kind in Kind], help="only signups, or only opt-outs")
    export.add_argument("--output", "-o", help="write to this file instead of standard output")
    export.set_defaults(run=_export)

    proof = commands.add_parser("proof", help="every record of one number: its consents and opt-outs")
    proof.add_argument("number", type=_number, metavar="NUMBER", help="with its country code, e.g. 12015550123")
    proof.add_argument("--format", choices=("json", "html"), default="json", help="html: a document to print")
    proof.add_argument("--output", "-o", help="write to this file instead of standard output")
    proof.set_defaults(run=_proof)

    purge = commands.add_parser("purge", help="delete records older than OPTIN_RETENTION_DAYS (a dry run)")
    purge.add_argument("--yes", action="store_true", help="delete them: without it, only count")
    purge.set_defaults(run=_purge)

    forget = commands.add_parser("forget", help="erase one person's number, address and device")
    forget.add_argument("number", type=_number, metavar="NUMBER", help="with its country code, e.g. 12015550123")
    forget.set_defaults(run=_forget)

    backup = commands.add_parser(
        "backup", help="copy the SQLite database to PATH, safely while the service runs (PostgreSQL: pg_dump)"
    )
    backup.add_argument("path", metavar="PATH", help="the copy; written beside itself, then renamed over PATH")
    backup.set_defaults(run=_backup)

    commands.add_parser(
        "hash-password", help="print OPTIN_ADMIN_PASSWORD_HASH for a password typed twice (turns /admin on)"
    ).set_defaults(run=None)
    return parser


def _refusal(exc: DBAPIError, database_url: str) -> str:
    """One line for a database that answered but refused (no such database or role, a
    read-only file), naming the database without its password."""
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    reason = re.sub(r"^<class '[\w.]+'>: ", "", reason)  # asyncpg's errors, as SQLAlchemy wraps them
    database = _sqlite_file(database_url)
    shown = str(database) if database is not None else make_url(database_url).render_as_string(hide_password=True)
    return f"the database refused: {reason} ({shown})"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings: Settings | None = None
    try:
        if args.run is None:
            # hash-password reads no settings: it makes the first console setting.
            return hash_password()
        settings = load_settings()
        if args.run is _serve:
            # uvicorn runs its own event loop: not inside asyncio.run.
            served: int = _serve(settings, args)
            return served
        run: Command = args.run
        return asyncio.run(run(settings, args))
    except (SettingsError, CampaignsError, StorageError, CommandError) as exc:
        print(f"optin: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        assert settings is not None
        print(f"optin: {_refusal(exc, settings.database_url)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `optin export | head`: the reader left; that is not an error. Point stdout
        # at devnull so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        # The machine refused (a SQLite directory that cannot be made, a full disk).
        print(f"optin: {exc.filename}: {exc.strerror}" if exc.filename else f"optin: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
