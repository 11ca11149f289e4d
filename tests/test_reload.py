"""Hot reload: an edited campaigns file is served without a restart, a broken one is not.

First the watcher's rules on real files, then the service as a real server on loopback,
reloaded by SIGHUP and by the modification time, with a fake ProTexting as a real
server: pages, stored disclosures, the last good campaigns kept, and the queued signup
of a campaign that was removed still delivered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from app.campaigns import Campaign, load_campaigns
from app.reload import CampaignsWatcher, signature
from tests.support.campaigns import CAMPAIGNS, write_campaigns
from tests.support.page import Page
from tests.support.records import received
from tests.support.servers import app_server, fake_protexting, set_down, wait_until
from tests.support.visitor import Visitor, form_action, form_fields

from .conftest import MakeClient

pytestmark = pytest.mark.anyio

NEW = CAMPAIGNS.replace("[campaigns.JOIN]", "[campaigns.NEW]").replace("Get our deals by text", "Fresh bread alerts")
# The same campaign with a key of the wrong type: start-up would refuse this file.
BROKEN = NEW.replace("group_ids = [7, 9]", 'group_ids = "seven"')


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _touch(path: Path, text: str) -> None:
    """Rewrite `path` with a modification time clearly unlike the one it had: two
    writes within the file system's time granularity would otherwise look the same."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


class Installed:
    """What the watcher put in place, in order; `fail` makes the next install raise."""

    def __init__(self) -> None:
        self.keywords: list[list[str]] = []
        self.fail = False
        self.event = asyncio.Event()

    async def __call__(self, campaigns: dict[str, Campaign]) -> None:
        if self.fail:
            self.fail = False
            raise OSError("database is locked")
        self.keywords.append(sorted(c.keyword for c in campaigns.values()))
        self.event.set()


def _watcher(path: Path, installed: Installed, *, interval: float = 0) -> CampaignsWatcher[dict[str, Campaign]]:
    return CampaignsWatcher(
        path, lambda: dict(load_campaigns(path)), installed, interval=interval, loaded=signature(path)
    )


async def test_an_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path = write_campaigns(tmp_path)
    installed = Installed()
    watcher = _watcher(path, installed)
    assert await watcher.check() is False
    assert installed.keywords == []


async def test_a_changed_file_replaces_the_campaigns(tmp_path: Path) -> None:
    path = write_campaigns(tmp_path)
    installed = Installed()
    watcher = _watcher(path, installed)
    _touch(path, NEW)
    assert await watcher.check() is True
    assert installed.keywords == [["NEW"]]
    # Once: the same version is not put in place twice.
    assert await watcher.check() is False


async def test_a_broken_file_keeps_the_last_good_campaigns_and_says_what_to_fix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_campaigns(tmp_path)
    installed = Installed()
    watcher = _watcher(path, installed)
    _touch(path, BROKEN)
    with caplog.at_level(logging.ERROR, logger="app.reload"):
        assert await watcher.check() is False
        assert await watcher.check() is False
    assert installed.keywords == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    # Once, however many checks see the same broken file; naming file, campaign and key.
    assert len(errors) == 1, errors
    assert str(path) in errors[0] and "NEW" in errors[0] and "group_ids" in errors[0]
    assert "last good campaigns keep serving" in errors[0]
    # Fixed: put in place at the next check.
    _touch(path, NEW)
    assert await watcher.check() is True
    assert installed.keywords == [["NEW"]]


async def test_an_install_that_failed_is_tried_again(tmp_path: Path) -> None:
    path = write_campaigns(tmp_path)
    installed = Installed()
    watcher = _watcher(path, installed)
    _touch(path, NEW)
    installed.fail = True
    assert await watcher.check() is False
    assert installed.keywords == []
    # The file has not changed since, but its campaigns are not in place yet.
    assert await watcher.check() is True
    assert installed.keywords == [["NEW"]]


async def test_a_request_reloads_at_once_even_when_the_file_looks_unchanged(tmp_path: Path) -> None:
    path = write_campaigns(tmp_path)
    installed = Installed()
    # No polling at all: only the request (SIGHUP) can make it reload.
    watcher = _watcher(path, installed, interval=0)
    running = asyncio.create_task(watcher.run())
    try:
        watcher.request()
        await asyncio.wait_for(installed.event.wait(), timeout=10)
    finally:
        running.cancel()
    assert installed.keywords == [["JOIN"]]


async def test_the_file_is_looked_at_every_interval(tmp_path: Path) -> None:
    path = write_campaigns(tmp_path)
    installed = Installed()
    watcher = _watcher(path, installed, interval=0.01)
    running = asyncio.create_task(watcher.run())
    try:
        _touch(path, NEW)
        await asyncio.wait_for(installed.event.wait(), timeout=10)
    finally:
        running.cancel()
    assert installed.keywords == [["NEW"]]


def _disclosures(workdir: Path) -> list[str]:
    with sqlite3.connect(workdir / "var" / "optin.db") as db:
        return [row[0] for row in db.execute("SELECT text FROM disclosures")]


def _title(client: httpx.Client, path: str) -> tuple[int, str]:
    response = client.get(path)
    return response.status_code, response.text


def test_sighup_reloads_the_running_service(tmp_path: Path) -> None:
    campaigns = write_campaigns(tmp_path / "config")
    env = {"OPTIN_MIN_FILL_SECONDS": "0", "OPTIN_RELOAD_SECONDS": "0", "OPTIN_RETRY_BASE_SECONDS": "0.05"}
    with (
        fake_protexting(tmp_path, token="t0k3n", down=True) as fake,
        app_server(tmp_path, token="t0k3n", fake=fake, campaigns=campaigns, env=env) as app,
        httpx.Client(base_url=app.url, trust_env=False, timeout=10.0) as client,
    ):
        # A signup of JOIN waits: ProTexting is down.
        assert Visitor(client).submit("(201) 555-0123").status_code == 303
        assert app.pid is not None

        # JOIN goes, NEW comes: no polling here (OPTIN_RELOAD_SECONDS=0), SIGHUP does it.
        _touch(campaigns, NEW.replace("Corner Bakery Deals", "Corner Bakery Bread"))
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: "campaigns reloaded" in app.stderr, timeout=30, what="the reload")
        assert client.get("/JOIN").status_code == 404
        status, page = _title(client, "/NEW")
        assert status == 200 and "Fresh bread alerts" in page
        # Its disclosure was stored before the page could show it.
        assert any("Corner Bakery Bread" in text for text in _disclosures(tmp_path))

        # A broken file: the last good campaigns keep serving, the operator is told why.
        _touch(campaigns, BROKEN)
        os.kill(app.pid, signal.SIGHUP)
        wait_until(lambda: "not reloaded" in app.stderr, timeout=30, what="the refused reload")
        error = next(line for line in app.stderr.splitlines() if "not reloaded" in line)
        assert "ERROR" in error and str(campaigns) in error and "NEW" in error and "group_ids" in error
        status, page = _title(client, "/NEW")
        assert status == 200 and "Fresh bread alerts" in page

        # The signup of the campaign that is gone is still delivered once ProTexting is back.
        set_down(fake, False)
        wait_until(lambda: received(fake)["12015550123"] == 1, timeout=30, what="the delivery")
        assert app.running


def test_an_edit_is_picked_up_without_a_signal(tmp_path: Path) -> None:
    campaigns = write_campaigns(tmp_path / "config")
    env = {"OPTIN_RELOAD_SECONDS": "0.2"}
    with (
        app_server(tmp_path, campaigns=campaigns, env=env) as app,
        httpx.Client(base_url=app.url, trust_env=False, timeout=10.0) as client,
    ):
        assert client.get("/NEW").status_code == 404
        _touch(campaigns, NEW)
        wait_until(lambda: "campaigns reloaded" in app.stderr, timeout=30, what="the reload")
        status, page = _title(client, "/NEW")
        assert status == 200 and "Fresh bread alerts" in page


def _records(client: TestClient) -> list[dict[str, object]]:
    async def read() -> list[dict[str, object]]:
        return [row async for row in client.app.state.resources.delivery.outbox.export()]

    return client.portal.call(read)  # type: ignore[no-any-return]


def test_a_form_from_a_page_whose_disclosure_changed_is_shown_again_before_it_counts(
    make_client: MakeClient, tmp_path: Path
) -> None:
    campaigns = write_campaigns(tmp_path / "config")
    client = make_client(campaigns=campaigns)
    opened = client.get("/JOIN").text
    # The business edits the disclosure while a person has the page open.
    _touch(campaigns, CAMPAIGNS.replace("Up to 4 msgs/month", "Up to 8 msgs/month"))
    assert client.portal.call(client.app.state.reloader.check) is True

    again = client.post(form_action(opened), data=form_fields(opened, "(201) 555-0123"))
    # Not recorded as consent to a text the person never saw: the new one, to read first.
    assert again.status_code == 200 and "updated while it was open" in again.text
    assert "Up to 8 msgs/month" in again.text and Page(again.text).phone_input().attrs["value"] == "(201) 555-0123"
    assert _records(client) == []
    sent = client.post(form_action(again.text), data=form_fields(again.text, "(201) 555-0123"))
    assert sent.status_code == 303
    (record,) = _records(client)
    assert "Up to 8 msgs/month" in str(record["disclosure_text"])

    # A change that leaves the disclosure as it was does not ask again.
    opened = client.get("/JOIN").text
    _touch(campaigns, campaigns.read_text().replace("Get our deals by text", "Deals by text"))
    assert client.portal.call(client.app.state.reloader.check) is True
    assert client.post(form_action(opened), data=form_fields(opened, "(201) 555-0124")).status_code == 303
