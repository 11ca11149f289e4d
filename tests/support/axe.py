"""axe-core, the accessibility engine, for the browser tests: fetched from npm at test
time (never shipped), kept in the user's cache between runs.

    source = axe_source()                  # axe.min.js's text
    violations = run_axe(page, source)     # on a Playwright page: [] when it passes
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_VERSION = "4.10.2"
# WCAG 2.0, 2.1 and 2.2 at levels A and AA, and axe's best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]


def _cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "optin-pages" / f"axe-core-{AXE_VERSION}"


def axe_source() -> str:
    """axe.min.js of AXE_VERSION, installed with npm into the cache when not there yet."""
    folder = _cache()
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if not script.is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                "npm is needed to fetch axe-core for the accessibility tests (Debian: apt-get install npm)"
            )
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(folder),
                "--no-audit",
                "--no-fund",
                "--silent",
                "-E",
                f"axe-core@{AXE_VERSION}",
            ],
            check=True,
            timeout=300,
        )
    return script.read_text(encoding="utf-8")


def run_axe(page: Page, source: str) -> list[dict[str, Any]]:
    """axe's violations on the page as it stands, each with its rule, impact and nodes."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=source)
    result: dict[str, Any] = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})", AXE_TAGS
    )
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [(n["target"], n.get("failureSummary", "")) for n in v["nodes"]],
        }
        for v in result["violations"]
    ]
