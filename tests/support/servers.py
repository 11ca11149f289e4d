"""Real servers on loopback for end-to-end tests: the app and the fake ProTexting.

Each `Server` is one subprocess of this venv's Python, listening on 127.0.0.1:

    with fake_protexting(tmp_path, token="t") as fake, app_server(tmp_path, fake=fake, token="t") as app:
        httpx.get(app.url + "/join")
    app.stderr  # everything the process wrote, readable after stop

`start()` returns once the server answers HTTP (bounded by a deadline) or raises
`ServerFailed` with the process's own stderr. `stop()` terminates then kills; `kill()` is a
SIGKILL, for crash tests. A stopped or killed server can be started again on the same
port, so a test can restart the app and keep talking to the same URL.

The child's environment is the parent's minus every PROTEXTING_*/OPTIN_* variable and
proxy setting, plus what the test passes; its working directory is a fresh directory so
no stray `.env` is read.

Waiting on a server without sleeping: whatever a server writes is copied to its log
files by a reader thread that then wakes `wait_until` (module level), which checks its
condition again after each write and each exit of any server here. The app logs each
request and each delivery, so "every signup delivered" is checked as it happens.

No pytest import: bench/ uses this module too.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

from .campaigns import DEMO_CAMPAIGNS, ROOT

LOOPBACK = "127.0.0.1"

# How the README and `make run` start the service; and plain uvicorn, which some
# operators will use all the same.
SERVE = (sys.executable, "-m", "app.cli", "serve")
PLAIN_UVICORN = (sys.executable, "-m", "uvicorn", "app.main:app")

START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0

# Settings of the service and proxy variables: never inherited from the developer's shell.
# The bench's own settings (BENCH_*) too: it starts its servers through this.
_SCRUBBED_PREFIXES = ("PROTEXTING_", "OPTIN_", "BENCH_")
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}

# `optin serve --log-config`: everything, httpx and httpcore included, at DEBUG to stderr,
# so a test can check what the service would ever log.
_VERBOSE_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
    "root": {"level": "DEBUG", "handlers": ["stderr"]},
}


def free_port() -> int:
    """A port that was free a moment ago; `Server.start` retries if another process takes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class ServerFailed(RuntimeError):
    """A server did not come up; the message carries what it wrote to stderr."""


class WaitTimedOut(AssertionError):
    """`wait_until` ran out of time; the message says what it waited for."""


# Notified whenever any server here writes output or exits: what `wait_until` waits on.
_ACTIVITY = threading.Condition()
_activity_count = 0


def _activity() -> None:
    global _activity_count
    with _ACTIVITY:
        _activity_count += 1
        _ACTIVITY.notify_all()


def wait_until(check: Callable[[], bool], *, timeout: float, what: Callable[[], str] | str) -> None:
    """Return once `check()` is true; raise WaitTimedOut after `timeout` seconds.

    `check` runs at once, then again each time a server here writes something or exits
    (and a last time at the deadline), never on a timer: whatever it reads must change
    only together with some server's output, as a delivery does (the app logs each).
    """
    if not happens(check, within=timeout):
        raise WaitTimedOut(f"timed out after {timeout:g}s waiting for {what if isinstance(what, str) else what()}")


def happens(check: Callable[[], bool], *, within: float) -> bool:
    """Whether `check()` becomes true within `within` seconds (see `wait_until`);
    False after the deadline: for what must NOT happen while a server keeps running."""
    deadline = time.monotonic() + within
    while True:
        with _ACTIVITY:
            seen = _activity_count
        if check():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        with _ACTIVITY:
            _ACTIVITY.wait_for(lambda seen=seen: _activity_count != seen, timeout=left)


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment a server or command starts with: this one without the service's
    settings or a proxy (a stray OPTIN_* or http_proxy must not steer it), plus `extra`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_PREFIXES) and name.lower() not in _PROXY_VARIABLES
    }
    # The venv's `app` package is installed editable, but say where it is all the same:
    # the child runs from a directory that is not the checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Server:
    """One server subprocess on 127.0.0.1; a context manager that starts and stops it.

    `argv` and the values of `env` may contain the placeholder "{port}", filled in at
    each start. `ready_path` is asked with GET until it answers 200 (None: a process
    that serves no HTTP, such as `optin worker`, is ready once spawned). The process
    runs in `workdir`; its output goes to `workdir/NAME.NN.stdout.log` and
    `...stderr.log`, one pair per start.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        ready_path: str | None = "/healthz",
        port: int | None = None,
    ) -> None:
        self.name = name
        self._argv = list(argv)
        self.workdir = workdir
        self.env = dict(env or {})
        self._ready_path = ready_path
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._outputs: list[IO[bytes]] = []
        self._readers: list[threading.Thread] = []
        self._starts = 0
        workdir.mkdir(parents=True, exist_ok=True)

    # -- what a test reads ----------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._process is None else self._process.returncode

    @property
    def stdout(self) -> str:
        """All the process wrote to stdout, over every start so far."""
        return self._read("stdout")

    @property
    def stderr(self) -> str:
        """All the process wrote to stderr, over every start so far."""
        return self._read("stderr")

    def _read(self, stream: str) -> str:
        return "".join(
            path.read_text(encoding="utf-8", errors="replace")
            for path in sorted(self.workdir.glob(f"{self.name}.*.{stream}.log"))
        )

    # -- lifecycle ------------------------------------------------------------------

    def start(self, *, timeout: float = START_TIMEOUT) -> Self:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        for attempt in range(3):
            self._spawn()
            if self._wait_ready(timeout):
                self._fixed_port = True
                return self
            # Another process took the port between free_port() and bind(): try another,
            # but only before the first successful start (a restart keeps its URL).
            if not self._fixed_port and attempt < 2 and "address already in use" in self._last_stderr().lower():
                self.port = free_port()
                continue
            break
        detail = self._last_stderr().strip() or "(nothing on stderr)"
        self.stop()
        raise ServerFailed(
            f"{self.name} did not come up on {self.url} within {timeout:.0f}s "
            f"(exit code {self.returncode}); its stderr:\n{detail}"
        )

    def _spawn(self) -> None:
        self._starts += 1
        self._close_outputs()
        stdout = open(self.workdir / f"{self.name}.{self._starts:02d}.stdout.log", "wb")  # noqa: SIM115
        stderr = open(self.workdir / f"{self.name}.{self._starts:02d}.stderr.log", "wb")  # noqa: SIM115
        self._outputs = [stdout, stderr]
        argv = [part.replace("{port}", str(self.port)) for part in self._argv]
        process = subprocess.Popen(
            argv,
            cwd=self.workdir,
            env=child_environment({k: v.replace("{port}", str(self.port)) for k, v in self.env.items()}),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._process = process
        assert process.stdout is not None and process.stderr is not None
        self._readers = [
            threading.Thread(target=_copy, args=(pipe, log), name=f"{self.name}-{log.name}", daemon=True)
            for pipe, log in ((process.stdout, stdout), (process.stderr, stderr))
        ]
        for reader in self._readers:
            reader.start()

    def _last_stderr(self) -> str:
        path = self.workdir / f"{self.name}.{self._starts:02d}.stderr.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def _wait_ready(self, timeout: float) -> bool:
        if self._ready_path is None:
            return True
        deadline = time.monotonic() + timeout
        process = self._process
        assert process is not None
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get(self.url + self._ready_path).status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                # Not listening yet: wait for the process to exit (it failed: stop
                # here) for at most a moment before asking again. A quiet server (the
                # fake logs nothing) says nothing else about its readiness.
                try:
                    process.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
                self._reap()
                return False
        return False

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, as in a crash."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._reap()

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
        # The pipes end with the process (and anything it started): all it wrote is
        # in the log files before they are closed.
        for reader in self._readers:
            reader.join(STOP_TIMEOUT)
        self._readers = []
        self._close_outputs()
        _activity()

    def _close_outputs(self) -> None:
        for stream in self._outputs:
            stream.close()
        self._outputs = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<Server {self.name} {self.url} {state}>"


def _copy(pipe: IO[bytes], log: IO[bytes]) -> None:
    """Copy a child's output to its log file as it comes, waking `wait_until` each time."""
    with pipe:
        while chunk := pipe.read1(65536):
            log.write(chunk)
            log.flush()
            _activity()
    _activity()


def fake_protexting(
    workdir: Path,
    *,
    token: str | None = None,
    latency_ms: float | None = None,
    rate_limit: str | None = None,
    down: bool = False,
    name: str = "fake",
    port: int | None = None,
) -> Server:
    """The fake ProTexting (`python -m app.sandbox`), not yet started.

    Its API base is `server.url + "/v1"`; `calls(server)` reads what it was asked.
    """
    argv = [sys.executable, "-m", "app.sandbox", "--port", "{port}"]
    if token is not None:
        argv += ["--token", token]
    if latency_ms is not None:
        argv += ["--latency-ms", str(latency_ms)]
    if rate_limit is not None:
        argv += ["--rate-limit", rate_limit]
    if down:
        argv.append("--down")
    return Server(name, argv, workdir=workdir, ready_path="/_fake/calls", port=port)


def app_server(
    workdir: Path,
    *,
    token: str | None = None,
    fake: Server | None = None,
    api_url: str | None = None,
    campaigns: Path = DEMO_CAMPAIGNS,
    public_url: str | None = None,
    secret_key: str | None = "test-secret-key-0123456789",
    env: Mapping[str, str] | None = None,
    log_level: str = "info",
    verbose_logging: bool = False,
    name: str = "app",
    port: int | None = None,
    command: Sequence[str] = SERVE,
) -> Server:
    """The service under `optin serve`, not yet started; sandbox mode when `token` is None.

    `fake` points PROTEXTING_API_URL at a running fake ProTexting; `api_url` at anything
    else. OPTIN_PUBLIC_URL defaults to the server's own URL. `verbose_logging` sends
    every logger, httpx's and httpcore's included, to stderr at DEBUG. Two app servers
    with the same `workdir` and different names run in the same directory. `log_level`
    is OPTIN_LOG_LEVEL; `command` is how the service is started (`SERVE` or
    `PLAIN_UVICORN`), before `--host` and `--port`.
    """
    variables: dict[str, str] = {
        "OPTIN_CAMPAIGNS": str(campaigns),
        "OPTIN_PUBLIC_URL": public_url or f"http://{LOOPBACK}:{{port}}",
    }
    if secret_key is not None:
        variables["OPTIN_SECRET_KEY"] = secret_key
    if token is not None:
        variables["PROTEXTING_ACCESS_TOKEN"] = token
    if fake is not None:
        variables["PROTEXTING_API_URL"] = fake.url + "/v1"
    elif api_url is not None:
        variables["PROTEXTING_API_URL"] = api_url
    variables["OPTIN_LOG_LEVEL"] = log_level
    variables.update(env or {})
    argv = [*command, "--host", LOOPBACK, "--port", "{port}"]
    if verbose_logging:
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / f"{name}.logging.json"
        config.write_text(json.dumps(_VERBOSE_LOGGING), encoding="utf-8")
        argv += ["--log-config", str(config)]
    return Server(name, argv, workdir=workdir, env=variables, port=port)


def calls(fake: Server) -> list[dict[str, object]]:
    """The opt-in request bodies the fake ProTexting has accepted for processing, in order."""
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        response = client.get(fake.url + "/_fake/calls")
    response.raise_for_status()
    return response.json()["calls"]


def set_refusal(fake: Server, body: object) -> None:
    """Have the fake ProTexting answer every call 422 with `body` (None: stop)."""
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        client.post(fake.url + "/_fake/state", json={"refuse": body}).raise_for_status()


def set_down(fake: Server, down: bool) -> None:
    """Switch the fake ProTexting to answer 503 (down) or to work normally (up)."""
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        client.post(fake.url + "/_fake/state", json={"down": down}).raise_for_status()
