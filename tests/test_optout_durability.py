"""An opt-out, once its page has answered, reaches ProTexting: across a SIGKILL of the
service, on SQLite and on PostgreSQL, exactly once per number, and the signups it
revoked never do. Real processes on loopback (tests/support/servers.py)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.support.campaigns import write_campaigns
from tests.support.records import exported, fake_state, received
from tests.support.servers import app_server, fake_protexting, wait_until
from tests.support.visitor import Visitor
from tests.test_durability import CRASH, TOKEN, _numbers, crash_while_leased


def opted_out(fake: object) -> Counter[str]:
    return Counter(str(call["PhoneNumber"]) for call in fake_state(fake)["opt_outs"])  # type: ignore[arg-type]


def test_every_recorded_opt_out_survives_a_crash_and_is_sent_once(tmp_path: Path, database_url: str) -> None:
    fake = fake_protexting(tmp_path, token=TOKEN, down=True, latency_ms=200)
    app = app_server(
        tmp_path,
        token=TOKEN,
        fake=fake,
        campaigns=write_campaigns(tmp_path),
        env={"OPTIN_DATABASE_URL": database_url, **CRASH},
    )
    numbers = _numbers(10, start=5000)
    revoked = numbers[:3]
    with (
        fake,
        app,
        httpx.Client(base_url=app.url, trust_env=False, timeout=10.0, follow_redirects=False) as client,
        ThreadPoolExecutor(5) as pool,
    ):
        # Signups ProTexting cannot take yet (it is down), then the opt-outs.
        for number in revoked:
            assert Visitor(client, "/JOIN").submit(number).headers["location"].startswith("/JOIN/thanks?pending=1")
        answers = list(pool.map(lambda number: Visitor(client, "/stop").submit(number), numbers))
        assert [(a.status_code, a.headers["location"]) for a in answers] == [(303, "/stop/done")] * len(numbers)

        # Killed while its worker holds opt-outs under lease, trying them.
        crash_while_leased(app, fake, database_url)

        wait_until(
            lambda: set(opted_out(fake)) >= set(numbers),
            timeout=30,
            what=lambda: f"every opt-out at ProTexting; missing {sorted(set(numbers) - set(opted_out(fake)))}",
        )
        # Nothing was taken before the crash (ProTexting was down): exactly once each.
        assert opted_out(fake) == Counter({number: 1 for number in numbers})
        # The signups the opt-outs revoked were never sent, before or after the crash.
        assert received(fake) == Counter()
        rows = exported(database_url, tmp_path)
    kinds = Counter((row["kind"], row["state"]) for row in rows)
    assert kinds == {("opt_in", "cancelled"): len(revoked), ("opt_out", "delivered"): len(numbers)}
    assert "Traceback" not in app.stderr, app.stderr
