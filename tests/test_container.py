"""The container image and the compose stack, checked on machines with no Docker engine.

The image is never built here, so what it does is done instead: the wheel built and
installed into a fresh venv (tests/support/wheel.py, as the Dockerfile's two stages
do), the image's ENTRYPOINT, CMD, ENV and HEALTHCHECK read from the Dockerfile with
BuildKit's own parser (the `dockerfile` package), and that command run from an empty
directory configured by the environment alone, then stopped as `docker stop` stops it.
compose.yaml is read with PyYAML: every setting it and .env.example give is loaded by
`Settings`, and every command it runs is parsed by `optin`'s own parser.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import dockerfile
import httpx
import pytest
import yaml
from dotenv import dotenv_values
from sqlalchemy.engine import make_url

from app.cli import _parser
from app.settings import Settings, load_settings
from tests.support.campaigns import CAMPAIGNS, ROOT
from tests.support.servers import Server, child_environment
from tests.support.wheel import run

# `docker stop` waits this long after SIGTERM before it sends SIGKILL.
DOCKER_STOP_SECONDS = 10.0

# Every environment name a setting has (each field has exactly one: README, "Settings").
SETTING_NAMES = {f.validation_alias: name for name, f in Settings.model_fields.items()}
SETTING_PREFIXES = ("OPTIN_", "PROTEXTING_")
SECRETS = ("PROTEXTING_ACCESS_TOKEN", "OPTIN_SECRET_KEY", "POSTGRES_PASSWORD")


# -- the Dockerfile ------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One FROM and the instructions under it."""

    base: str
    name: str | None
    commands: tuple[dockerfile.Command, ...]

    def each(self, instruction: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == instruction]

    def last(self, instruction: str) -> dockerfile.Command:
        found = self.each(instruction)
        assert found, f"the stage FROM {self.base} has no {instruction}"
        return found[-1]


@functools.cache
def _stages() -> tuple[Stage, ...]:
    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            base, *alias = command.value
            stages.append(Stage(base, alias[1] if alias else None, ()))
        else:
            assert stages, f"{command.original!r} comes before any FROM"
            last = stages[-1]
            stages[-1] = Stage(last.base, last.name, (*last.commands, command))
    return tuple(stages)


@dataclass(frozen=True)
class Image:
    """What a container of the final stage starts with."""

    argv: list[str]  # ENTRYPOINT + CMD, as Docker joins them
    env: dict[str, str]
    workdir: str
    healthcheck: list[str]


def _exec_form(command: dockerfile.Command) -> list[str]:
    # The exec form (a JSON array) runs the program itself as PID 1; the shell form would
    # put /bin/sh in between, and sh does not pass docker stop's SIGTERM on.
    assert command.json, f"{command.original!r} must be in exec form (a JSON array), not run by a shell"
    return list(command.value)


def _image() -> Image:
    final = _stages()[-1]
    env: dict[str, str] = {}
    for command in final.each("ENV"):
        pairs = command.value
        env.update(zip(pairs[::2], pairs[1::2], strict=True))
    health = final.last("HEALTHCHECK")
    kind, *probe = health.value
    assert kind == "CMD" and health.json, f"{health.original!r}: HEALTHCHECK CMD in exec form"
    return Image(
        argv=_exec_form(final.last("ENTRYPOINT")) + _exec_form(final.last("CMD")),
        env=env,
        workdir=final.last("WORKDIR").value[0],
        healthcheck=probe,
    )


def test_the_image_is_a_slim_python_that_installs_the_built_wheel_and_runs_as_its_own_user() -> None:
    *builds, final = _stages()
    for stage in (*builds, final):
        # An official slim Python, its tag naming the minor version (never `latest`).
        assert re.fullmatch(r"python:3\.1[1-9]-slim(-[a-z]+)?", stage.base), stage.base

    # The build stage makes the wheel, and only this project's.
    (build,) = [s for s in builds if any("pip wheel" in c.value[0] for c in s.each("RUN"))]
    (wheel,) = [c.value[0] for c in build.each("RUN") if "pip wheel" in c.value[0]]
    assert "--no-deps" in wheel.split()

    # The final stage takes nothing from the build context: the wheel from the build
    # stage, no source tree, and no compiler or package manager install.
    assert not final.each("ADD")
    for copy in final.each("COPY"):
        assert any(flag.startswith("--from=") for flag in copy.flags), f"{copy.original!r} copies the source tree"
    installs = [c for c in final.each("RUN") if "pip install" in c.value[0]]
    assert len(installs) == 1, [c.original for c in installs]
    (install,) = installs
    assert f"from={build.name}" in ",".join(install.flags), f"{install.original!r}: the wheel from the build stage"
    packages = [arg for arg in install.value[0].split("pip install", 1)[1].split() if not arg.startswith("-")]
    assert packages and all(arg.endswith(".whl") for arg in packages), f"installs more than the wheel: {packages}"
    for run_ in final.each("RUN"):
        assert not re.search(r"\b(apt-get|apt|apk)\b.*\binstall\b|\b(gcc|build-essential)\b", run_.value[0]), (
            run_.original
        )

    # A user of its own, made in the image, and the last word on who runs.
    user = final.last("USER").value[0].split(":")[0]
    assert user not in ("root", "0")
    made = " ".join(c.value[0] for c in final.each("RUN") if "useradd" in c.value[0])
    assert f"--uid {user}" in made or re.search(rf"useradd\b.*\b{re.escape(user)}\b", made), made
    assert final.commands.index(final.last("USER")) > max(final.commands.index(c) for c in final.each("RUN"))

    # Liveness on /healthz, and an exec-form command (both checked by _image).
    image = _image()
    assert "/healthz" in " ".join(image.healthcheck)
    assert image.argv[:2] == ["optin", "serve"]


def test_the_build_context_is_an_allow_list_that_keeps_secrets_and_data_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is left out unless named"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert allowed.isdisjoint({".env", ".venv", "var", ".git"})
    # Whatever the build stage copies is allowed in; nothing else is there to copy.
    copied = {
        PurePosixPath(source).parts[0]
        for stage in _stages()
        for copy in stage.each("COPY")
        if not any(flag.startswith("--from=") for flag in copy.flags)
        for source in copy.value[:-1]
    }
    assert copied == allowed


def _in_root(value: str, root: Path, image_dirs: set[str]) -> str:
    """An image path in `value` moved under `root`, where this test mounts what a
    container would have mounted there."""
    for directory in sorted(image_dirs, key=len, reverse=True):
        value = value.replace(directory, f"{root}{directory}")
    return value


def test_the_image_command_serves_a_campaign_from_an_empty_directory_and_stops_on_sigterm(
    installed: Path, tmp_path: Path
) -> None:
    image = _image()
    # The container's filesystem, as far as the service sees it: the WORKDIR (empty) and
    # the campaigns file where the image expects it, mounted as the README says.
    root = tmp_path / "root"
    campaigns_at = image.env["OPTIN_CAMPAIGNS"]
    image_dirs = {image.workdir, str(PurePosixPath(campaigns_at).parent)}
    workdir = Path(_in_root(image.workdir, root, image_dirs))
    workdir.mkdir(parents=True)
    campaigns = Path(_in_root(campaigns_at, root, image_dirs))
    campaigns.parent.mkdir(parents=True)
    campaigns.write_text(CAMPAIGNS, encoding="utf-8")

    env = {name: _in_root(value, root, image_dirs) for name, value in image.env.items()}
    env |= {
        # The image's python and optin are first on its PATH, as /usr/local/bin is there.
        "PATH": f"{installed}{os.pathsep}{os.environ['PATH']}",
        # Only the installed package, not the checkout.
        "PYTHONPATH": "",
        # In a container the service has port 8000 to itself; here it takes a free one.
        "OPTIN_PORT": "{port}",
    }
    assert "PROTEXTING_ACCESS_TOKEN" not in env  # sandbox mode: nothing leaves this machine
    server = Server("image", image.argv, workdir=workdir, env=env)
    probe_env = child_environment({name: value.replace("{port}", str(server.port)) for name, value in env.items()})

    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run(image.healthcheck, cwd=workdir, env=probe_env, capture_output=True, text=True, timeout=30)

    # A first start compiles every module of the fresh install: more time than usual.
    server.start(timeout=90)
    try:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10.0) as client:
            assert client.get("/healthz").status_code == 200
            page = client.get("/join")
            assert page.status_code == 200
            assert "Get our deals by text" in page.text

        health = probe()
        assert health.returncode == 0, health.stderr

        # The schema was made at start-up, in the database the image's ENV names (the
        # data volume's), and `docker exec CONTAINER optin status` reads it.
        database = Path(make_url(env["OPTIN_DATABASE_URL"]).database or "")
        assert database.is_relative_to(workdir) and database.exists()
        status = run([image.argv[0], "status"], cwd=workdir, env=probe_env)
        assert status == "no signups yet\n"

        # docker stop: SIGTERM, and SIGKILL if the process is still there after 10 s.
        server.stop(timeout=DOCKER_STOP_SECONDS)
    finally:
        server.stop()
    assert server.returncode == 0, f"exit {server.returncode} on SIGTERM; stderr:\n{server.stderr}"
    assert "Application shutdown complete." in server.stderr
    assert "Traceback" not in server.stderr

    # Nothing listening: the same probe says so.
    assert probe().returncode != 0


# -- compose.yaml and .env.example -----------------------------------------------------

_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[?-])(?P<arg>[^}]*))?\}")


def _compose_text() -> str:
    return (ROOT / "compose.yaml").read_text(encoding="utf-8")


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(_compose_text())
    assert isinstance(data, dict)
    return data


def _example_env() -> dict[str, str]:
    """.env.example as compose reads it, each value compose requires (`${NAME:?...}`)
    that is blank there filled with a placeholder, as the operator fills it in."""
    values = {name: value or "" for name, value in dotenv_values(ROOT / ".env.example").items()}
    required = {m["name"] for m in _REFERENCE.finditer(_compose_text()) if m["op"] == "?"}
    assert required <= values.keys(), f"compose.yaml requires {sorted(required - values.keys())}, not in .env.example"
    return {
        name: value or (f"placeholder{name.lower()}0123456789" if name in required else "")
        for name, value in values.items()
    }


def _interpolate(value: object, env: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, from the .env file."""
    text = str(value)
    assert "$" not in _REFERENCE.sub("", text.replace("$$", "")), f"{text!r}: only ${{NAME...}} references"

    def fill(match: re.Match[str]) -> str:
        found = env.get(match["name"], "")
        if not found and match["op"] == "?":
            raise AssertionError(f"compose would stop: {match['arg']}")
        return found or (match["arg"] if match["op"] == "-" else "")

    return _REFERENCE.sub(fill, text).replace("$$", "$")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    declared = service.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    return {str(name): "" if value is None else str(value) for name, value in declared.items()}


def _runs_image(service: dict[str, Any]) -> bool:
    return service.get("build") in (".", {"context": "."})


def _argv(service: dict[str, Any]) -> list[str]:
    """What a container of the service runs: the image's ENTRYPOINT with the service's
    command, or with the image's CMD when it has none."""
    image = _image()
    command = service.get("command")
    if command is None:
        return image.argv
    assert isinstance(command, list), f"{command!r}: a list, so no shell parses it"
    return [image.argv[0], *command]


def _container_env(service: dict[str, Any]) -> dict[str, str]:
    """A container's environment: the image's ENV, then env_file, then environment."""
    example = _example_env()
    assert service.get("env_file") in (".env", [".env"]), "the secrets come from .env"
    return (
        _image().env | example | {name: _interpolate(value, example) for name, value in _environment(service).items()}
    )


def test_every_setting_the_stack_gives_is_one_the_service_loads(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _compose()["services"]
    given = set(_example_env()) | {name for s in services.values() for name in _environment(s)}
    for name in sorted(given):
        if name.startswith(SETTING_PREFIXES):
            assert name in SETTING_NAMES, f"{name} is set but is no setting: the service would ignore it"

    image_services = {name: s for name, s in services.items() if _runs_image(s)}
    assert image_services
    for name, service in image_services.items():
        with monkeypatch.context() as patch:
            for variable, value in _container_env(service).items():
                patch.setenv(variable, value)
            settings = load_settings()
        assert make_url(settings.database_url).get_backend_name() == "postgresql", name
        assert settings.redis_url is not None, name
        assert settings.secret_key is not None, f"{name}: every replica needs the same OPTIN_SECRET_KEY"
        assert str(settings.campaigns_path) == _image().env["OPTIN_CAMPAIGNS"]
        assert f"./campaigns.toml:{settings.campaigns_path}:ro" in service["volumes"], name


def test_the_stack_keeps_its_secrets_in_the_env_file() -> None:
    for name, service in _compose()["services"].items():
        for variable, value in _environment(service).items():
            if variable in SECRETS:
                assert _REFERENCE.fullmatch(value) and _REFERENCE.fullmatch(value)["name"] == variable, (
                    f"{name}: {variable} is written in compose.yaml; it belongs in .env"
                )
            if variable == "OPTIN_DATABASE_URL":
                assert _REFERENCE.fullmatch(make_url(value).password or ""), f"{name}: the password belongs in .env"
    example = dotenv_values(ROOT / ".env.example")
    for variable in ("OPTIN_SECRET_KEY", "POSTGRES_PASSWORD"):
        assert example[variable] == "", f".env.example must not carry a {variable} anyone could reuse"
    assert ".env" in (ROOT / ".gitignore").read_text(encoding="utf-8").split()


def test_the_stack_runs_two_web_replicas_a_worker_and_a_migration_they_wait_for(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _compose()["services"]
    image_services = {name: s for name, s in services.items() if _runs_image(s)}
    commands = {name: _argv(s) for name, s in image_services.items()}
    for name, argv in commands.items():
        assert argv[0] == "optin", argv
        # optin's own parser: a command or option that does not exist fails here.
        try:
            _parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{name}: {' '.join(argv)!r} is not an optin command (its error is above)")
    by_command = {name: argv[1] for name, argv in commands.items()}

    (web,) = [name for name, command in by_command.items() if command == "serve"]
    (worker,) = [name for name, command in by_command.items() if command == "worker"]
    (migrate,) = [name for name, command in by_command.items() if command == "migrate"]
    assert services[web]["deploy"]["replicas"] == 2
    assert services[migrate]["restart"] == "no"

    # The web replicas leave the backlog to the worker.
    with monkeypatch.context() as patch:
        for variable, value in _container_env(services[web]).items():
            patch.setenv(variable, value)
        assert load_settings().run_worker is False

    # Only `optin serve` answers the image's HTTP healthcheck.
    for name in (worker, migrate):
        assert services[name]["healthcheck"] == {"disable": True}, name

    def waits_for(name: str) -> dict[str, str]:
        return {other: rule["condition"] for other, rule in services[name]["depends_on"].items()}

    assert waits_for(migrate) == {"postgres": "service_healthy"}
    for name in (web, worker):
        assert waits_for(name) == {
            migrate: "service_completed_successfully",
            "postgres": "service_healthy",
            "redis": "service_healthy",
        }, name

    postgres, redis = services["postgres"], services["redis"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-[a-z]+)?", postgres["image"])
    assert "pg_isready" in postgres["healthcheck"]["test"]
    (data,) = [v for v in postgres["volumes"] if v.endswith(":/var/lib/postgresql/data")]
    assert data.split(":")[0] in _compose()["volumes"], "a named volume"
    assert re.fullmatch(r"redis:\d+(\.\d+)?(-[a-z]+)?", redis["image"])
    assert "redis-cli" in redis["healthcheck"]["test"]


def test_the_web_replicas_trust_the_proxy_in_front_of_them_and_nothing_else(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = _compose()
    services = compose["services"]
    caddy = services["caddy"]
    (network, attached), *_ = caddy["networks"].items()
    address = ipaddress.ip_address(attached["ipv4_address"])
    (subnet,) = [ipaddress.ip_network(c["subnet"]) for c in compose["networks"][network]["ipam"]["config"]]
    assert address in subnet
    with monkeypatch.context() as patch:
        for variable, value in _container_env(services["web"]).items():
            patch.setenv(variable, value)
        trusted = load_settings().trusted_proxies
    assert trusted == (ipaddress.ip_network(address),)
    assert network in services["web"]["networks"]
    # The proxy serves the address people open, from .env.
    assert "${OPTIN_PUBLIC_URL:?" in compose["configs"]["caddyfile"]["content"]
