"""/readyz: ready when the database answers with this release's schema and Redis (when
configured) answers; otherwise 503 naming the part, promptly, and never a secret.
/healthz stays liveness. compose.yaml sends traffic by readiness, the image's own
HEALTHCHECK stays on liveness."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dockerfile
import httpx
import pytest
import yaml

from app.campaigns import CampaignsError, load_campaigns
from app.main import create_app
from app.settings import Settings
from app.storage import SCHEMA_REVISION
from app.web.pages import RESERVED_PATHS
from tests.support.blackhole import Relay
from tests.support.campaigns import CAMPAIGNS_TOML, ROOT, write_campaigns
from tests.support.servers import app_server, child_environment

from .conftest import TOKEN, MakeClient, TestClient, closed_port

PASSWORD = "pw-SECRET-readyz-4711"
REDIS_PASSWORD = "rpw-SECRET-readyz-0815"
# Far above the timeouts these tests set (1 s, 0.2 s), far below a hang.
PROMPTLY = 5.0


def _no_secret(text: str) -> None:
    for secret in (PASSWORD, REDIS_PASSWORD, TOKEN):
        assert secret not in text
    # Nor where the parts are: a URL, a host or a port says more than an outsider needs.
    for fragment in ("postgresql", "redis://", "127.0.0.1", "@"):
        assert fragment not in text


def test_a_working_service_is_ready_and_says_so_for_get_and_head(make_client: MakeClient) -> None:
    client = make_client()

    ready = client.get("/readyz")
    head = client.head("/readyz")

    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}
    assert ready.headers["cache-control"] == "no-store"
    assert (head.status_code, head.content) == (200, b"")
    # Liveness is as it was.
    assert client.get("/healthz").text == "ok"


def test_postgresql_and_redis_both_answering_is_ready(
    make_client: MakeClient, postgres_url: str, redis_url: str, redis_prefix: str
) -> None:
    client = make_client(database_url=postgres_url, redis_url=redis_url, redis_prefix=redis_prefix)

    ready = client.get("/readyz")

    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "schema": "ok", "redis": "ok"}


@contextmanager
def _serving(campaigns_file: Path, **settings: Any) -> Iterator[TestClient]:
    active = Settings(
        _env_file=None,
        protexting_access_token=TOKEN,
        campaigns_path=campaigns_file,
        run_worker=False,
        secret_key="test-signing-key-0123456789",
        **settings,
    )
    with TestClient(create_app(active, upstream_transport=httpx.MockTransport(lambda r: httpx.Response(503)))) as c:
        yield c


def test_a_database_and_a_redis_that_do_not_answer_are_named_without_their_urls_or_passwords(
    clean_env: Path, campaigns_file: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = urlsplit(postgres_url)
    with Relay((database.hostname or "127.0.0.1", database.port or 5432)) as relay:
        # Passwords in both URLs (this PostgreSQL trusts loopback, and ignores it).
        through_relay = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:{relay.port}{database.path}"
        redis = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0"
        with _serving(
            campaigns_file,
            database_url=through_relay,
            database_timeout_seconds=1,
            redis_url=redis,
            redis_timeout_seconds=0.2,
        ) as client:
            # The database answers (the service migrated through it); Redis refuses.
            first = client.get("/readyz")
            assert first.status_code == 503
            assert first.json() == {
                "status": "not ready",
                "failed": ["redis"],
                "checks": {"database": "ok", "schema": "ok", "redis": "unreachable"},
            }

            # Now the database stops answering too: each part is named, within its timeout.
            relay.freeze()
            started = time.monotonic()
            both = client.get("/readyz")
            head = client.head("/readyz")
            elapsed = time.monotonic() - started
            assert both.status_code == 503 and head.status_code == 503
            assert both.json()["failed"] == ["database", "redis"]
            assert both.json()["checks"]["database"] == "unreachable (TimeoutError)"
            assert both.json()["checks"]["schema"] == "not checked"
            assert elapsed < 2 * PROMPTLY, elapsed
            for answer in (first, both, head):
                _no_secret(answer.text)
                for name, value in answer.headers.multi_items():
                    _no_secret(f"{name}: {value}")

            # Back: ready again, with no restart.
            relay.thaw()
            assert client.get("/readyz").json()["failed"] == ["redis"]

    assert "not ready: database unreachable (TimeoutError); redis unreachable" in caplog.text
    for record in caplog.records:
        assert PASSWORD not in record.getMessage() and REDIS_PASSWORD not in record.getMessage()


def test_a_schema_that_is_not_this_releases_is_not_ready(make_client: MakeClient, clean_env: Path) -> None:
    client = make_client()
    assert client.get("/readyz").status_code == 200

    # As a database that an older release's `optin migrate` left, or a newer one's.
    with sqlite3.connect(clean_env / "optin-1.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    behind = client.get("/readyz")

    assert behind.status_code == 503
    assert behind.json()["failed"] == ["schema"]
    assert behind.json()["checks"] == {
        "database": "ok",
        "schema": f"not at this release's revision ({SCHEMA_REVISION})",
    }


def test_readyz_is_no_campaign_keyword(tmp_path: Path) -> None:
    campaigns = write_campaigns(tmp_path, CAMPAIGNS_TOML.replace("[campaigns.JOIN]", "[campaigns.readyz]"))
    with pytest.raises(CampaignsError, match="readyz"):
        load_campaigns(campaigns, reserved=RESERVED_PATHS)


# -- compose.yaml and the Dockerfile ------------------------------------------------------


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_compose_sends_traffic_by_readiness_and_the_image_restarts_by_liveness() -> None:
    services = _compose()["services"]
    probe = services["web"]["healthcheck"]["test"]
    assert probe[0] == "CMD" and "/readyz" in " ".join(probe)
    # Caddy starts once a replica is ready.
    assert services["caddy"]["depends_on"]["web"]["condition"] == "service_healthy"
    # The image's own check stays liveness: a replica is not restarted for a database outage.
    (image,) = [c for c in dockerfile.parse_file(str(ROOT / "Dockerfile")) if c.cmd == "HEALTHCHECK"]
    assert "/healthz" in " ".join(image.value) and "/readyz" not in " ".join(image.value)


def test_the_compose_readiness_probe_passes_on_a_ready_replica_and_fails_on_one_that_is_not(tmp_path: Path) -> None:
    probe = _compose()["services"]["web"]["healthcheck"]["test"][1:]
    assert probe[0] == "python"

    def run(port: int) -> subprocess.CompletedProcess[str]:
        env = child_environment({"OPTIN_PORT": str(port)})
        return subprocess.run(
            probe, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30, check=False
        )  # fmt: skip

    campaigns = write_campaigns(tmp_path)
    with app_server(tmp_path / "ready", campaigns=campaigns, name="ready") as ready:
        assert run(ready.port).returncode == 0, run(ready.port).stderr
    unready_env = {"OPTIN_REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0", "OPTIN_REDIS_TIMEOUT_SECONDS": "0.2"}
    with app_server(tmp_path / "unready", campaigns=campaigns, env=unready_env, name="unready") as unready:
        # Alive, but not ready: the liveness check the image runs still passes.
        assert httpx.get(unready.url + "/healthz", trust_env=False).status_code == 200
        failed = run(unready.port)
        assert failed.returncode != 0
        assert "503" in failed.stderr
