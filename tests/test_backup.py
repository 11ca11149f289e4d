"""`optin backup PATH`: a copy of the SQLite database, taken while the service runs and
writes, that restores every signup it held; PostgreSQL is pointed at pg_dump, the live
database is never overwritten, and a failed backup leaves PATH as it was."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import httpx

from tests.support.campaigns import write_campaigns
from tests.support.records import exported, ok, optin, status_counts
from tests.support.servers import app_server
from tests.support.visitor import Visitor

# One address and one block of numbers: the abuse limits are not what this is about.
NO_LIMITS = {
    "OPTIN_LIMIT_PER_IP": "",
    "OPTIN_LIMIT_PER_PREFIX": "",
    "OPTIN_MIN_FILL_SECONDS": "0",
    "PROTEXTING_RATE_LIMIT": "100000/minute",
}


def _phone(n: int) -> str:
    return f"(201) 555-{200 + n:04d}"  # past 555-0100..0104, the sandbox's test numbers


def _digits(n: int) -> str:
    return f"1201555{200 + n:04d}"


def test_a_backup_taken_while_the_service_takes_signups_restores_them(tmp_path: Path) -> None:
    live = tmp_path / "var" / "optin.db"
    url = f"sqlite+aiosqlite:///{live}"
    env = NO_LIMITS | {"OPTIN_DATABASE_URL": url}
    backup = tmp_path / "backups" / "optin-backup.db"
    backup.parent.mkdir()
    with (
        app_server(tmp_path, campaigns=write_campaigns(tmp_path), env=env) as app,
        httpx.Client(base_url=app.url, trust_env=False, timeout=10.0) as client,
    ):
        before = [Visitor(client).submit(_phone(n)) for n in range(5)]
        assert [answer.status_code for answer in before] == [303] * 5

        # Signups keep coming while the backup is taken.
        stop, writing, during = threading.Event(), threading.Event(), []

        def keep_signing_up() -> None:
            with httpx.Client(base_url=app.url, trust_env=False, timeout=10.0) as other:
                n = 5
                while not stop.is_set() and n < 9000:
                    during.append(Visitor(other).submit(_phone(n)).status_code)
                    writing.set()
                    n += 1

        writer = threading.Thread(target=keep_signing_up)
        writer.start()
        try:
            assert writing.wait(timeout=30)
            answered_before = len(during)
            done = ok(optin("backup", str(backup), database_url=url, cwd=tmp_path))
            answered_after = len(during)
        finally:
            stop.set()
            writer.join()
        assert done == f"backed up {live} to {backup}\n"
    assert set(during) == {303}
    assert answered_after > answered_before  # the service kept writing meanwhile

    # One file, readable by its owner only, a sound database without a -wal beside it.
    assert sorted(p.name for p in backup.parent.iterdir()) == [backup.name]
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Restored: the backup as OPTIN_DATABASE_URL. Every signup answered before it began
    # is there; the later ones as far as it got, none more than were made.
    restored = f"sqlite+aiosqlite:///{backup}"
    records = exported(restored, tmp_path)
    phones = [record["phone"] for record in records]
    assert phones == [_digits(n) for n in range(len(records))]
    assert 5 + answered_before <= len(records) <= 5 + answered_after
    assert sum(status_counts(restored, tmp_path).values()) == len(records)
    # Pending when the copy caught a signup between its record and its outcome's (the
    # restored service would deliver it).
    assert {record["state"] for record in records} <= {"delivered", "pending"}


def test_postgresql_is_pointed_at_pg_dump_without_its_password(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://optin:s3cret-pw@127.0.0.1:5432/optin"

    result = optin("backup", str(tmp_path / "copy.db"), database_url=url, cwd=tmp_path)

    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("optin: ") and "pg_dump" in line and "PostgreSQL" in line
    assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert not (tmp_path / "copy.db").exists()


def test_the_live_database_is_never_overwritten(tmp_path: Path) -> None:
    live = tmp_path / "optin.db"
    url = f"sqlite+aiosqlite:///{live}"
    ok(optin("migrate", database_url=url, cwd=tmp_path))
    before = live.read_bytes()

    for target in (live, tmp_path / "optin.db-wal", Path("optin.db")):
        result = optin("backup", str(target), database_url=url, cwd=tmp_path)
        assert result.returncode == 2, target
        assert result.stderr == f"optin: {target} is the database itself; choose another file\n"
    assert live.read_bytes() == before


def test_a_failed_backup_leaves_the_old_copy_as_it_was(tmp_path: Path) -> None:
    backup = tmp_path / "backup.db"
    backup.write_bytes(b"yesterday's backup")

    # No database at all; then a file that is no SQLite database.
    missing = optin("backup", str(backup), database_url=f"sqlite+aiosqlite:///{tmp_path / 'none.db'}", cwd=tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    broken = optin("backup", str(backup), database_url=f"sqlite+aiosqlite:///{garbage}", cwd=tmp_path)

    assert (missing.returncode, broken.returncode) == (2, 2)
    assert missing.stderr == f"optin: no database at {tmp_path / 'none.db'} (OPTIN_DATABASE_URL)\n"
    assert broken.stderr.startswith(f"optin: cannot back up {garbage}: ") and "Traceback" not in broken.stderr
    assert backup.read_bytes() == b"yesterday's backup"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backup.db", "garbage.db"]

    # A good one replaces it whole.
    url = f"sqlite+aiosqlite:///{tmp_path / 'optin.db'}"
    ok(optin("migrate", database_url=url, cwd=tmp_path))
    ok(optin("backup", str(backup), database_url=url, cwd=tmp_path))
    assert status_counts(f"sqlite+aiosqlite:///{backup}", tmp_path) == {}
