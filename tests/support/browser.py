"""Debian's chromium, as the browser tests and the bench's page-weight section start it
(through Playwright's `executable_path`: Playwright's own download cannot reach its
servers from these machines)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = os.environ.get("OPTIN_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking switches chromium calls Google's hosts at start-up.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's chromium, headless, for as long as the block runs (a module's tests)."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        raise FileNotFoundError(f"No chromium at {CHROMIUM}: run `make test` (it installs it) or set OPTIN_CHROMIUM")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
