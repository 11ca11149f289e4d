"""Debian's chromium, as the browser tests and the bench's page-weight section start it
(through Playwright's `executable_path`: Playwright's own download cannot reach its
servers from these machines)."""

from __future__ import annotations

import os

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
