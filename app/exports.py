"""The export of consent records as text: CSV or JSON lines, the same bytes for
`optin export` and the console's download (app.admin), written record by record so
neither holds a whole export in memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, date, datetime, time
from typing import Any

# The columns of an exported record, a signup's or an opt-out's, in order ("history"
# follows them). An opt-out (`kind` opt_out) has no groups and no source; its
# disclosure is the notice its page showed. `language` is the page's (None where the
# record does not keep one).
EXPORT_FIELDS = (
    "id",
    "created_at",
    "campaign",
    "phone",
    "group_ids",
    "page_url",
    "source",
    "client_ip",
    "user_agent",
    "language",
    "disclosure_sha256",
    "disclosure_text",
    "state",
    "attempts",
    "upstream_messages",
    "last_error",
    "duplicate_of",
    "updated_at",
    # Added after the others, so that a spreadsheet reading the columns by position
    # still finds them where they were.
    "kind",
    "language",
)

FORMATS = ("csv", "jsonl")

# OWASP's advice on CSV injection: a spreadsheet runs a cell that starts with one of
# these as a formula (a user agent "=HYPERLINK(...)" sent by anyone), and a leading
# single quote makes it text. JSONL is data for programs: it stays as stored.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def moment_of(text: str) -> datetime:
    """A date (midnight UTC) or a full ISO timestamp (UTC when it has no offset), as the
    export's --since and --until take them; ValueError says what is wrong."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or ISO timestamp") from None
    if len(text) == 10:
        moment = datetime.combine(date.fromisoformat(text), time(), UTC)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    try:
        moment.astimezone(UTC)  # as the database is asked; 9999-12-31T23:59-05:00 is past year 9999
    except OverflowError:
        raise ValueError(f"{text!r} is out of range in UTC") from None
    return moment


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _csv_cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        value = json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


async def export_text(records: AsyncIterable[dict[str, Any]], fmt: str) -> AsyncIterator[str]:
    """`records` (app.storage.reports.export) as text, a header first for CSV (even for
    an empty range, so a spreadsheet still opens it), then a line or row per record."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*EXPORT_FIELDS, "history"]) if fmt == "csv" else None

    def taken() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    if writer is not None:
        writer.writeheader()
        yield taken()
    async for record in records:
        plain = {key: _plain(value) for key, value in record.items()}
        if writer is None:
            yield json.dumps(plain, ensure_ascii=False) + "\n"
        else:
            writer.writerow({key: _csv_cell(value) for key, value in plain.items()})
            yield taken()
