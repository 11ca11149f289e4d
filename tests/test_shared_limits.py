"""Limits hold across replicas: two app processes sharing one Redis count together."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests._servers import app_server
from tests.conftest import CAMPAIGNS_TOML


def _post_form(base: str, phone: str) -> httpx.Response:
    with httpx.Client(base_url=base, trust_env=False, timeout=10, follow_redirects=False) as client:
        page = client.get("/join").text
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
        return client.post("/JOIN", data={**hidden, "phone": phone})


def test_two_replicas_share_the_per_address_limit_through_redis(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    campaigns = tmp_path / "campaigns.toml"
    campaigns.write_text(CAMPAIGNS_TOML, encoding="utf-8")
    env = {
        "OPTIN_REDIS_URL": redis_url,
        "OPTIN_REDIS_PREFIX": redis_prefix,
        "OPTIN_LIMIT_PER_IP": "3/minute",
        "OPTIN_MIN_FILL_SECONDS": "0",
        # Both replicas must verify each other's form tokens.
        "OPTIN_SECRET_KEY": "shared-replica-key-0123456789",
        "OPTIN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/optin.db",
    }
    with app_server(tmp_path, campaigns=campaigns, env=env, name="a") as a, app_server(
        tmp_path, campaigns=campaigns, env=env, name="b"
    ) as b:
        codes = [
            _post_form(a.url, "(201) 555-0161").status_code,
            _post_form(b.url, "(201) 555-0162").status_code,
            _post_form(a.url, "(201) 555-0163").status_code,
            _post_form(b.url, "(201) 555-0164").status_code,
        ]
    # Alone, each replica would have allowed all of its two; together they allow three.
    assert codes == [303, 303, 303, 429]
