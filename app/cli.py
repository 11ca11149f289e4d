"""`optin`: the operator's command line. Settings come from the environment, as for the app.

    optin serve [--host H] [--port P] [--workers N]
                                        serve the pages (uvicorn, proxy headers off)
    optin migrate                       bring the database schema up to date
    optin worker [--once]               deliver pending signups (a process of its own)
    optin status                        signups by campaign and delivery state
    optin retry-failed [--campaign K]   queue failed signups again
    optin export [--format csv|jsonl] [--since D] [--until D] [--campaign K] [--output F]
                                        consent records, for proof of consent
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime, time
from typing import IO, Any

from .campaigns import CampaignsError
from .outbox import EXPORT_FIELDS, Outbox
from .settings import Settings, SettingsError, load_settings
from .storage import StorageError, create_engine, migrate


@asynccontextmanager
async def _outbox(settings: Settings) -> AsyncIterator[Outbox]:
    from .main import outbox_for

    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        yield outbox_for(engine, settings)
    finally:
        await engine.dispose()


async def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    print("database is up to date")
    return 0


async def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from .main import delivery_for, upstream_client
    from .pacing import Pacer

    async with AsyncExitStack() as stack:
        outbox = await stack.enter_async_context(_outbox(settings))
        pacer = Pacer(settings.rate_limit, redis_url=settings.redis_url, namespace=settings.redis_prefix)
        stack.push_async_callback(pacer.close)
        protexting = upstream_client(settings, None)
        stack.push_async_callback(protexting.aclose)
        delivery = delivery_for(settings, outbox=outbox, protexting=protexting, pacer=pacer)
        if args.once:
            await delivery.drain()
            return 0
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        delivery.start()
        print(f"delivery worker {delivery.worker_id} running; Ctrl-C to stop", file=sys.stderr)
        await stopping.wait()
        await delivery.stop()
    return 0


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    async with _outbox(settings) as outbox:
        counts = await outbox.counts()
    if not counts:
        print("no signups yet")
        return 0
    width = max(len("campaign"), *(len(c) for c, _, _ in counts))
    print(f"{'campaign':<{width}}  {'state':<10} {'count':>8}")
    for campaign, state, count in counts:
        print(f"{campaign:<{width}}  {state:<10} {count:>8}")
    return 0


async def _retry_failed(settings: Settings, args: argparse.Namespace) -> int:
    async with _outbox(settings) as outbox:
        count = await outbox.retry_failed(campaign=args.campaign)
    print(f"{count} failed signup(s) queued again")
    return 0


def _day(text: str) -> datetime:
    """A date (midnight UTC) or a full ISO timestamp (UTC when it has no offset)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or ISO timestamp") from None
    if len(text) == 10:
        moment = datetime.combine(date.fromisoformat(text), time(), UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def _export(settings: Settings, args: argparse.Namespace) -> int:
    out: IO[str] = open(args.output, "w", newline="", encoding="utf-8") if args.output else sys.stdout
    count = 0
    try:
        async with _outbox(settings) as outbox:
            writer = None
            if args.format == "csv":
                # The header even for an empty range, so a spreadsheet still opens it.
                writer = csv.DictWriter(out, fieldnames=[*EXPORT_FIELDS, "history"])
                writer.writeheader()
            async for record in outbox.export(since=args.since, until=args.until, campaign=args.campaign):
                record = {key: _plain(value) for key, value in record.items()}
                if writer is None:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                else:
                    writer.writerow(
                        {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in record.items()}
                    )
                count += 1
    finally:
        if args.output:
            out.close()
    print(f"exported {count} consent record(s)", file=sys.stderr)
    return 0


# h11 answers 400 to a request head still incomplete past this many bytes (its own
# default, said out loud); httptools has no such bound (README, "Serving").
_MAX_HEAD_BYTES = 16 * 1024
# An idle keep-alive connection is closed after this many seconds (uvicorn's default).
_KEEP_ALIVE_SECONDS = 5


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    # proxy_headers=False: uvicorn would otherwise believe X-Forwarded-For from
    # 127.0.0.1 and hand the app a client address of the client's choosing. The app
    # alone reads that header, from OPTIN_TRUSTED_PROXIES (app.consent.client_ip).
    uvicorn.run(
        "app.main:app",
        host=args.host or settings.host,
        port=settings.port if args.port is None else args.port,
        workers=args.workers or settings.workers,
        http=args.http,
        proxy_headers=False,
        log_level=settings.log_level.lower(),
        log_config=args.log_config or uvicorn.config.LOGGING_CONFIG,
        h11_max_incomplete_event_size=_MAX_HEAD_BYTES,
        timeout_keep_alive=_KEEP_ALIVE_SECONDS,
        limit_concurrency=args.limit_concurrency,
    )
    return 0


Command = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optin", description="Operate an optin-pages deployment.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the pages and the API")
    serve.add_argument("--host", help="address to listen on (default: OPTIN_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: OPTIN_PORT, 8000)")
    serve.add_argument("--workers", type=_positive, help="web processes (default: OPTIN_WORKERS, 1)")
    serve.add_argument(
        "--http", choices=("auto", "httptools", "h11"), default="auto",
        help="uvicorn's HTTP parser: httptools is faster, h11 bounds the request head",
    )  # fmt: skip
    serve.add_argument("--limit-concurrency", type=_positive, help="answer 503 beyond this many connections and requests")
    serve.add_argument("--log-config", help="a logging configuration file for uvicorn (JSON, YAML or INI)")
    serve.set_defaults(run=_serve)

    commands.add_parser("migrate", help="bring the database schema up to date").set_defaults(run=_migrate)

    worker = commands.add_parser("worker", help="deliver pending signups until stopped")
    worker.add_argument("--once", action="store_true", help="deliver what is due now, then exit")
    worker.set_defaults(run=_worker)

    commands.add_parser("status", help="signups by campaign and delivery state").set_defaults(run=_status)

    retry = commands.add_parser("retry-failed", help="queue failed signups again")
    retry.add_argument("--campaign", help="only this campaign's keyword")
    retry.set_defaults(run=_retry_failed)

    export = commands.add_parser("export", help="export consent records")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export.add_argument("--since", type=_day, help="from this date or time (UTC), inclusive")
    export.add_argument("--until", type=_day, help="up to this date or time (UTC), exclusive")
    export.add_argument("--campaign", help="only this campaign's keyword")
    export.add_argument("--output", "-o", help="write to this file instead of standard output")
    export.set_defaults(run=_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
        if args.run is _serve:
            return _serve(settings, args)
        run: Command = args.run
        return asyncio.run(run(settings, args))
    except (SettingsError, CampaignsError, StorageError) as exc:
        print(f"optin: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `optin export | head`: the reader left; that is not an error. Point stdout
        # at devnull so the interpreter's final flush does not complain either.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
