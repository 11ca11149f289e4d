"""The package ships itself: the wheel, installed into a fresh venv, serves on its own.

This is how the container image runs the service: the built wheel installed with its
dependencies, started from a directory that holds nothing of the checkout, configured
by environment variables alone. So the pages, the stylesheet and the migrations must
travel inside the installed `app` package.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support.campaigns import CAMPAIGNS
from tests.support.servers import LOOPBACK, ROOT, Server, child_environment
from tests.support.visitor import form_fields
from tests.support.wheel import run


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
    where = run([installed / "python", "-c", "import app; print(app.__file__)"], cwd=empty, env=child_environment(env))
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

            # The compiled catalogs came along: a Spanish reader gets Spanish words.
            missing = client.get("/no-such-page", headers={"accept-language": "es"})
            assert missing.status_code == 404 and "Página no encontrada" in missing.text

            # The migrations came along: the schema made at start-up takes a signup.
            signup = client.post("/JOIN", data=form_fields(page.text, "(201) 555-0123"))
            assert signup.status_code == 303, signup.text
            thanks = client.get(signup.headers["location"])
            assert thanks.status_code == 200
            assert "Corner Bakery" in thanks.text
    finally:
        server.stop()

    # The operator's command, from the same install, finds the same migrations.
    migrated = run([installed / "optin", "migrate"], cwd=empty, env=child_environment(env))
    assert migrated == "database is up to date\n"


def test_the_installed_package_holds_every_module_of_the_checkout(installed: Path) -> None:
    # A subpackage missing from pyproject's list would install without it, and fail
    # only when something first imports it.
    site = next((installed.parent / "lib").glob("python*/site-packages"))
    source = {path.relative_to(ROOT).as_posix() for path in (ROOT / "app").rglob("*.py")}
    shipped = {path.relative_to(site).as_posix() for path in (site / "app").rglob("*.py")}
    assert source - shipped == set()
