#!/usr/bin/env python3
"""`make bench`: the benchmark suite of optin-pages. Not a test: it measures, prints a
table and writes bench/results.json.

Run it with the venv's Python from the checkout (`make bench` installs wrk and
chromium first):

    .venv/bin/python bench/run.py                    # everything, a few minutes on 2 cores
    .venv/bin/python bench/run.py --quick            # short runs, under a minute or two
    .venv/bin/python bench/run.py --only pageview    # one section (comma-separated list)
    .venv/bin/python bench/run.py --only embedview   # the embed's page view
    make bench BENCH_ARGS="--only signup --duration 5"

Sections (every figure is measured side by side in the same run, because these
machines are noisy: medians and ratios are what to quote):

  pageview    GET /join with wrk at fixed concurrency, against a bare Starlette app
              (bench/baseline.py) serving the exact captured bytes under the same
              uvicorn settings; the pair alternates for --rounds rounds (ABBA order),
              and the median of the per-round throughput ratios is reported.
  embedview   the same for the embed, GET /embed/join (the frame a shop's page
              loads), against the baseline serving its captured bytes at that path.
  signup      POST /join (a distinct valid number each time) against the fake
              ProTexting running as a real server, with 0 ms and 100 ms upstream
              latency, on SQLite and on PostgreSQL. The fake's own latency is also
              measured with wrk directly at the same concurrency. Service-added
              latency = app percentile - upstream latency (both the configured one
              and the measured one are reported). A short concurrency-1 run gives the
              service time without queueing. Budget: the app's CPU per signup on
              SQLite in one process <= 0.8 ms.
  openloop    POST /join offered at a fixed --openloop-rate (200/s) for
              --openloop-duration seconds by an asyncio open-loop generator (sends on
              a schedule, whether or not earlier answers came, each timed from its
              scheduled send), on SQLite with each upstream latency, beside the same
              schedule against the fake alone: service-added p50/p99 = app - fake.
  burst       --burst N signups (default 5,000) from an asyncio load generator
              (--burst-concurrency connections) at a fake that enforces a 250/s leaky
              bucket, the app paced at "250 per 1 second": time to accept all,
              latency, statuses, then the drain (every number delivered exactly once,
              no 429 from the fake) and its achieved rate.
  memory      VmRSS of the burst's uvicorn process after warm-up and after the burst
              (runs with the burst section).
  pageweight  /join in Debian's chromium through Playwright: bytes of HTML, CSS and JS
              as transferred, number of requests, third-party requests.

Every server is a subprocess on 127.0.0.1 with a free port, run from a temporary
directory (no stray .env), and stopped at the end, also on failure or Ctrl-C; every
PostgreSQL database the run creates is dropped. Every load loop is bounded in count
and in time. The exit code is 0 when every section ran (budgets missed or not), 1 when
a section failed, unless --strict makes a missed budget fail too.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

# What the tests' servers and browser share with the bench (tests/support stands on its
# own, without pytest): from the checkout, whichever venv runs this script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.browser import CHROMIUM_ARGS
from tests.support.servers import child_environment, free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOOPBACK = "127.0.0.1"
DEFAULT_OUTPUT = BENCH / "results.json"
SECTIONS = ("pageview", "embedview", "signup", "openloop", "burst", "pageweight")
ALIASES = {"memory": "burst"}

# Budgets from the issue.
BUDGET_PAGEVIEW_RATIO = 1.0  # the project keeps page views at least as fast as bare Starlette
BUDGET_SIGNUP_ADDED_P99_MS = 10.0
BUDGET_SIGNUP_CPU_MS = 0.8  # of the app, per signup, on SQLite in one process
BUDGET_OPENLOOP_ADDED_P99_MS = 10.0
BUDGET_BURST_ACCEPT_S = 10.0
BUDGET_BURST_P99_MS = 250.0
BUDGET_RSS_MB = 100.0
BUDGET_PAGE_BYTES = 20 * 1000  # "20 KB": counted as 20,000 bytes, the stricter reading

# The open loop's offered rate (--openloop-rate, signups per second): 200 times
# ProTexting's pace of one a second.
OPENLOOP_RATE_PER_S = 200.0

# The burst's pace (--burst-rate, per second): the fake's leaky bucket "R/1" and the
# app's moving window "R per 1 second", the same rate.
BURST_RATE_PER_S = 250
# For the signup latency runs: so high that pacing never queues, with a short window so
# the pacer's in-memory window stays small.
UNPACED_RATE = "100000 per 1 second"

# Distinct valid US numbers: area code 312, exchanges 200-999 (all valid mobile or
# fixed-line-or-mobile for phonenumbers). Far from the fake's scripted 1201555010x.
NUMBERS_FIRST = 3122000000
NUMBERS_END = 3130000000

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class BenchError(Exception):
    """A section could not be measured (a server did not start, a tool failed, ...)."""


# -- small helpers ---------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of unsorted values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def rnd(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process and its live children (uvicorn's workers) have
    used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    total = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            kids = [int(child) for child in children.read().split()]
    except OSError:
        kids = []
    for kid in kids:
        with contextlib.suppress(OSError):
            total += cpu_seconds(kid)
    return total


def cpu_used(before: Mapping[str, float], servers: Mapping[str, Server], requests: int) -> dict[str, Any]:
    """CPU each server used since `before`: seconds, and milliseconds per completed
    request, a figure far less noisy than throughput on a shared machine."""
    used = {}
    for name, server in servers.items():
        seconds = cpu_seconds(server.pid) - before[name]
        used[name] = {
            "seconds": round(seconds, 3),
            "ms_per_request": round(seconds * 1000 / requests, 3) if requests else None,
        }
    return used


def http_client(timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=timeout, follow_redirects=False)


# -- subprocesses ------------------------------------------------------------------------


class Registry:
    """Every subprocess and PostgreSQL database the run made, for cleanup on any exit."""

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self.databases: list[tuple[str, str]] = []  # (admin dsn, name)

    def cleanup(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()
        self.servers.clear()
        for admin, name in reversed(self.databases):
            try:
                drop_database(admin, name)
            except Exception as exc:
                log(f"could not drop database {name}: {exc}")
        self.databases.clear()


REGISTRY = Registry()


class Server:
    """One server subprocess on 127.0.0.1 (a free port), logs in `workdir`."""

    def __init__(
        self, name: str, argv: Sequence[str], *, workdir: Path, env: Mapping[str, str], ready_path: str
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.workdir = workdir
        self.env = dict(env)
        self.ready_path = ready_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _fill(self, text: str) -> str:
        return text.replace("{port}", str(self.port))

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        for attempt in range(3):
            self._spawn()
            if self._wait_ready(timeout):
                return self
            stderr = self.stderr_tail()
            self.stop()
            if attempt < 2 and "address already in use" in stderr.lower():
                self.port = free_port()
                continue
            raise BenchError(f"{self.name} did not come up on {self.url} within {timeout:.0f}s; stderr:\n{stderr}")
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self._close_logs()
        out = open(self.workdir / f"{self.name}.stdout.log", "ab")  # noqa: SIM115
        err = open(self.workdir / f"{self.name}.stderr.log", "ab")  # noqa: SIM115
        self._logs = [out, err]
        self.process = subprocess.Popen(
            [self._fill(part) for part in self.argv],
            cwd=self.workdir,
            env=child_environment({k: self._fill(v) for k, v in self.env.items()}),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
        if self not in REGISTRY.servers:
            REGISTRY.servers.append(self)

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with http_client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    return False
                try:
                    if client.get(self.url + self.ready_path).status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_TIMEOUT)
        self._close_logs()
        if self in REGISTRY.servers:
            REGISTRY.servers.remove(self)

    def _close_logs(self) -> None:
        for stream in self._logs:
            stream.close()
        self._logs = []

    def stderr_tail(self, lines: int = 40) -> str:
        path = self.workdir / f"{self.name}.stderr.log"
        if not path.exists():
            return "(no stderr)"
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:]) or "(nothing on stderr)"

    def rss_kb(self) -> dict[str, int]:
        return proc_status(self.pid)

    def check_alive(self) -> None:
        if not self.running():
            raise BenchError(
                f"{self.name} exited (code {self.process.returncode if self.process else None}); stderr:\n{self.stderr_tail()}"
            )


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- PostgreSQL ---------------------------------------------------------------------------


def _pg_execute(admin_dsn: str, statement: str) -> None:
    import asyncpg  # the app's own driver, in the venv

    async def run() -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


def create_database(admin_dsn: str) -> str:
    name = f"optin_bench_{secrets.token_hex(4)}"
    _pg_execute(admin_dsn, f'CREATE DATABASE "{name}"')
    REGISTRY.databases.append((admin_dsn, name))
    return name


def drop_database(admin_dsn: str, name: str) -> None:
    _pg_execute(admin_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    with contextlib.suppress(ValueError):
        REGISTRY.databases.remove((admin_dsn, name))


def postgres_available(admin_dsn: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        _pg_execute(admin_dsn, "SELECT 1")
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- the servers ---------------------------------------------------------------------------


@dataclass
class Bench:
    """Settings of this run, shared by the sections."""

    args: argparse.Namespace
    tmp: Path
    token: str = field(default_factory=lambda: "bench-token-" + secrets.token_hex(8))
    secret_key: str = field(default_factory=lambda: "bench-secret-key-" + secrets.token_hex(8))
    _next_number: int = NUMBERS_FIRST
    _dirs: int = 0

    def numbers(self, count: int) -> int:
        """The first of `count` fresh distinct national numbers."""
        first = self._next_number
        if first + count > NUMBERS_END:
            raise BenchError("ran out of distinct phone numbers for this run (lower --duration or --burst)")
        self._next_number += count
        return first

    def workdir(self, label: str) -> Path:
        self._dirs += 1
        path = self.tmp / f"{self._dirs:02d}-{label}"
        path.mkdir(parents=True)
        return path

    def uvicorn_options(self) -> list[str]:
        # As `optin serve` runs it: proxy headers off (the app alone reads X-Forwarded-For),
        # for the baseline too, so both pay the same server.
        return [
            "--loop", self.args.loop, "--http", self.args.http, "--no-access-log", "--log-level", "info",
            "--no-proxy-headers",
        ]  # fmt: skip

    def fake(self, workdir: Path, *, latency_ms: float = 0.0, rate_limit: str | None = None) -> Server:
        argv = [
            self.args.server_python,
            "-m",
            "app.sandbox",
            "--port",
            "{port}",
            "--token",
            self.token,
            "--latency-ms",
            str(latency_ms),
        ]
        if rate_limit:
            argv += ["--rate-limit", rate_limit]
        return Server("fake", argv, workdir=workdir, env={}, ready_path="/_fake/calls")

    def app(
        self,
        workdir: Path,
        *,
        fake: Server,
        database_url: str | None = None,
        rate: str = UNPACED_RATE,
        name: str = "app",
        workers: int = 1,
        redis_url: str | None = None,
        number_limits: bool = False,
    ) -> Server:
        env = {
            "PROTEXTING_ACCESS_TOKEN": self.token,
            "PROTEXTING_API_URL": fake.url + "/v1",
            "PROTEXTING_RATE_LIMIT": rate,
            "OPTIN_CAMPAIGNS": str(self.args.campaigns),
            "OPTIN_SECRET_KEY": self.secret_key,
            "OPTIN_PUBLIC_URL": f"http://{LOOPBACK}:{{port}}",
            "OPTIN_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{workdir / 'optin.db'}",
            # Abuse protection off for load from one address; tokens made before the
            # run would otherwise be taken for a bot's ("too fast") and not stored.
            "OPTIN_LIMIT_PER_IP": "",
            "OPTIN_LIMIT_PER_NUMBER": "",
            "OPTIN_LIMIT_PER_PREFIX": "",
            "OPTIN_LIMIT_PER_CAMPAIGN": "",
            "OPTIN_MIN_FILL_SECONDS": "0",
            # Measured as deployed with monitoring: the metrics on (page views and
            # outcomes counted, flushed once a second).
            "OPTIN_METRICS_TOKEN": secrets.token_urlsafe(24),
        }
        if number_limits:
            # The limits a burst of distinct numbers meets in production, at their
            # defaults: per number and per campaign (two windows per number). The
            # per-address and per-block limits stay off: one address sends it all,
            # and the numbers run in sequence.
            del env["OPTIN_LIMIT_PER_NUMBER"], env["OPTIN_LIMIT_PER_CAMPAIGN"]
        if redis_url:
            # Workers share the pace and the limits through Redis, under this run's prefix.
            env["OPTIN_REDIS_URL"] = redis_url
            env["OPTIN_REDIS_PREFIX"] = f"optin-bench-{secrets.token_hex(4)}"
        argv = [
            self.args.server_python,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            LOOPBACK,
            "--port",
            "{port}",
            *self.uvicorn_options(),
        ]
        if workers > 1:
            argv += ["--workers", str(workers)]
        server = Server(name, argv, workdir=workdir, env=env, ready_path="/healthz")
        # As a deployment's release step does (README, Deploying): the schema is made
        # first, so the measured server starts like a replica on an existing database.
        migrate = subprocess.run(
            [self.args.server_python, "-m", "app.cli", "migrate"], cwd=workdir, env=child_environment(env),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        if migrate.returncode != 0:
            raise BenchError(f"optin migrate failed:\n{migrate.stderr[-2000:]}")
        return server

    def baseline(self, workdir: Path, capture: Path) -> Server:
        argv = [
            self.args.server_python, "-m", "uvicorn", "baseline:app", "--app-dir", str(BENCH),
            "--host", LOOPBACK, "--port", "{port}", *self.uvicorn_options(),
        ]  # fmt: skip
        return Server(
            "baseline", argv, workdir=workdir, env={"BENCH_BASELINE_CAPTURE": str(capture)}, ready_path="/healthz"
        )


def form_token(app: Server, keyword: str) -> str:
    with http_client() as client:
        response = client.get(f"{app.url}/{keyword}")
    if response.status_code != 200:
        raise BenchError(f"GET /{keyword} answered {response.status_code}")
    match = re.search(r'name="form_token"\s+value="([^"]+)"', response.text)
    if not match:
        raise BenchError(f"no form_token input in GET /{keyword}")
    if 'name="website"' not in response.text:
        log("note: the honeypot input 'website' is not on the page any more")
    return match.group(1)


def fake_calls(fake: Server) -> dict[str, Any]:
    with http_client(timeout=30.0) as client:
        response = client.get(fake.url + "/_fake/calls")
    response.raise_for_status()
    return response.json()


# -- wrk -----------------------------------------------------------------------------------


def wrk(
    url: str,
    *,
    duration: float,
    concurrency: int,
    threads: int,
    script: Path,
    env: Mapping[str, str] | None = None,
    cpu_of: Mapping[str, Server] | None = None,
) -> dict[str, Any]:
    """One wrk run; its summary (latencies in ms, throughput in requests/s), and the
    CPU time each server in `cpu_of` used meanwhile."""
    threads = max(1, min(threads, concurrency))
    argv = [
        "wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration))}s",
        "--timeout", "10s", "-s", str(script), url,
    ]  # fmt: skip
    environment = {name: value for name, value in os.environ.items() if not name.startswith("BENCH_")}
    environment.update(env or {})
    cpu_of = cpu_of or {}
    before = {name: cpu_seconds(server.pid) for name, server in cpu_of.items()}
    try:
        done = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=duration + 60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    line = next((out for out in done.stdout.splitlines() if out.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = raw["errors"]
    return {
        "cpu": cpu_used(before, cpu_of, raw["requests"]),
        "url": url,
        "concurrency": concurrency,
        "threads": threads,
        "duration_s": round(seconds, 3),
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1) if seconds else None,
        "latency_ms": {k: round(v / 1000, 3) for k, v in lat.items()},
        "errors": errors,
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "statuses": {k: raw["statuses"][k] for k in sorted(raw["statuses"])},
        "pending": raw.get("pending"),
        "sent": raw.get("sent"),
        "bytes": raw["bytes"],
    }


def form_tokens(bench: Bench, keyword: str, count: int) -> list[str]:
    """`count` form tokens for `keyword`, as its page would issue them (each is good for
    one signup), URL-encoded: made here with the app's secret rather than by as many
    page views, which would weigh on the figures."""
    from app.tokens import FormTokens

    tokens = FormTokens(bench.secret_key)
    return [quote(tokens.issue(keyword), safe="") for _ in range(count)]


def wrk_post(
    bench: Bench,
    url_base: str,
    path: str,
    *,
    mode: str,
    duration: float,
    concurrency: int,
    keyword: str = "",
    cpu_of: Mapping[str, Server] | None = None,
) -> tuple[dict[str, Any], int, int]:
    """POST distinct numbers with wrk, in form mode each with a token of its own;
    returns (summary, first number, numbers reserved)."""
    threads = max(1, min(bench.args.threads, concurrency))
    # Room for a fast server: 8,000 requests/s per thread over the run, and a floor.
    block = int(max(20_000, (duration + 5) * 8_000))
    first = bench.numbers(block * threads)
    env = {
        "BENCH_PATH": path,
        "BENCH_MODE": mode,
        "BENCH_NUMBER_BASE": str(first),
        "BENCH_THREAD_BLOCK": str(block),
    }
    if mode == "form":
        # One file per wrk thread: thread i reads BENCH_FORM_TOKENS .. i.
        stem = bench.workdir("tokens") / "tokens-"
        for thread in range(threads):
            Path(f"{stem}{thread}").write_text("\n".join(form_tokens(bench, keyword, block)) + "\n", encoding="ascii")
        env["BENCH_FORM_TOKENS"] = str(stem)
    result = wrk(
        url_base + path,
        duration=duration,
        concurrency=concurrency,
        threads=threads,
        script=BENCH / "post.lua",
        env=env,
        cpu_of=cpu_of,
    )
    return result, first, block * threads


# -- section: page view -------------------------------------------------------------------

_CAPTURED_HEADERS_SKIPPED = {"date", "server", "content-length", "connection", "keep-alive", "transfer-encoding"}


def section_pageview(bench: Bench) -> dict[str, Any]:
    return _page_view(bench, "pageview", f"/{bench.args.keyword}")


def section_embedview(bench: Bench) -> dict[str, Any]:
    """The same measure for the embed, `/embed/{keyword}`: the frame a shop's page loads
    on every visit, prerendered as the page is."""
    return _page_view(bench, "embedview", f"/embed/{bench.args.keyword}")


def _page_view(bench: Bench, name: str, path: str) -> dict[str, Any]:
    """GET `path` under wrk, against the baseline serving the same captured bytes at the
    same path (bench/baseline.py), in ABBA rounds."""
    args = bench.args
    keyword = args.keyword
    workdir = bench.workdir(name)
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(running(bench.fake(workdir)))
        app = stack.enter_context(running(bench.app(workdir, fake=fake)))
        with http_client() as client:
            captured = client.get(f"{app.url}{path}")
        if captured.status_code != 200:
            raise BenchError(f"GET {path} answered {captured.status_code}")
        headers = [[k, v] for k, v in captured.headers.items() if k.lower() not in _CAPTURED_HEADERS_SKIPPED]
        capture = workdir / "capture.json"
        capture.write_text(json.dumps({"body_hex": captured.content.hex(), "headers": headers}), encoding="utf-8")
        baseline = stack.enter_context(running(bench.baseline(workdir, capture)))
        with http_client() as client:
            same = client.get(f"{baseline.url}{path}")
        if same.content != captured.content:
            raise BenchError("the baseline does not answer the captured bytes")
        app_bytes = len(captured.content)
        header_bytes = sum(len(k) + len(v) + 4 for k, v in captured.headers.items())

        targets = {"app": app, "baseline": baseline}
        url = {target: f"{server.url}{path}" for target, server in targets.items()}
        get = BENCH / "get.lua"
        for target in targets:  # warm-up, discarded
            wrk(url[target], duration=args.warmup, concurrency=args.concurrency, threads=args.threads, script=get)

        rounds: list[dict[str, Any]] = []
        for index in range(args.rounds):
            order = ["app", "baseline"] if index % 2 == 0 else ["baseline", "app"]
            this: dict[str, Any] = {"order": order}
            for target in order:
                log(f"{name} round {index + 1}/{args.rounds}: {target}")
                this[target] = wrk(
                    url[target], duration=args.duration, concurrency=args.concurrency, threads=args.threads, script=get,
                    cpu_of={"server": targets[target]},
                )  # fmt: skip
                targets[target].check_alive()
            this["ratio"] = round(this["app"]["rps"] / this["baseline"]["rps"], 4)
            rounds.append(this)

    def med(name: str, key: str) -> float | None:
        return rnd(median([r[name]["latency_ms"][key] for r in rounds]), 3)

    summary = {
        "keyword": keyword,
        "path": path,
        "body_bytes": app_bytes,
        "header_bytes_approx": header_bytes,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": rounds,
        "median": {
            name: {
                "rps": rnd(median([r[name]["rps"] for r in rounds]), 1),
                "cpu_ms_per_request": rnd(median([r[name]["cpu"]["server"]["ms_per_request"] for r in rounds]), 4),
                "p50_ms": med(name, "p50"),
                "p99_ms": med(name, "p99"),
                "non_2xx": sum(r[name]["errors"]["status"] for r in rounds),
                "socket_errors": sum(r[name]["socket_errors"] for r in rounds),
            }
            for name in ("app", "baseline")
        },
        "ratio_median": rnd(median([r["ratio"] for r in rounds]), 3),
        # The same comparison by CPU time per request (baseline / app): less noisy than
        # throughput when other work shares the machine.
        "cpu_ratio": _ratio(
            median([r["baseline"]["cpu"]["server"]["ms_per_request"] for r in rounds]),
            median([r["app"]["cpu"]["server"]["ms_per_request"] for r in rounds]),
        ),
        "ratios": [r["ratio"] for r in rounds],
    }
    return summary


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


# -- section: signup -----------------------------------------------------------------------


def section_signup(bench: Bench) -> dict[str, Any]:
    args = bench.args
    databases: list[str] = ["sqlite"]
    skipped: dict[str, str] = {}
    if args.no_postgres:
        skipped["postgresql"] = "--no-postgres"
    else:
        problem = postgres_available(args.pg_admin)
        if problem is None:
            databases.append("postgresql")
        else:
            skipped["postgresql"] = f"not reachable at {args.pg_admin}: {problem}"
            log(f"PostgreSQL skipped: {skipped['postgresql']}")
    configs: list[tuple[str, float, int]] = [
        (db, latency, 1) for db in databases for latency in args.upstream_latencies
    ]
    # A 2-core deployment runs a worker per core: PostgreSQL and Redis let them share
    # the records, the pace and the limits (README, Running several replicas).
    if args.workers > 1 and "postgresql" in databases:
        problem = redis_available(args.redis_url)
        if problem is None:
            configs += [("postgresql", latency, args.workers) for latency in args.upstream_latencies]
        else:
            skipped[f"postgresql, {args.workers} workers"] = f"Redis not reachable at {args.redis_url}: {problem}"
    results = []
    for db, latency, workers in configs:
        results.append(_signup_config(bench, db, latency, workers=workers))
    return {"concurrency": args.concurrency, "duration_s": args.duration, "configs": results, "skipped": skipped}


def redis_available(url: str) -> str | None:
    """None when Redis answers PING at `url`; else why not."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or LOOPBACK, parts.port or 6379), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if answer.startswith(b"+PONG") else f"unexpected answer {answer[:20]!r}"


def _signup_config(bench: Bench, db: str, latency_ms: float, *, workers: int = 1) -> dict[str, Any]:
    args = bench.args
    label = f"{db}-{latency_ms:g}ms" + (f"-{workers}workers" if workers > 1 else "")
    workdir = bench.workdir(f"signup-{label}")
    path = f"/{args.keyword}"
    with contextlib.ExitStack() as stack:
        database_url = None
        if db == "postgresql":
            name = create_database(args.pg_admin)
            stack.callback(drop_database, args.pg_admin, name)
            database_url = _asyncpg_url(args.pg_admin, name)
        fake = stack.enter_context(running(bench.fake(workdir, latency_ms=latency_ms)))
        redis_url = args.redis_url if workers > 1 else None
        app = stack.enter_context(
            running(bench.app(workdir, fake=fake, database_url=database_url, workers=workers, redis_url=redis_url))
        )
        form_token(app, args.keyword)  # the page serves a form with a token
        upstream_path = f"/v1/contacts-opt-in/create?access_token={quote(bench.token)}"

        log(f"signup {label}: warm-up")
        wrk_post(
            bench, app.url, path, mode="form", duration=args.warmup, concurrency=args.concurrency, keyword=args.keyword
        )
        wrk_post(bench, fake.url, upstream_path, mode="json", duration=args.warmup, concurrency=args.concurrency)

        rounds = []
        for index in range(args.signup_rounds):
            log(f"signup {label}: round {index + 1}/{args.signup_rounds}: upstream alone, c={args.concurrency}")
            upstream, _, _ = wrk_post(
                bench, fake.url, upstream_path, mode="json", duration=args.duration, concurrency=args.concurrency,
                cpu_of={"fake": fake},
            )  # fmt: skip
            log(f"signup {label}: round {index + 1}/{args.signup_rounds}: app, c={args.concurrency}")
            served, first, count = wrk_post(
                bench, app.url, path, mode="form", duration=args.duration, concurrency=args.concurrency, keyword=args.keyword,
                cpu_of={"app": app, "fake": fake},
            )  # fmt: skip
            app.check_alive()
            rounds.append({"upstream": upstream, "app": served, "numbers": [first, count]})

        c1 = None
        if args.c1_duration > 0:
            log(f"signup {label}: app, c=1")
            c1, _, _ = wrk_post(
                bench, app.url, path, mode="form", duration=args.c1_duration, concurrency=1, keyword=args.keyword,
                cpu_of={"app": app},
            )  # fmt: skip
            app.check_alive()

        # Did the signups of the measured app runs really reach the fake?
        calls = fake_calls(fake)
        delivered = Counter()
        for call in calls["calls"]:
            number = call.get("PhoneNumber", "")
            if number.startswith("1") and number[1:].isdigit():
                national = int(number[1:])
                for i, r in enumerate(rounds):
                    first, count = r["numbers"]
                    if first <= national < first + count:
                        delivered[i] += 1
        rss = app.rss_kb()

    def med(part: str, key: str) -> float | None:
        return rnd(median([r[part]["latency_ms"][key] for r in rounds]), 3)

    app_p50, app_p99 = med("app", "p50"), med("app", "p99")
    up_p50, up_p99 = med("upstream", "p50"), med("upstream", "p99")
    accepted = [r["app"]["statuses"].get("303", 0) for r in rounds]
    return {
        "label": label,
        "database": db,
        "workers": workers,
        "redis": workers > 1,
        "upstream_latency_ms": latency_ms,
        "rounds": rounds,
        "c1": c1,
        "app": {
            "rps": rnd(median([r["app"]["rps"] for r in rounds]), 1),
            "cpu_ms_per_request": rnd(median([r["app"]["cpu"]["app"]["ms_per_request"] for r in rounds]), 3),
            "p50_ms": app_p50,
            "p99_ms": app_p99,
            "statuses": _sum_statuses(r["app"]["statuses"] for r in rounds),
            "pending_303": sum(r["app"]["pending"] or 0 for r in rounds),
            "socket_errors": sum(r["app"]["socket_errors"] for r in rounds),
        },
        "upstream": {
            "rps": rnd(median([r["upstream"]["rps"] for r in rounds]), 1),
            "cpu_ms_per_request": rnd(median([r["upstream"]["cpu"]["fake"]["ms_per_request"] for r in rounds]), 3),
            "p50_ms": up_p50,
            "p99_ms": up_p99,
            "statuses": _sum_statuses(r["upstream"]["statuses"] for r in rounds),
        },
        "added_vs_configured_ms": {"p50": rnd(app_p50 - latency_ms, 3), "p99": rnd(app_p99 - latency_ms, 3)},
        "added_vs_measured_ms": {"p50": rnd(app_p50 - up_p50, 3), "p99": rnd(app_p99 - up_p99, 3)},
        "c1_ms": None
        if c1 is None
        else {
            "p50": c1["latency_ms"]["p50"],
            "p99": c1["latency_ms"]["p99"],
            "rps": c1["rps"],
            "cpu_ms_per_request": c1["cpu"]["app"]["ms_per_request"],
            "added_p50": rnd(c1["latency_ms"]["p50"] - latency_ms, 3),
            "added_p99": rnd(c1["latency_ms"]["p99"] - latency_ms, 3),
        },
        "accepted_303": sum(accepted),
        "delivered_to_fake": sum(delivered.values()),
        "throttled_by_fake": calls["throttled"],
        "rss_kb_after": rss,
    }


def _sum_statuses(items: Iterator[dict[str, int]] | Any) -> dict[str, int]:
    total: Counter[str] = Counter()
    for statuses in items:
        total.update(statuses)
    return dict(sorted(total.items()))


def _asyncpg_url(admin_dsn: str, name: str) -> str:
    parts = urlsplit(admin_dsn)
    return f"postgresql+asyncpg://{parts.netloc}/{name}"


# -- section: burst (and memory) -----------------------------------------------------------


@dataclass
class Answer:
    index: int
    status: int  # 0: no HTTP answer (connection error or timeout)
    seconds: float
    location: str = ""
    error: str = ""


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    line = await reader.readline()
    if not line:
        raise ConnectionError("connection closed before the status line")
    status = int(line.split()[1])
    headers: dict[str, str] = {}
    while True:
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            chunks.append(await reader.readexactly(size))
            await reader.readline()
        body = b"".join(chunks)
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()
    return status, headers, body


async def burst_load(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    request_timeout: float,
    deadline: float,
) -> tuple[list[Answer], float]:
    """POST every body once over `concurrency` keep-alive connections, as fast as the
    server answers; per-request latency and status. Bounded: each request by
    `request_timeout`, the whole by `deadline` seconds (what is left is not sent)."""
    answers: list[Answer] = []
    queue = iter(range(len(bodies)))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\nUser-Agent: optin-bench\r\n"
    )
    started = time.perf_counter()
    stop_at = started + deadline

    async def connection() -> None:
        reader = writer = None
        try:
            for index in queue:
                if time.perf_counter() > stop_at:
                    return
                body = bodies[index]
                request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body
                t0 = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), request_timeout)
                    writer.write(request)
                    status, headers, _ = await asyncio.wait_for(_read_response(reader), request_timeout)
                    answers.append(Answer(index, status, time.perf_counter() - t0, headers.get("location", "")))
                    if headers.get("connection", "").lower() == "close":
                        writer.close()
                        reader = writer = None
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, ConnectionError) as exc:
                    answers.append(Answer(index, 0, time.perf_counter() - t0, error=type(exc).__name__))
                    if writer is not None:
                        writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return answers, time.perf_counter() - started


async def burst_with_polls(
    app: Server,
    fake: Server,
    path: str,
    bodies: Sequence[bytes],
    wanted: set[str],
    *,
    concurrency: int,
    deadline: float,
    poll_every: float,
) -> tuple[list[Answer], float, list[list[float]]]:
    """The burst, while the fake is asked every `poll_every` seconds how many of the
    burst's numbers it has received: [seconds since the start, distinct numbers]."""
    polls: list[list[float]] = []
    finished = asyncio.Event()
    started = time.perf_counter()

    async def poll() -> None:
        async with httpx.AsyncClient(trust_env=False, timeout=30.0) as client:
            while not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), poll_every)
                if finished.is_set():
                    return
                response = await client.get(fake.url + "/_fake/calls")
                seen = {c.get("PhoneNumber") for c in response.json()["calls"]} & wanted
                polls.append([round(time.perf_counter() - started, 2), len(seen)])

    poller = asyncio.create_task(poll()) if poll_every > 0 else None
    try:
        answers, accept_s = await burst_load(
            LOOPBACK, app.port, path, bodies, concurrency=concurrency, request_timeout=30.0, deadline=deadline
        )
    finally:
        finished.set()
        if poller is not None:
            await poller
    return answers, accept_s, polls


def _peak_rate(polls: Sequence[Sequence[float]], window: float = 2.0) -> float | None:
    """Highest delivery rate over any span of at least `window` seconds between polls."""
    best = None
    for i, (t0, n0) in enumerate(polls):
        for t1, n1 in polls[i + 1 :]:
            if t1 - t0 >= window:
                rate = (n1 - n0) / (t1 - t0)
                best = rate if best is None else max(best, rate)
                break
    return best


def section_burst(bench: Bench) -> dict[str, Any]:
    args = bench.args
    n = args.burst
    workdir = bench.workdir("burst")
    keyword = args.keyword
    with contextlib.ExitStack() as stack:
        rate = args.burst_rate
        fake_rate, app_rate = f"{rate}/1", f"{rate} per 1 second"
        fake = stack.enter_context(running(bench.fake(workdir, rate_limit=fake_rate)))
        app = stack.enter_context(running(bench.app(workdir, fake=fake, rate=app_rate, number_limits=True)))
        form_token(app, keyword)  # the page serves a form with a token
        rss_start = app.rss_kb()

        # Warm-up: page views and a few signups (their own numbers), then let the
        # fake's bucket and the app's window refill.
        warm_first = bench.numbers(args.burst_warmup)
        warm_tokens = form_tokens(bench, keyword, args.burst_warmup)
        with http_client() as client:
            for _ in range(100):
                client.get(f"{app.url}/{keyword}")
            for i in range(args.burst_warmup):
                client.post(
                    f"{app.url}/{keyword}",
                    content=f"phone={warm_first + i}&form_token={warm_tokens[i]}&website=".encode("ascii"),
                    headers={"content-type": "application/x-www-form-urlencoded"},
                )
        time.sleep(2.0)
        rss_warm = app.rss_kb()

        first = bench.numbers(n)
        numbers = [first + i for i in range(n)]
        wanted = {f"1{number}" for number in numbers}
        tokens = form_tokens(bench, keyword, n)
        bodies = [
            f"phone={number}&form_token={token}&website=".encode("ascii")
            for number, token in zip(numbers, tokens, strict=True)
        ]
        log(f"burst: {n} signups over {args.burst_concurrency} connections")
        answers, accept_s, polls = asyncio.run(
            burst_with_polls(
                app, fake, f"/{keyword}", bodies, wanted,
                concurrency=args.burst_concurrency, deadline=max(120.0, n / 25), poll_every=args.burst_poll,
            )
        )  # fmt: skip
        burst_started = time.monotonic() - accept_s
        app.check_alive()
        rss_accepted = app.rss_kb()

        statuses = Counter(str(a.status) for a in answers)
        latencies = [a.seconds * 1000 for a in answers if a.status]
        accepted = [a for a in answers if a.status == 303]
        pending = sum(1 for a in accepted if "pending=1" in a.location)
        errors = Counter(a.error for a in answers if a.error)

        # The drain: poll the fake until every accepted number arrived (bounded).
        expected_drain = n / rate
        drain_deadline = time.monotonic() + 3 * expected_drain + 30
        log(f"burst: accepted in {accept_s:.2f}s; waiting for the drain (about {expected_drain:.0f}s at the pace)")
        delivered: Counter[str] = Counter()
        throttled = 0
        drained_at = None
        while True:
            snapshot = fake_calls(fake)
            now = time.monotonic()
            delivered = Counter(c.get("PhoneNumber") for c in snapshot["calls"] if c.get("PhoneNumber") in wanted)
            throttled = snapshot["throttled"]
            polls.append([round(now - burst_started, 2), len(delivered)])
            if len(delivered) >= len(wanted):
                drained_at = now
                break
            if now > drain_deadline:
                break
            app.check_alive()
            time.sleep(0.25)
        # A moment more, to see a late duplicate if there is one.
        time.sleep(1.0)
        snapshot = fake_calls(fake)
        delivered = Counter(c.get("PhoneNumber") for c in snapshot["calls"] if c.get("PhoneNumber") in wanted)
        throttled = snapshot["throttled"]
        rss_after = app.rss_kb()
        states = _sqlite_states(workdir / "optin.db")

    drain_s = None if drained_at is None else drained_at - burst_started
    answered_numbers = {f"1{numbers[a.index]}" for a in accepted}
    lost = len(answered_numbers - set(delivered))
    duplicates = sum(count - 1 for count in delivered.values() if count > 1)
    return {
        "signups": n,
        "concurrency": args.burst_concurrency,
        "fake_rate_limit": fake_rate,
        "app_rate_limit": app_rate,
        "accept_s": round(accept_s, 3),
        "accept_rps": round(len(answers) / accept_s, 1) if accept_s else None,
        "answered": len(answers),
        "not_sent": n - len(answers),
        "statuses": dict(sorted(statuses.items())),
        "5xx": sum(v for k, v in statuses.items() if k.startswith("5")),
        "no_answer": statuses.get("0", 0),
        "client_errors": dict(errors),
        "accepted_303": len(accepted),
        "pending_303": pending,
        "latency_ms": {
            "p50": rnd(percentile(latencies, 50), 3),
            "p90": rnd(percentile(latencies, 90), 3),
            "p99": rnd(percentile(latencies, 99), 3),
            "max": rnd(max(latencies) if latencies else None, 3),
            "mean": rnd(statistics.fmean(latencies) if latencies else None, 3),
        },
        "drain_s": rnd(drain_s, 2),
        "drain_expected_s": round(expected_drain, 2),
        "drain_rate_per_s": rnd(n / drain_s if drain_s else None, 1),
        "drain_rate_configured_per_s": rate,
        # When signups were accepted more slowly than the pace, the pacer never queued.
        "drain_bound_by_acceptance": len(answers) / accept_s < rate if accept_s else None,
        "drain_after_accept_s": rnd(None if drain_s is None else drain_s - accept_s, 2),
        "delivery_peak_rate_per_s": rnd(_peak_rate(polls), 1),
        "delivered_distinct": len(delivered),
        "duplicates": duplicates,
        "lost": lost,
        "throttled_by_fake": throttled,
        "db_states": states,
        "drain_polls": polls,
        "memory_kb": {
            "start": rss_start,
            "after_warmup": rss_warm,
            "after_accept": rss_accepted,
            "after_burst": rss_after,
        },
    }


def _sqlite_states(path: Path) -> dict[str, int] | str:
    """Signups by state in the app's SQLite database (read-only), as a cross-check."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return dict(db.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    except sqlite3.Error as exc:
        return f"unavailable: {exc}"


# -- section: open loop ----------------------------------------------------------------------


@dataclass
class Shot:
    """One request of an open-loop run; times in seconds from its scheduled send time."""

    index: int
    status: int  # 0: no HTTP answer (connection error or timeout)
    latency: float  # scheduled send -> end of the answer: waiting to be sent counts too
    lag: float  # scheduled send -> when the generator wrote it (its own delay)
    location: str = ""
    error: str = ""


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    request_timeout: float,
    idle_limit: float = 2.0,
) -> dict[str, Any]:
    """Send request i at start + i/rate, whether or not earlier ones were answered (an
    open loop, as independent visitors arrive), and time each from its scheduled send,
    so a stalled server is charged for the requests it held back (no coordinated
    omission). A request takes an idle keep-alive connection if there is one, else
    opens a new one: sends never wait for answers. Connections idle for more than
    `idle_limit` seconds are dropped before the server's keep-alive timeout (5 s) can
    close them under a request. Bounded: each request by `request_timeout`."""
    loop = asyncio.get_running_loop()
    idle: list[tuple[float, asyncio.StreamReader, asyncio.StreamWriter]] = []
    shots: list[Shot] = []
    counts = {"opened": 0, "in_flight": 0, "peak_in_flight": 0}

    async def one(index: int, scheduled: float) -> None:
        sent = loop.time()
        counts["in_flight"] += 1
        counts["peak_in_flight"] = max(counts["peak_in_flight"], counts["in_flight"])
        connection = None
        while idle and connection is None:
            last, reader, writer = idle.pop()  # the most recently used: the rest age out
            if sent - last < idle_limit and not reader.at_eof():
                connection = reader, writer
            else:
                writer.close()
        try:
            if connection is None:
                counts["opened"] += 1
                connection = await asyncio.wait_for(asyncio.open_connection(host, port), request_timeout)
            reader, writer = connection
            writer.write(requests[index])
            status, headers, _ = await asyncio.wait_for(_read_response(reader), request_timeout)
            done = loop.time()
            shots.append(Shot(index, status, done - scheduled, sent - scheduled, headers.get("location", "")))
            if headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                idle.append((done, reader, writer))
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, ConnectionError) as exc:
            shots.append(Shot(index, 0, loop.time() - scheduled, sent - scheduled, error=type(exc).__name__))
            if connection is not None:
                connection[1].close()
        finally:
            counts["in_flight"] -= 1

    tasks = []
    cpu_before = time.process_time()
    start = loop.time() + 0.05
    for index in range(len(requests)):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, scheduled)))
    await asyncio.gather(*tasks)
    wall = loop.time() - start
    cpu = time.process_time() - cpu_before
    for _, _, writer in idle:
        writer.close()
    return {"shots": sorted(shots, key=lambda s: s.index), "wall_s": wall, "generator_cpu_s": cpu, **counts}


def _openloop_requests(bench: Bench, target: Server, path: str, *, mode: str, count: int) -> tuple[list[bytes], int]:
    """`count` POSTs of distinct numbers, made before the run (form mode: each with a
    form token of its own); and the first number."""
    first = bench.numbers(count)
    if mode == "form":
        tokens = form_tokens(bench, bench.args.keyword, count)
        bodies = [f"phone={first + i}&form_token={tokens[i]}&website=" for i in range(count)]
        kind = "application/x-www-form-urlencoded"
    else:
        bodies = [f'{{"PhoneNumber":"1{first + i}","GroupIds":[1]}}' for i in range(count)]
        kind = "application/json"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{target.port}\r\nContent-Type: {kind}\r\nUser-Agent: optin-bench\r\n"
    )
    return [f"{head}Content-Length: {len(body)}\r\n\r\n{body}".encode("ascii") for body in bodies], first


def openloop_run(
    bench: Bench,
    target: Server,
    path: str,
    *,
    mode: str,
    seconds: float,
    cpu_of: Mapping[str, Server] | None = None,
) -> dict[str, Any]:
    """One open-loop run at --openloop-rate for `seconds`: latency percentiles from the
    scheduled send times, statuses, the generator's own lag and CPU, the servers' CPU."""
    rate = bench.args.openloop_rate
    count = max(1, round(rate * seconds))
    requests, first = _openloop_requests(bench, target, path, mode=mode, count=count)
    cpu_of = cpu_of or {}
    before = {name: cpu_seconds(server.pid) for name, server in cpu_of.items()}
    run = asyncio.run(open_loop(LOOPBACK, target.port, requests, rate=rate, request_timeout=10.0))
    shots: list[Shot] = run["shots"]
    answered = [s.latency * 1000 for s in shots if s.status]
    lags = [s.lag * 1000 for s in shots]
    statuses = Counter(str(s.status) for s in shots)
    return {
        "cpu": cpu_used(before, cpu_of, len(shots)),
        # Other work on the machine shows in a p99: the 1-minute load average at the end.
        "loadavg": os.getloadavg(),
        "offered": count,
        "rate_per_s": rate,
        "wall_s": round(run["wall_s"], 3),
        "numbers": [first, count],
        "statuses": dict(sorted(statuses.items())),
        "no_answer": statuses.get("0", 0),
        "client_errors": dict(Counter(s.error for s in shots if s.error)),
        "pending_303": sum(1 for s in shots if s.status == 303 and "pending=1" in s.location),
        "latency_ms": {
            "p50": rnd(percentile(answered, 50), 3),
            "p90": rnd(percentile(answered, 90), 3),
            "p99": rnd(percentile(answered, 99), 3),
            "max": rnd(max(answered) if answered else None, 3),
        },
        "connections_opened": run["opened"],
        "peak_in_flight": run["peak_in_flight"],
        "generator": {
            "cpu_s": round(run["generator_cpu_s"], 3),
            "cpu_ms_per_request": round(run["generator_cpu_s"] * 1000 / count, 3),
            "cpu_share_of_a_core": round(run["generator_cpu_s"] / run["wall_s"], 3) if run["wall_s"] else None,
            "send_lag_ms": {
                "p50": rnd(percentile(lags, 50), 3),
                "p99": rnd(percentile(lags, 99), 3),
                "max": rnd(max(lags), 3),
            },
        },
    }


def section_openloop(bench: Bench) -> dict[str, Any]:
    args = bench.args
    configs = [_openloop_config(bench, latency) for latency in args.upstream_latencies]
    return {"rate_per_s": args.openloop_rate, "duration_s": args.openloop_duration, "configs": configs}


def _openloop_config(bench: Bench, latency_ms: float) -> dict[str, Any]:
    args = bench.args
    label = f"sqlite-{latency_ms:g}ms"
    workdir = bench.workdir(f"openloop-{label}")
    path = f"/{args.keyword}"
    upstream_path = f"/v1/contacts-opt-in/create?access_token={quote(bench.token)}"
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(running(bench.fake(workdir, latency_ms=latency_ms)))
        app = stack.enter_context(running(bench.app(workdir, fake=fake)))
        form_token(app, args.keyword)  # the page serves a form with a token
        log(f"openloop {label}: warm-up at {args.openloop_rate:g}/s")
        openloop_run(bench, fake, upstream_path, mode="json", seconds=args.warmup)
        openloop_run(bench, app, path, mode="form", seconds=args.warmup)
        log(f"openloop {label}: upstream alone, {args.openloop_rate:g}/s for {args.openloop_duration:g} s")
        upstream = openloop_run(
            bench, fake, upstream_path, mode="json", seconds=args.openloop_duration, cpu_of={"fake": fake}
        )
        log(f"openloop {label}: app, {args.openloop_rate:g}/s for {args.openloop_duration:g} s")
        served = openloop_run(
            bench, app, path, mode="form", seconds=args.openloop_duration, cpu_of={"app": app, "fake": fake}
        )
        app.check_alive()
        first, count = served["numbers"]
        calls = fake_calls(fake)
        delivered = {
            call.get("PhoneNumber")
            for call in calls["calls"]
            if str(call.get("PhoneNumber", "")).removeprefix("1").isdigit()
            and first <= int(str(call["PhoneNumber"])[1:]) < first + count
        }
    a, u = served["latency_ms"], upstream["latency_ms"]

    def minus(x: float | None, y: float | None) -> float | None:
        return None if x is None or y is None else rnd(x - y, 3)

    return {
        "label": label,
        "database": "sqlite",
        "upstream_latency_ms": latency_ms,
        "upstream": upstream,
        "app": served,
        "added_vs_measured_ms": {"p50": minus(a["p50"], u["p50"]), "p99": minus(a["p99"], u["p99"])},
        "added_vs_configured_ms": {"p50": minus(a["p50"], latency_ms), "p99": minus(a["p99"], latency_ms)},
        "accepted_303": served["statuses"].get("303", 0),
        "upstream_201": upstream["statuses"].get("201", 0),
        "delivered_to_fake": len(delivered),
        "throttled_by_fake": calls["throttled"],
    }


# -- section: page weight ------------------------------------------------------------------


def section_pageweight(bench: Bench) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    args = bench.args
    if not Path(args.chromium).exists():
        raise BenchError(f"no chromium at {args.chromium} (make bench installs Debian's; or pass --chromium)")
    workdir = bench.workdir("pageweight")
    with contextlib.ExitStack() as stack:
        fake = stack.enter_context(running(bench.fake(workdir)))
        app = stack.enter_context(running(bench.app(workdir, fake=fake)))
        own = urlsplit(app.url).netloc
        records: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                context = browser.new_context()
                page = context.new_page()

                def finished(request: Any) -> None:
                    response = request.response()
                    sizes = request.sizes()
                    try:
                        decoded = len(response.body()) if response is not None else 0
                    except Exception:
                        decoded = 0
                    records.append(
                        {
                            "url": request.url,
                            "host": urlsplit(request.url).netloc,
                            "type": request.resource_type,
                            "status": response.status if response is not None else None,
                            "body_bytes": sizes["responseBodySize"],
                            "decoded_bytes": decoded,
                            "header_bytes": sizes["responseHeadersSize"],
                        }
                    )

                page.on("requestfinished", finished)
                page.on(
                    "requestfailed",
                    lambda request: failed.append(
                        {"url": request.url, "type": request.resource_type, "host": urlsplit(request.url).netloc,
                         "failure": request.failure}
                    ),
                )  # fmt: skip
                response = page.goto(f"{app.url}/{args.keyword}", wait_until="networkidle", timeout=30_000)
                status = response.status if response is not None else None
                page.wait_for_timeout(500)
                context.close()
            finally:
                browser.close()

    network = [r for r in records if r["url"].startswith(("http://", "https://"))]
    third_party = [r["url"] for r in network if r["host"] != own] + [f["url"] for f in failed if f["host"] != own]

    def by_type(kind: str) -> int:
        return sum(r["body_bytes"] for r in network if r["type"] == kind)

    return {
        "url": f"/{args.keyword}",
        "status": status,
        "html_bytes": by_type("document"),
        "css_bytes": by_type("stylesheet"),
        "js_bytes": by_type("script"),
        "other_bytes": sum(r["body_bytes"] for r in network if r["type"] not in ("document", "stylesheet", "script")),
        "total_body_bytes": sum(r["body_bytes"] for r in network),
        "total_header_bytes": sum(r["header_bytes"] for r in network),
        "requests": len(network) + len(failed),
        "failed_requests": failed,
        "third_party_requests": len(third_party),
        "third_party_urls": third_party,
        "resources": records,
    }


# -- the table -----------------------------------------------------------------------------


@dataclass
class Row:
    section: str
    figure: str
    value: str
    reference: str = ""
    verdict: str = ""


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("pass" if ok else "MISS")


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _page_view_rows(section: str, pv: dict[str, Any]) -> list[Row]:
    if "error" in pv:
        return [Row(section, "error", pv["error"].splitlines()[-1], "", "ERROR")]
    a, b = pv["median"]["app"], pv["median"]["baseline"]
    c = pv["concurrency"]
    path = pv.get("path", f"/{pv['keyword']}")
    return [
        Row(section, f"GET {path} req/s (c={c}, median of {len(pv['rounds'])})",
            f"{a['rps']:.0f}", f"baseline {b['rps']:.0f}"),
        Row(section, "ratio app/baseline (median of rounds)", f"{pv['ratio_median']:.3f}x",
            f">= {BUDGET_PAGEVIEW_RATIO}x", verdict(pv["ratio_median"] >= BUDGET_PAGEVIEW_RATIO)),
        Row(section, "  per-round ratios", " ".join(f"{r:.3f}" for r in pv["ratios"])),
        Row(section, "server CPU per request (median)", ms(a["cpu_ms_per_request"]),
            f"baseline {ms(b['cpu_ms_per_request'])}"
            + (f" (baseline/app {pv['cpu_ratio']:.3f}x)" if pv.get("cpu_ratio") else "")),
        Row(section, "p50 latency", ms(a["p50_ms"]), f"baseline {ms(b['p50_ms'])}"),
        Row(section, "p99 latency", ms(a["p99_ms"]), f"baseline {ms(b['p99_ms'])}"),
        Row(section, "non-2xx / socket errors", f"{a['non_2xx']} / {a['socket_errors']}",
            f"baseline {b['non_2xx']} / {b['socket_errors']}",
            verdict(a["non_2xx"] == 0 and a["socket_errors"] == 0)),
    ]  # fmt: skip


def rows_for(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    sections = results["sections"]
    for section in ("pageview", "embedview"):
        if section in sections:
            rows += _page_view_rows(section, sections[section])
    if "signup" in sections:
        su = sections["signup"]
        if "error" in su:
            rows.append(Row("signup", "error", su["error"].splitlines()[-1], "", "ERROR"))
        else:
            for cfg in su["configs"]:
                label = f"{cfg['database']}, upstream {cfg['upstream_latency_ms']:g} ms"
                if cfg.get("workers", 1) > 1:
                    label = (
                        f"{cfg['database']}+redis, {cfg['workers']} workers, upstream {cfg['upstream_latency_ms']:g} ms"
                    )
                a, u = cfg["app"], cfg["upstream"]
                added = cfg["added_vs_configured_ms"]
                measured = cfg["added_vs_measured_ms"]
                budget = cfg["database"] == "sqlite"
                other = {k: v for k, v in a["statuses"].items() if k != "303"}
                rows += [
                    Row("signup", f"[{label}] POST req/s (c={su['concurrency']})", f"{a['rps']:.0f}",
                        f"upstream alone {u['rps']:.0f}"),
                    Row("signup", f"[{label}] app CPU per signup", ms(a["cpu_ms_per_request"]),
                        (f"<= {BUDGET_SIGNUP_CPU_MS:g} ms; " if budget and cfg.get("workers", 1) == 1 else "")
                        + f"upstream alone {ms(u['cpu_ms_per_request'])}",
                        verdict(a["cpu_ms_per_request"] <= BUDGET_SIGNUP_CPU_MS)
                        if budget and cfg.get("workers", 1) == 1 else ""),
                    Row("signup", f"[{label}] app p50 / p99", f"{ms(a['p50_ms'])} / {ms(a['p99_ms'])}",
                        f"upstream alone {ms(u['p50_ms'])} / {ms(u['p99_ms'])}"),
                    Row("signup", f"[{label}] added p99 (vs configured)", ms(added["p99"]),
                        f"<= {BUDGET_SIGNUP_ADDED_P99_MS:g} ms" if budget else "",
                        verdict(added["p99"] <= BUDGET_SIGNUP_ADDED_P99_MS) if budget else ""),
                    Row("signup", f"[{label}] added p50 / p99 (vs measured upstream)",
                        f"{ms(measured['p50'])} / {ms(measured['p99'])}"),
                ]  # fmt: skip
                if cfg["c1_ms"]:
                    c1 = cfg["c1_ms"]
                    rows.append(Row("signup", f"[{label}] c=1: req/s, added p50 / p99",
                                    f"{c1['rps']:.0f}, {ms(c1['added_p50'])} / {ms(c1['added_p99'])}"))  # fmt: skip
                rows.append(
                    Row("signup", f"[{label}] 303 / other / delivered", f"{cfg['accepted_303']} / {other or 0} / {cfg['delivered_to_fake']}",
                        f"pending {a['pending_303']}", verdict(not other and a["socket_errors"] == 0 and cfg["delivered_to_fake"] >= cfg["accepted_303"]))
                )  # fmt: skip
            for db, why in su["skipped"].items():
                rows.append(Row("signup", f"[{db}] skipped", why, "", "SKIP"))
    if "openloop" in sections:
        rows += _openloop_rows(sections["openloop"])
    if "burst" in sections:
        bu = sections["burst"]
        if "error" in bu:
            rows.append(Row("burst", "error", bu["error"].splitlines()[-1], "", "ERROR"))
        else:
            n = bu["signups"]
            scale = n / 5000
            accept_budget = BUDGET_BURST_ACCEPT_S * scale
            lat = bu["latency_ms"]
            rows += [
                Row("burst", f"{n} signups accepted in (c={bu['concurrency']})", f"{bu['accept_s']:.2f} s",
                    f"<= {accept_budget:g} s" + ("" if n == 5000 else " (10 s per 5,000)"), verdict(bu["accept_s"] <= accept_budget)),
                Row("burst", "accept rate", f"{bu['accept_rps']:.0f} req/s"),
                Row("burst", "latency p50 / p99", f"{ms(lat['p50'])} / {ms(lat['p99'])}",
                    f"p99 <= {BUDGET_BURST_P99_MS:g} ms", verdict(lat["p99"] is not None and lat["p99"] <= BUDGET_BURST_P99_MS)),
                Row("burst", "statuses", json.dumps(bu["statuses"]), f"pending {bu['pending_303']}"),
                Row("burst", "5xx / no answer / not sent", f"{bu['5xx']} / {bu['no_answer']} / {bu['not_sent']}", "0",
                    verdict(bu["5xx"] == 0 and bu["no_answer"] == 0 and bu["not_sent"] == 0)),
                Row("burst", "drain time (from burst start)", "n/a" if bu["drain_s"] is None else f"{bu['drain_s']:.1f} s",
                    f"~{bu['drain_expected_s']:.0f} s at the pace", verdict(bu["drain_s"] is not None)),
                Row("burst", "drain rate (all / peak over 2 s)",
                    ("n/a" if bu["drain_rate_per_s"] is None else f"{bu['drain_rate_per_s']:.0f}/s")
                    + " / " + ("n/a" if bu["delivery_peak_rate_per_s"] is None else f"{bu['delivery_peak_rate_per_s']:.0f}/s"),
                    f"configured {bu['drain_rate_configured_per_s']:g}/s"
                    + (" (accepting was slower: pacing not exercised)" if bu["drain_bound_by_acceptance"] else "")),
                Row("burst", "drain left after the last answer",
                    "n/a" if bu["drain_after_accept_s"] is None else f"{bu['drain_after_accept_s']:.1f} s"),
                Row("burst", "delivered / lost / duplicates", f"{bu['delivered_distinct']} / {bu['lost']} / {bu['duplicates']}",
                    f"{bu['accepted_303']} / 0 / 0",
                    verdict(bu["lost"] == 0 and bu["duplicates"] == 0 and bu["delivered_distinct"] == bu["accepted_303"] == n)),
                Row("burst", "429 from the fake upstream", str(bu["throttled_by_fake"]), "0", verdict(bu["throttled_by_fake"] == 0)),
            ]  # fmt: skip
            mem = bu["memory_kb"]
            rows.append(Row("memory", "RSS at start (before any request)", f"{mem['start']['VmRSS'] / 1024:.1f} MB"))
            for key, label in (("after_warmup", "RSS after warm-up"), ("after_burst", "RSS after burst")):
                mb = mem[key]["VmRSS"] / 1024
                rows.append(
                    Row("memory", label, f"{mb:.1f} MB", f"<= {BUDGET_RSS_MB:g} MB", verdict(mb <= BUDGET_RSS_MB))
                )
            rows.append(Row("memory", "peak RSS (VmHWM)", f"{mem['after_burst']['VmHWM'] / 1024:.1f} MB"))
    if "pageweight" in sections:
        pw = sections["pageweight"]
        if "error" in pw:
            rows.append(Row("pageweight", "error", pw["error"].splitlines()[-1], "", "ERROR"))
        else:
            rows += [
                Row("pageweight", f"{pw['url']}: HTML / CSS / JS bytes", f"{pw['html_bytes']} / {pw['css_bytes']} / {pw['js_bytes']}"),
                Row("pageweight", "all bytes (bodies, as transferred)", f"{pw['total_body_bytes']}",
                    f"<= {BUDGET_PAGE_BYTES}", verdict(pw["total_body_bytes"] <= BUDGET_PAGE_BYTES)),
                Row("pageweight", "requests", str(pw["requests"]), f"{len(pw['failed_requests'])} failed"),
                Row("pageweight", "third-party requests", str(pw["third_party_requests"]), "0", verdict(pw["third_party_requests"] == 0)),
            ]  # fmt: skip
    return rows


def _openloop_rows(ol: dict[str, Any]) -> list[Row]:
    if "error" in ol:
        return [Row("openloop", "error", ol["error"].splitlines()[-1], "", "ERROR")]
    rows = []
    for cfg in ol["configs"]:
        label = f"[{cfg['database']}, upstream {cfg['upstream_latency_ms']:g} ms, {ol['rate_per_s']:g}/s]"
        a, u = cfg["app"], cfg["upstream"]
        added, configured = cfg["added_vs_measured_ms"], cfg["added_vs_configured_ms"]
        other = {k: v for k, v in a["statuses"].items() if k != "303"}
        upstream_other = {k: v for k, v in u["statuses"].items() if k != "201"}
        generator = a["generator"]
        rows += [
            Row("openloop", f"{label} app p50 / p99 (from scheduled send)", f"{ms(a['latency_ms']['p50'])} / {ms(a['latency_ms']['p99'])}",
                f"upstream alone {ms(u['latency_ms']['p50'])} / {ms(u['latency_ms']['p99'])}"),
            Row("openloop", f"{label} added p50 / p99 (app - upstream alone)", f"{ms(added['p50'])} / {ms(added['p99'])}",
                f"p99 <= {BUDGET_OPENLOOP_ADDED_P99_MS:g} ms",
                verdict(added["p99"] is not None and added["p99"] <= BUDGET_OPENLOOP_ADDED_P99_MS)),
            Row("openloop", f"{label} added p99 (vs configured)", ms(configured["p99"])),
            Row("openloop", f"{label} app CPU per signup", ms(a["cpu"]["app"]["ms_per_request"]),
                f"upstream alone {ms(u['cpu']['fake']['ms_per_request'])}"),
            Row("openloop", f"{label} 303 / other / no answer / delivered",
                f"{cfg['accepted_303']} / {other or 0} / {a['no_answer']} / {cfg['delivered_to_fake']}",
                f"of {a['offered']}; upstream alone: {upstream_other or 0} not 201",
                verdict(cfg["accepted_303"] == a["offered"] == cfg["delivered_to_fake"] and not upstream_other)),
            Row("openloop", f"{label} generator: CPU, send lag p99",
                f"{ms(generator['cpu_ms_per_request'])}/request ({generator['cpu_share_of_a_core']:.0%} of a core), "
                f"{ms(generator['send_lag_ms']['p99'])}",
                f"{a['connections_opened']} connections, {a['peak_in_flight']} in flight at most; "
                f"load average {a['loadavg'][0]:.1f}"),
        ]  # fmt: skip
    return rows


def print_table(rows: list[Row]) -> None:
    header = Row("section", "figure", "measured", "baseline / budget", "verdict")
    widths = [
        max(len(getattr(r, f)) for r in [header, *rows]) for f in ("section", "figure", "value", "reference", "verdict")
    ]

    def line(r: Row) -> str:
        cells = [r.section, r.figure, r.value, r.reference, r.verdict]
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    previous = None
    for row in rows:
        if previous is not None and row.section != previous:
            print()
        print(line(row))
        previous = row.section


# -- the machine ----------------------------------------------------------------------------


def python_loop_cpu_s() -> float:
    """CPU seconds of 10 million additions in a Python loop: how fast this machine runs
    Python, to compare figures taken on different machines. The budgets stay absolute:
    this only says how much of a miss, or of a pass, the machine may account for."""
    started = time.process_time()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.process_time() - started, 3)


def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    def first_line(argv: list[str]) -> str | None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = (done.stdout or done.stderr).strip().splitlines()
        return text[0] if text else None

    cpu = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), None)
    memory_kb = None
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as meminfo:
        memory_kb = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal")), None)
    return {
        "python_loop_cpu_s": python_loop_cpu_s(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu,
        "memory_mb": None if memory_kb is None else round(memory_kb / 1024),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": {d: version(d) for d in ("uvicorn", "fastapi", "starlette", "sqlalchemy", "aiosqlite", "asyncpg",
                                              "httpx", "jinja2", "uvloop", "httptools", "playwright")},
        "server_python": args.server_python,
        "uvicorn_loop": args.loop,
        "uvicorn_http": args.http,
        "wrk": first_line(["wrk", "-v"]),
        "chromium": first_line([args.chromium, "--version"]) if Path(args.chromium).exists() else None,
        "loadavg_start": os.getloadavg(),
    }  # fmt: skip


# -- main -----------------------------------------------------------------------------------


def _default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _default_http() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs: 3 s measurements, 1,000-signup burst")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated sections: {', '.join(SECTIONS)} (memory = burst)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per measured wrk run (default 10; quick 3)"
    )
    parser.add_argument(
        "--warmup", type=float, default=None, help="seconds of discarded wrk warm-up (default 2; quick 1)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument(
        "--threads", type=int, default=1, help="wrk threads (default 1: leaves the other core to the server)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="page-view rounds of (app, baseline), at least 3 (default 3)"
    )
    parser.add_argument(
        "--signup-rounds", type=int, default=1, help="measured rounds per signup configuration (default 1)"
    )
    parser.add_argument(
        "--c1-duration",
        type=float,
        default=None,
        help="seconds of the concurrency-1 signup run (0: skip; default duration/2)",
    )
    parser.add_argument(
        "--upstream-latencies",
        default="0,100",
        help="fake ProTexting latencies in ms for the signup section (default 0,100)",
    )
    parser.add_argument(
        "--openloop-rate",
        type=float,
        default=OPENLOOP_RATE_PER_S,
        help=f"signups per second offered by the open loop (default {OPENLOOP_RATE_PER_S:g})",
    )
    parser.add_argument(
        "--openloop-duration",
        type=float,
        default=None,
        help="seconds of each measured open-loop run (default 15; quick 5)",
    )
    parser.add_argument("--burst", type=int, default=None, help="signups in the burst (default 5000; quick 1000)")
    parser.add_argument(
        "--burst-concurrency", type=int, default=64, help="connections of the burst's load generator (default 64)"
    )
    parser.add_argument(
        "--burst-poll",
        type=float,
        default=1.0,
        help="seconds between reads of the fake's calls during the burst (0: only after it; default 1)",
    )
    parser.add_argument(
        "--burst-rate",
        type=int,
        default=BURST_RATE_PER_S,
        help="the pace of the burst in calls per second, the fake's and the app's (default 250)",
    )
    parser.add_argument(
        "--burst-warmup", type=int, default=20, help="signups sent one by one before the burst (default 20)"
    )
    parser.add_argument("--keyword", default="join", help="campaign page to measure (default join)")
    parser.add_argument(
        "--campaigns", type=Path, default=ROOT / "campaigns.toml", help="campaigns file (default campaigns.toml)"
    )
    parser.add_argument("--pg-admin", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="where to CREATE and DROP the PostgreSQL databases")  # fmt: skip
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL signup runs")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="also measure signups with this many uvicorn workers on PostgreSQL and Redis (default 2; 1: skip)",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/0", help="Redis for the multi-worker signup runs"
    )
    parser.add_argument("--chromium", default=os.environ.get("OPTIN_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument(
        "--server-python", default=sys.executable,
        help="Python that runs every server (make bench: a venv with the service's dependencies only, as deployed)",
    )  # fmt: skip
    parser.add_argument("--loop", default=_default_loop(), help="uvicorn --loop for the app and the baseline")
    parser.add_argument("--http", default=_default_http(), help="uvicorn --http for the app and the baseline")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results file (default bench/results.json)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (server logs, databases)")
    parser.add_argument("--strict", action="store_true", help="exit 2 when a budget is missed")
    args = parser.parse_args(argv)
    # Absolute, not resolved: a venv's python is a symlink, and only its own path selects the venv.
    args.server_python = os.path.abspath(args.server_python)

    args.duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.burst = args.burst if args.burst is not None else (1000 if args.quick else 5000)
    if args.openloop_duration is None:
        args.openloop_duration = 5.0 if args.quick else 15.0
    args.c1_duration = args.c1_duration if args.c1_duration is not None else max(1.0, round(args.duration / 2))
    args.upstream_latencies = [float(x) for x in args.upstream_latencies.split(",") if x.strip()]
    if args.rounds < 3:
        parser.error("--rounds must be at least 3")
    if args.burst < 1 or args.burst > 200_000:
        parser.error("--burst must be between 1 and 200000")
    if not 1 <= args.concurrency <= 1024 or not 1 <= args.burst_concurrency <= 1024:
        parser.error("concurrency must be between 1 and 1024")
    if not 1 <= args.duration <= 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if not 1 <= args.openloop_duration <= 600 or not 1 <= args.openloop_rate <= 5000:
        parser.error("--openloop-duration must be 1-600 seconds and --openloop-rate 1-5000 per second")
    chosen = [s.strip() for s in (args.only or ",".join(SECTIONS)).split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS and s not in ALIASES]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}, memory")
    args.sections = [s for s in SECTIONS if s in {ALIASES.get(c, c) for c in chosen}]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None and {"pageview", "embedview", "signup"} & set(args.sections):
        print("wrk is not installed: `make bench` installs it (apt-get install wrk)", file=sys.stderr)
        return 1

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    atexit.register(REGISTRY.cleanup)

    started = time.monotonic()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(args),
        "budgets": {
            "pageview_ratio_min": BUDGET_PAGEVIEW_RATIO,
            "signup_added_p99_ms_max": BUDGET_SIGNUP_ADDED_P99_MS,
            "signup_cpu_ms_max": BUDGET_SIGNUP_CPU_MS,
            "openloop_added_p99_ms_max": BUDGET_OPENLOOP_ADDED_P99_MS,
            "burst_accept_s_max_per_5000": BUDGET_BURST_ACCEPT_S,
            "burst_p99_ms_max": BUDGET_BURST_P99_MS,
            "rss_mb_max": BUDGET_RSS_MB,
            "page_bytes_max": BUDGET_PAGE_BYTES,
        },
        "sections": {},
    }
    runners: dict[str, Callable[[Bench], dict[str, Any]]] = {
        "pageview": section_pageview,
        "embedview": section_embedview,
        "signup": section_signup,
        "openloop": section_openloop,
        "burst": section_burst,
        "pageweight": section_pageweight,
    }
    tmp = Path(tempfile.mkdtemp(prefix="optin-bench-"))
    bench = Bench(args=args, tmp=tmp)
    failed = False
    try:
        for name in args.sections:
            log(f"section {name}")
            t0 = time.monotonic()
            try:
                results["sections"][name] = runners[name](bench)
            except Exception as exc:  # a section's failure is reported, the rest still runs
                failed = True
                detail = traceback.format_exc()
                log(f"section {name} failed:\n{detail}")
                results["sections"][name] = {"error": f"{type(exc).__name__}: {exc}".strip(), "traceback": detail}
            finally:
                REGISTRY.cleanup()
            results["sections"][name]["seconds"] = round(time.monotonic() - t0, 1)
    except BaseException:
        log("interrupted: stopping every server and dropping every database this run made")
        raise
    finally:
        REGISTRY.cleanup()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    results["machine"]["loadavg_end"] = os.getloadavg()
    results["seconds"] = round(time.monotonic() - started, 1)
    rows = rows_for(results)
    results["table"] = [vars(r) for r in rows]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    print()
    print_table(rows)
    print()
    missed = sum(1 for r in rows if r.verdict == "MISS")
    machine = results["machine"]
    busy = machine["loadavg_start"][0]
    if busy > 0.5 * machine["nproc"]:
        print(f"note: the machine was busy before this run started (1-min load average {busy:.1f} on "
              f"{machine['nproc']} cores): throughput and latency are noisy; ratios and CPU per request less so.")  # fmt: skip
    print(f"machine: {machine['nproc']} cores; a Python loop of 10 million additions took "
          f"{machine['python_loop_cpu_s']:.2f} s of CPU (compare figures across machines with it)")  # fmt: skip
    print(f"{len(rows)} figures, {missed} budget(s) missed; {results['seconds']:.0f} s in all; "
          f"results in {args.output}")  # fmt: skip
    if failed:
        return 1
    if args.strict and missed:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
