"""Proof, retention and erasure, as the operator runs them: `optin export --kind`,
`optin proof`, `optin purge` and `optin forget` (the installed command, in a
subprocess), over records stored at chosen dates through the Outbox API."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.consent import ConsentRecord, Disclosure, OptOutRecord, forgotten
from app.outbox import RetryPolicy, State
from app.storage import Outbox, create_engine, migrate
from app.upstream import Accepted, FieldError, OptIn, OptOut, Rejected
from tests.support.campaigns import write_campaigns
from tests.support.records import optin

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=6 * 365)
SECRET = "retention-test-secret-0123456789"
CURRENT = Disclosure.of("<p>Texts from Test Bakery. Reply <strong>STOP</strong> to cancel.</p>")
RETIRED = Disclosure.of("<p>An old disclosure nobody is shown any more.</p>")
NOTICE = Disclosure.of("<p>This stops <strong>every</strong> text message from Test Bakery.</p>")


@pytest.fixture
def optin_cli(tmp_path: Path) -> Callable[..., str]:
    """`optin ARGS` on `url`, with this service's secret key and campaigns file: its
    standard output (its standard error with `stderr`), once it exits `expect`."""
    campaigns = write_campaigns(tmp_path / "conf")

    def call(*args: str, url: str, stderr: bool = False, expect: int = 0) -> str:
        env = {"OPTIN_SECRET_KEY": SECRET, "OPTIN_CAMPAIGNS": str(campaigns)}
        result = optin(*args, database_url=url, cwd=tmp_path, env=env)
        assert result.returncode == expect, (result.returncode, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        return result.stderr if stderr or expect else result.stdout

    return call


def consent(phone: str, at: datetime, disclosure: Disclosure = CURRENT) -> ConsentRecord:
    return ConsentRecord(
        created_at=at, campaign="JOIN", phone=phone, group_ids=(4,), disclosure_sha256=disclosure.sha256,
        page_url="https://texts.example/JOIN?src=poster", source={"src": "poster"},
        client_ip="203.0.113.9", user_agent="Mozilla/5.0 (retention)",
    )  # fmt: skip


def revocation(phone: str, at: datetime) -> OptOutRecord:
    return OptOutRecord(
        created_at=at, phone=phone, campaign=None, page_url="https://texts.example/stop", language="en",
        notice=NOTICE, client_ip="198.51.100.4", user_agent="Mozilla/5.0 (stop)",
    )  # fmt: skip


def run(url: str, work: Callable[[Outbox], Coroutine[Any, Any, Any]], *, remember: bool = True) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            await migrate(engine)
            outbox = Outbox(engine, policy=RetryPolicy(), lease=timedelta(seconds=60))
            if remember:
                await outbox.remember_disclosures([CURRENT, RETIRED])
            try:
                return await work(outbox)
            finally:
                await outbox.close()
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def store(outbox: Outbox, record: ConsentRecord | OptOutRecord, outcome: Any = None) -> int:
    """Store a record; with `outcome`, deliver it as ProTexting answered."""
    payload = OptOut(record.phone) if isinstance(record, OptOutRecord) else OptIn(phone=record.phone, group_ids=(4,))
    job = await outbox.add(record, payload, leased_by="w" if outcome is not None else None)
    if outcome is not None:
        await outbox.settle(job, outcome, worker="w")
    return job.id


def fill(url: str) -> dict[str, int]:
    async def work(outbox: Outbox) -> dict[str, int]:
        from sqlalchemy import update

        from app.storage import disclosures

        async with outbox.engine.begin() as conn:  # the retired text was first shown long ago
            await conn.execute(
                update(disclosures).where(disclosures.c.sha256 == RETIRED.sha256).values(first_shown_at=OLD)
            )
        return {
            # Six years ago: a signup, revoked a day later.
            "revoked": await store(outbox, consent("12015556001", OLD, RETIRED), Accepted(201)),
            "its_opt_out": await store(outbox, revocation("12015556001", OLD + timedelta(days=1)), Accepted(201)),
            # Six years ago, refused by ProTexting: nothing was ever sent on it.
            "refused": await store(
                outbox,
                consent("12015556002", OLD, RETIRED),
                Rejected((FieldError("PhoneNumber", "PhoneNumber is not a valid mobile number."),)),
            ),
            # Six years ago, delivered and never revoked: still the proof of every text sent on it.
            "in_force": await store(outbox, consent("12015556003", OLD), Accepted(201)),
            # Last week.
            "recent": await store(outbox, consent("12015556004", NOW - timedelta(days=7)), Accepted(201)),
        }

    return run(url, work)


def test_export_by_kind(tmp_path: Path, optin_cli: Callable[..., str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/optin.db"
    fill(url)
    everything = [json.loads(line) for line in optin_cli("export", "--format", "jsonl", url=url).splitlines()]
    assert [r["kind"] for r in everything] == ["opt_in", "opt_out", "opt_in", "opt_in", "opt_in"]
    stopped = [
        json.loads(line) for line in optin_cli("export", "--format", "jsonl", "--kind", "opt_out", url=url).splitlines()
    ]
    assert [(r["kind"], r["phone"], r["disclosure_text"]) for r in stopped] == [("opt_out", "12015556001", NOTICE.text)]
    signed = list(csv.DictReader(io.StringIO(optin_cli("export", "--kind", "opt_in", url=url))))
    assert {row["kind"] for row in signed} == {"opt_in"} and len(signed) == 4


def test_proof_of_one_number_as_json_and_as_a_printable_document(tmp_path: Path, optin_cli: Callable[..., str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/optin.db"
    fill(url)
    proof = json.loads(optin_cli("proof", "+1 (201) 555-6001", url=url))
    assert proof["number"] == "12015556001"
    signup, stopped = proof["records"]
    assert (signup["kind"], signup["created_at"][:10], signup["disclosure_text"]) == (
        "opt_in", OLD.date().isoformat(), RETIRED.text,
    )  # fmt: skip
    assert (signup["page_url"], signup["source"], signup["client_ip"], signup["user_agent"]) == (
        "https://texts.example/JOIN?src=poster", {"src": "poster"}, "203.0.113.9", "Mozilla/5.0 (retention)",
    )  # fmt: skip
    assert [event["state"] for event in signup["history"]] == ["pending", "delivered"]
    assert (stopped["kind"], stopped["disclosure_text"], stopped["language"]) == ("opt_out", NOTICE.text, "en")

    html = optin_cli("proof", "12015556001", "--format", "html", url=url)
    assert "@media print" in html and "<script" not in html
    assert RETIRED.text in html and NOTICE.text in html  # the exact texts shown, as shown
    assert html.index("1. Signup") < html.index("2. Opt-out")
    assert "ProTexting accepted (HTTP 201)" in html


def test_purge_deletes_only_what_proves_nothing_in_force(tmp_path: Path, optin_cli: Callable[..., Any]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/optin.db"
    ids = fill(url)

    # A clock of the test's own: three years after the old records, nothing is past five.
    purged = run(url, lambda outbox: outbox.purge(before=OLD + timedelta(days=3 * 365 - 1825), keep_texts=set()))
    assert purged.jobs == 0
    # A text a page still shows stays, even with no record left pointing at it.
    shown = run(url, lambda outbox: outbox.purge(before=NOW - timedelta(days=1825), keep_texts={RETIRED.sha256}))
    assert (shown.jobs, shown.disclosures) == (3, 0)

    dry = optin_cli("purge", url=url, stderr=True)
    assert "dry run: would delete 2 signup(s), 1 opt-out(s), 3 job(s), 6 history line(s) and 1 disclosure" in dry
    assert len(optin_cli("export", "--format", "jsonl", url=url).splitlines()) == 5  # nothing deleted

    done = optin_cli("purge", "--yes", url=url, stderr=True)
    assert "purge deleted 2 signup(s), 1 opt-out(s), 3 job(s), 6 history line(s) and 1 disclosure" in done
    left = [json.loads(line)["id"] for line in optin_cli("export", "--format", "jsonl", url=url).splitlines()]
    assert left == [ids["in_force"], ids["recent"]]

    async def texts(outbox: Outbox) -> set[str]:
        from sqlalchemy import select

        from app.storage import disclosures

        async with outbox.engine.connect() as conn:
            return set((await conn.execute(select(disclosures.c.sha256))).scalars())

    kept = run(url, texts, remember=False)
    assert RETIRED.sha256 not in kept and CURRENT.sha256 in kept  # the retired text went with its records
    # Nothing more is past retention.
    assert "would delete 0 signup(s)" in optin_cli("purge", url=url, stderr=True)


def test_forget_keeps_a_keyed_hash_and_the_revocation(tmp_path: Path, optin_cli: Callable[..., Any]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/optin.db"
    phone = "12015556101"
    run(url, lambda outbox: store(outbox, consent(phone, NOW - timedelta(days=30)), Accepted(201)))

    # Still opted in at ProTexting: erasing the proof now would leave texts unproven.
    refused = optin_cli("forget", phone, url=url, expect=2)
    assert "not an opt-out ProTexting has taken" in refused

    # An opt-out not yet delivered: the number is still needed to send it.
    waiting = run(url, lambda outbox: store(outbox, revocation(phone, NOW - timedelta(days=1))))
    assert "still on its way to ProTexting" in optin_cli("forget", phone, url=url, expect=2)

    async def delivered(outbox: Outbox) -> None:
        [job] = await outbox.claim("w")
        assert job.id == waiting
        await outbox.settle(job, Accepted(201), worker="w")

    run(url, delivered)
    said = optin_cli("forget", phone, url=url, stderr=True)
    hashed = forgotten(phone, SECRET)
    assert f"forgot {hashed}: 1 signup(s), 1 opt-out(s) and 2 job(s)" in said
    assert phone not in said  # never the number in clear, in any line

    rows = [json.loads(line) for line in optin_cli("export", "--format", "jsonl", url=url).splitlines()]
    assert {(r["phone"], r["client_ip"], r["user_agent"]) for r in rows} == {(hashed, None, None)}
    assert phone not in json.dumps(rows)
    # The proof still finds them by the number, with the key.
    proof = json.loads(optin_cli("proof", phone, url=url))
    assert [r["kind"] for r in proof["records"]] == ["opt_in", "opt_out"]
    assert proof["records"][0]["history"][-1]["detail"].startswith("forgotten")

    # A later signup of the number is new consent: stored to be sent, not held back.
    later = run(url, lambda outbox: outbox.add(consent(phone, NOW), OptIn(phone=phone, group_ids=(4,))))
    assert later.state == State.PENDING
    assert "no record of this number" in optin_cli("forget", "12015550000", url=url, expect=2)


def test_status_counts_opt_outs_apart_from_every_campaign(tmp_path: Path, optin_cli: Callable[..., str]) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/optin.db"
    fill(url)
    lines = [line.split() for line in optin_cli("status", url=url).splitlines()[1:]]
    assert ["(opt-outs)", "delivered", "1"] in lines
    assert ["JOIN", "delivered", "3"] in lines and ["JOIN", "rejected", "1"] in lines
