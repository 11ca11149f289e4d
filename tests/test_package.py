"""The package ships itself: the wheel, installed into a fresh venv, serves on its own.

This is how the container image runs the service: the built wheel installed with its
dependencies, started from a directory that holds nothing of the checkout, configured
by environment variables alone. So the pages, the stylesheet and the migrations must
travel inside the installed `app` package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.campaigns import CAMPAIGNS
from tests.support.servers import LOOPBACK, ROOT, Server, _child_environment
from tests.support.visitor import form_fields

# What the build must not see: a stale build/lib would slip old files into the wheel.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "var", ".*_cache", ".hypothesis"
)


def _run(argv: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(part) for part in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv holding the wheel built from this checkout."""
    source = tmp_path_factory.mktemp("source") / "optin-pages"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_SOURCE)
    wheels = tmp_path_factory.mktemp("wheels")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", wheels, source], cwd=source)
    (wheel,) = wheels.glob("optin_pages-*.whl")

    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=venv)
    # This venv's pip installs into the new one; no bytecode, to keep the test quick.
    _run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--quiet", "--no-compile", wheel],
        cwd=venv,
    )
    return venv / "bin"


def test_the_installed_wheel_serves_a_campaign_page_from_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "campaigns.toml").write_text(CAMPAIGNS, encoding="utf-8")
    # The working directory: nothing in it but what the server writes (its logs).
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {
        "OPTIN_CAMPAIGNS": str(config / "campaigns.toml"),
        "OPTIN_DATABASE_URL": f"sqlite+aiosqlite:///{config / 'optin.db'}",
        "OPTIN_MIN_FILL_SECONDS": "0",  # a script, not a person: no pause to wait out
        # Only the installed package, not the checkout (an empty PYTHONPATH adds nothing).
        "PYTHONPATH": "",
    }
    where = _run(
        [installed / "python", "-c", "import app; print(app.__file__)"], cwd=empty, env=_child_environment(env)
    )
    assert Path(where.strip()).is_relative_to(installed.parent)

    server = Server(
        "packaged",
        [str(installed / "python"), "-m", "uvicorn", "app.main:app", "--no-proxy-headers", "--host", LOOPBACK, "--port", "{port}"],
        workdir=empty,
        env={**env, "OPTIN_PUBLIC_URL": f"http://{LOOPBACK}:{{port}}"},
    )  # fmt: skip
    # A first start compiles every module of the fresh install: more time than usual.
    server.start(timeout=90)
    try:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=10.0) as client:
            page = client.get("/join")
            assert page.status_code == 200
            assert "Get our deals by text" in page.text
            (stylesheet,) = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
            css = client.get(stylesheet)
            assert css.status_code == 200
            assert css.headers["content-type"].startswith("text/css")
            assert css.text == (ROOT / "static" / "style.css").read_text(encoding="utf-8")

            # The migrations came along: the schema made at start-up takes a signup.
            signup = client.post("/JOIN", data=form_fields(page.text, "(201) 555-0123"))
            assert signup.status_code == 303, signup.text
            thanks = client.get(signup.headers["location"])
            assert thanks.status_code == 200
            assert "Corner Bakery" in thanks.text
    finally:
        server.stop()

    # The operator's command, from the same install, finds the same migrations.
    migrated = _run([installed / "optin", "migrate"], cwd=empty, env=_child_environment(env))
    assert migrated == "database is up to date\n"
