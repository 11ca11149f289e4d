"""axe-core, the accessibility engine, run in a page: `violations(page)`.

axe-core comes from npm at test time (`npm pack`, into a cache directory of this
machine's, once), not from a copy in the repository: the rules are axe's current ones.
A page with a strict CSP refuses the injected script: open it in a context made with
`bypass_csp=True`."""

from __future__ import annotations

import functools
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

# The major version: its rules and its API (axe.run) are what the tests rely on.
AXE_PACKAGE = "axe-core@4"
CACHE = Path(os.environ.get("OPTIN_AXE_CACHE", Path(tempfile.gettempdir()) / "optin-axe"))


@functools.cache
def axe_script() -> str:
    """The text of axe.min.js, fetched from npm the first time."""
    CACHE.mkdir(parents=True, exist_ok=True)
    packed = sorted(CACHE.glob("axe-core-*.tgz"))
    if not packed:
        subprocess.run(
            ["npm", "pack", AXE_PACKAGE, "--silent", "--pack-destination", str(CACHE)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        packed = sorted(CACHE.glob("axe-core-*.tgz"))
    with tarfile.open(packed[-1]) as archive:
        member = archive.extractfile("package/axe.min.js")
        assert member is not None
        return member.read().decode("utf-8")


def violations(page: Any) -> list[dict[str, Any]]:
    """axe's violations on the page as it stands (WCAG 2.x A and AA, and best practice),
    each with the nodes that break its rule."""
    page.add_script_tag(content=axe_script())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations.map(
            v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html)}))"""
    )
    return found
