"""What a serving process leaves out of its memory until something needs it.

make bench holds the server's RSS after a burst to 100 MB, and a library imported
"just in case" stays for the life of the process. These are the ones only some
deployments use: Alembic (a schema to upgrade; test_cli checks it), segno (QR codes),
argon2 (the operator console) and httpx's own network stack (the CAPTCHA check; the
ProTexting client runs over aiohttp). The process runs on its own: this one has them
all imported already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.campaigns import DEMO_CAMPAIGNS
from tests.support.records import ok, optin
from tests.support.servers import ROOT, child_environment

# A page view and a signup through the app as `optin serve` builds it, then the
# libraries of those four that the process had imported.
_SERVE = """
import sys
from starlette.testclient import TestClient
from app.main import app
from tests.support.visitor import form_fields

with TestClient(app, base_url="http://optin.test") as client:
    page = client.get("/JOIN")
    assert page.status_code == 200, page.status_code
    fields = form_fields(page.text, phone="(201) 555-0142")
    thanks = client.post("/JOIN", data=fields, follow_redirects=False)
    assert thanks.status_code == 303, (thanks.status_code, thanks.text[:500])
    if "--qr" in sys.argv:
        assert client.get("/qr/JOIN.svg").status_code == 200
watched = ("alembic", "segno", "argon2", "httpcore")
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & set(watched))))
"""


def _serve(tmp_path: Path, *args: str) -> str:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    ok(optin("migrate", database_url=database_url, cwd=tmp_path))
    env = child_environment(
        {
            "OPTIN_DATABASE_URL": database_url,
            "OPTIN_CAMPAIGNS": str(DEMO_CAMPAIGNS),
            "OPTIN_SECRET_KEY": "footprint-signing-key-0123456789",
            "OPTIN_MIN_FILL_SECONDS": "0",
        }
    )
    result = subprocess.run(
        [sys.executable, "-c", _SERVE, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


def test_a_page_view_and_a_signup_load_none_of_the_libraries_some_deployments_need(tmp_path: Path) -> None:
    assert _serve(tmp_path) == ""


def test_the_first_qr_code_loads_segno(tmp_path: Path) -> None:
    # The other side of the same check: the list above would be empty for a process
    # that could not see those imports at all.
    assert _serve(tmp_path, "--qr") == "segno"
