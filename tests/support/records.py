"""What the service kept, read back for assertions: as the operator reads it (`optin
status`, `optin export`), as the fake ProTexting received it, and, in-process, once the
signups' outcomes are recorded.

No pytest import at module level: bench/ may read these too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from .campaigns import ROOT
from .servers import Server

OPTIN = Path(sys.executable).with_name("optin")


def optin(
    *args: str, database_url: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the operator's `optin ARGS` with only the settings given here (no `.env` in `cwd`)."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(("OPTIN_", "PROTEXTING_"))}
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    child["OPTIN_DATABASE_URL"] = database_url
    child.update(env or {})
    assert not (cwd / ".env").exists()
    return subprocess.run([str(OPTIN), *args], cwd=cwd, env=child, capture_output=True, text=True, timeout=60)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must succeed cleanly."""
    assert result.returncode == 0, f"exit {result.returncode}; stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def status_counts(database_url: str, cwd: Path) -> dict[tuple[str, str], int]:
    """`optin status`, parsed into {(campaign, state): count}."""
    lines = ok(optin("status", database_url=database_url, cwd=cwd)).strip().splitlines()
    if lines == ["no signups yet"]:
        return {}
    assert lines[0].split() == ["campaign", "state", "count"], lines
    counts = {}
    for line in lines[1:]:
        campaign, state, count = line.split()
        counts[(campaign, state)] = int(count)
    return counts


def exported(database_url: str, cwd: Path) -> list[dict[str, Any]]:
    """The consent records, as `optin export --format jsonl` gives them to the operator."""
    output = ok(optin("export", "--format", "jsonl", database_url=database_url, cwd=cwd))
    return [json.loads(line) for line in output.splitlines()]


def fake_state(fake: Server) -> dict[str, Any]:
    """What the fake ProTexting received: {"calls": [...], "throttled": N}."""
    with httpx.Client(trust_env=False, timeout=5.0) as client:
        response = client.get(fake.url + "/_fake/calls")
    response.raise_for_status()
    return response.json()


def received(fake: Server) -> Counter[str]:
    """How many times the fake ProTexting accepted each number."""
    return Counter(str(call["PhoneNumber"]) for call in fake_state(fake)["calls"])


def settled(client: Any) -> None:
    """Wait until an in-process app (a TestClient, entered) has recorded the outcome of
    every delivery attempt under way: a 303 goes out with ProTexting's answer, and its
    record follows a moment later (`Delivery.settled`)."""
    client.portal.call(client.app.state.resources.delivery.settled)
