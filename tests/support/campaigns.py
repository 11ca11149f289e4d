"""The campaigns files the tests (and bench/) run the service with.

`CAMPAIGNS_TOML`: two campaigns (JOIN, Alerts) for the in-process app; `CAMPAIGNS`: the
one campaign (JOIN) of the tests that run the service as a real server; the repository's
own `campaigns.toml` is `DEMO_CAMPAIGNS`. `write_campaigns(directory)` puts one in a
file for OPTIN_CAMPAIGNS.

No pytest import: bench/ uses this module too.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_CAMPAIGNS = ROOT / "campaigns.toml"

CAMPAIGNS_TOML = """\
[campaigns.JOIN]
title = "Get our deals by text"
description = "Weekly offers, straight to your phone."
group_ids = [7, 9]
program_name = "Test Bakery Deals"
message_frequency = "Up to 4 msgs/month"
terms_url = "https://example.com/sms-terms"
privacy_url = "https://example.com/privacy"
cta_message = "Test Bakery: reply YES to get deals."
confirm_message = "Test Bakery: you're in! Reply HELP for help, STOP to cancel."

[campaigns.Alerts]
title = "Store alerts"
group_ids = [2]
program_name = "Test Bakery Alerts"
message_frequency = "Msg frequency varies"
terms_url = "https://example.com/alerts-terms"
privacy_url = "https://example.com/alerts-privacy"
countries = ["US", "CA"]
send_cta_message = true
"""

CAMPAIGNS = """\
[campaigns.JOIN]
title = "Get our deals by text"
group_ids = [7, 9]
program_name = "Corner Bakery Deals"
message_frequency = "Up to 4 msgs/month"
terms_url = "https://example.com/sms-terms"
privacy_url = "https://example.com/privacy"
cta_message = "Corner Bakery: reply YES to get deals by text."
confirm_message = "Corner Bakery: you're in! Reply HELP for help, STOP to cancel."
"""


def write_campaigns(directory: Path, text: str = CAMPAIGNS, *, name: str = "campaigns.toml") -> Path:
    """`text` as a campaigns file in `directory`; its path, for OPTIN_CAMPAIGNS."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
