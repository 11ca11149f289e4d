"""`make audit`: Lighthouse on the pages a visitor sees, in English and Spanish.

The service runs in sandbox mode with the demo campaigns, on loopback; Lighthouse
(npm, the version `make audit` installs) drives Debian's chromium as a phone (its
default: mobile, throttled) over the campaign page, the embed and the thanks page in
each language, in four categories: performance, accessibility, best practices, SEO.
Each page is audited --runs times (3) and each category's median is its score, as
Lighthouse's guide to variability advises: these machines are shared, and a run that
starts while another job holds the cores scores its blocking time and speed index low.
Prints a table; exits 1 when any score is under --minimum (98).

    .venv/bin/python bench/audit.py --lighthouse .audit/node_modules/.bin/lighthouse
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.servers import app_server

CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
PAGES = ("/JOIN", "/embed/JOIN", "/JOIN/thanks")
LANGUAGES = ("en", "es")


def lighthouse(binary: str, chromium: str, url: str, report: Path) -> dict[str, float]:
    """The four categories' scores (0-100) of `url`; the full report is left at `report`."""
    subprocess.run(
        [
            binary,
            url,
            f"--chrome-path={chromium}",
            "--chrome-flags=--headless=new --no-sandbox --disable-gpu --disable-background-networking",
            f"--only-categories={','.join(CATEGORIES)}",
            "--output=json",
            f"--output-path={report}",
            "--quiet",
        ],
        check=True,
        timeout=300,
    )
    categories = json.loads(report.read_text(encoding="utf-8"))["categories"]
    return {name: round(categories[name]["score"] * 100) for name in CATEGORIES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lighthouse", required=True, help="the lighthouse command")
    parser.add_argument("--chromium", default=os.environ.get("OPTIN_CHROMIUM", "/usr/bin/chromium"))
    parser.add_argument("--minimum", type=int, default=98, help="the lowest score that passes (default 98)")
    parser.add_argument("--reports", type=Path, default=None, help="keep each page's JSON report in this folder")
    parser.add_argument("--runs", type=int, default=3, help="runs per page; the median counts (default 3)")
    args = parser.parse_args()

    failed = False
    with tempfile.TemporaryDirectory(prefix="optin-audit-") as scratch:
        reports = args.reports or Path(scratch)
        reports.mkdir(parents=True, exist_ok=True)
        with app_server(Path(scratch), log_level="warning") as server:
            print(f"{'page':<28}" + "".join(f"{name:>16}" for name in CATEGORIES))
            for path in PAGES:
                for language in LANGUAGES:
                    shown = f"{path}?lang={language}"
                    name = shown.strip("/").replace("/", "-").replace("?lang=", ".")
                    runs = [
                        lighthouse(args.lighthouse, args.chromium, server.url + shown, reports / f"{name}.{n}.json")
                        for n in range(1, args.runs + 1)
                    ]
                    scores = {c: round(statistics.median(run[c] for run in runs)) for c in CATEGORIES}
                    low = [c for c, score in scores.items() if score < args.minimum]
                    failed = failed or bool(low)
                    print(
                        f"{shown:<28}" + "".join(f"{scores[c]:>16}" for c in CATEGORIES) + ("  <- low" if low else "")
                    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
