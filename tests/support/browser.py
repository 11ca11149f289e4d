"""Debian's chromium, as the browser tests and the bench's page-weight section start it
(through Playwright's `executable_path`: Playwright's own download cannot reach its
servers from these machines)."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from playwright.sync_api import Browser, expect, sync_playwright

from .servers import LOOPBACK

CHROMIUM = os.environ.get("OPTIN_CHROMIUM", "/usr/bin/chromium")
# How long an `expect(...)` waits for what it expects (Playwright's default is 5 s). A
# bound on a wait for an event, not a sleep: a passing test never waits it out. On a
# 2-core CI machine running the whole suite a navigation has taken longer than 5 s.
EXPECT_TIMEOUT_MS = 20_000
# Without the background-networking switches chromium calls Google's hosts at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


class HostSite:
    """Another site on loopback, a shop's own: it serves `pages` (path to HTML bytes,
    filled in once the app's address is known) on another port, so another origin to
    the browser. A context manager: the server runs inside the `with`.

        with HostSite() as shop:
            shop.pages["/"] = b"<!doctype html>..."
            page.goto(shop.origin + "/")
    """

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.origin = f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, through Playwright (see the module's docstring)."""
    assert os.access(CHROMIUM, os.X_OK), f"no chromium at {CHROMIUM}: run make test"
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
