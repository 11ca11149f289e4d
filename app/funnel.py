"""The console's funnel, counted: page views and submissions by campaign, `src` and hour.

The page view pays one dict increment for it, the one it already paid for the metrics
(`app.metrics.Tally`): at each flush of the tally (once a second) `Funnel.read` gets
its counts, reads each distinct query string's `src` once, and adds them to the hour
of the flush (a view is at most a flush late into its hour). `take()` hands what
accumulated to the storage, which adds it into the shared table with an upsert
(app.storage.console), so every replica's counts meet there.

`src` is anyone's to write into a URL: past `max_sources` distinct values in one
campaign and hour, further ones count as "other", so the table grows by a bounded
number of rows an hour whatever arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from .consent import source_params
from .metrics import Submissions, Views

VIEWS = "views"
OTHER = "other"
MAX_SOURCES = 50
HOUR = 3600


@dataclass(frozen=True, slots=True)
class Count:
    """One row of the funnel's table: how many of `metric` (VIEWS, or a submission's
    `app.metrics.Outcome`) a campaign had from a `src` ("" for none) in an hour."""

    campaign: str
    src: str
    hour: datetime
    metric: str
    count: int


def src_of(query: bytes) -> str:
    """A page view's `src`, as its signup's consent record will keep it."""
    if not query:
        return ""
    return source_params(parse_qsl(query.decode("latin-1"), keep_blank_values=True)).get("src", "")


class Funnel:
    """Counts between two writes to the table. `clock` (epoch seconds) says the hour."""

    def __init__(self, *, max_sources: int = MAX_SOURCES, clock: Callable[[], float] = time.time) -> None:
        self.max_sources = max_sources
        self.clock = clock
        self._pending: dict[tuple[str, str, int, str], int] = {}
        # The distinct sources seen this hour, per campaign (this process's).
        self._hour = 0
        self._sources: dict[str, set[str]] = {}

    def read(self, views: Views, submissions: Submissions) -> None:
        """A flush of the tally (`app.metrics.Metrics.readers`)."""
        hour = int(self.clock() // HOUR) * HOUR
        if hour != self._hour:
            self._hour, self._sources = hour, {}
        srcs: dict[bytes, str] = {}
        for campaign, by_query in views.items():
            for query, count in by_query.items():
                src = srcs.get(query)
                if src is None:
                    src = srcs[query] = src_of(query)
                self._add(campaign, src, hour, VIEWS, count)
        for (campaign, outcome, src), count in submissions.items():
            self._add(campaign, src, hour, outcome.value, count)

    def _add(self, campaign: str, src: str, hour: int, metric: str, count: int) -> None:
        seen = self._sources.setdefault(campaign, set())
        if src not in seen:
            if len(seen) >= self.max_sources:
                src = OTHER
            seen.add(src)
        key = (campaign, src, hour, metric)
        self._pending[key] = self._pending.get(key, 0) + count

    def take(self) -> list[Count]:
        """What accumulated since the last take, leaving nothing pending."""
        pending, self._pending = self._pending, {}
        return [
            Count(campaign, src, datetime.fromtimestamp(hour, UTC), metric, count)
            for (campaign, src, hour, metric), count in pending.items()
        ]

    def put_back(self, counts: Iterable[Count]) -> None:
        """Counts the table did not take (the database did not answer): kept for the next write."""
        for item in counts:
            key = (item.campaign, item.src, int(item.hour.timestamp()), item.metric)
            self._pending[key] = self._pending.get(key, 0) + item.count


# What the funnel shows, in order, from the counts (the tally's outcomes) and from
# where the stored signups' delivery stands.
SUBMISSION_METRICS = (
    "delivered",
    "queued",
    "invalid_number",
    "refused",
    "captcha_failed",
    "bot_trapped",
    "rate_limited",
    "cross_site",
    "bad_token",
)
# A stored signup's state, as the funnel's column of it.
DELIVERY_COLUMNS = {
    "delivered": "delivered",
    "pending": "queued",
    "held": "held",
    "rejected": "rejected",
    "failed": "failed",
}


@dataclass(slots=True)
class FunnelRow:
    """One campaign's (or one of its sources') funnel over a period."""

    campaign: str
    src: str | None  # None: the campaign as a whole
    views: int = 0
    submissions: int = 0
    invalid: int = 0
    bot_trapped: int = 0
    rate_limited: int = 0
    delivered: int = 0
    queued: int = 0
    held: int = 0
    rejected: int = 0
    failed: int = 0
    # From the opt-out jobs once they exist; None: not counted (yet).
    opt_outs: int | None = None

    @property
    def conversion(self) -> float | None:
        """Delivered signups over page views; None without views."""
        return self.delivered / self.views if self.views else None


def funnel_rows(
    counts: Iterable[tuple[str, str, object, str, int]],
    delivery: Iterable[tuple[str, str, str, int]],
    opt_outs: Iterable[tuple[str, str, int]] | None = None,
) -> list[FunnelRow]:
    """Each campaign's row followed by its sources' rows (most viewed first), from
    the table's (campaign, src, hour, metric, count) and the signups' (campaign, src,
    state, count), and the opt-outs' (campaign, src, count) when they are counted."""
    rows: dict[tuple[str, str | None], FunnelRow] = {}

    def both(campaign: str, src: str) -> tuple[FunnelRow, FunnelRow]:
        total = rows.setdefault((campaign, None), FunnelRow(campaign, None))
        one = rows.setdefault((campaign, src), FunnelRow(campaign, src))
        if opt_outs is not None:
            total.opt_outs = total.opt_outs or 0
            one.opt_outs = one.opt_outs or 0
        return total, one

    for campaign, src, _hour, metric, count in counts:
        for row in both(campaign, src):
            if metric == VIEWS:
                row.views += count
                continue
            row.submissions += count
            if metric == "invalid_number":
                row.invalid += count
            elif metric == "bot_trapped":
                row.bot_trapped += count
            elif metric == "rate_limited":
                row.rate_limited += count
    for campaign, src, state, count in delivery:
        column = DELIVERY_COLUMNS.get(state)
        if column is None:
            continue
        for row in both(campaign, src):
            setattr(row, column, getattr(row, column) + count)
    for campaign, src, count in opt_outs or ():
        for row in both(campaign, src):
            row.opt_outs = (row.opt_outs or 0) + count
    ordered: list[FunnelRow] = []
    for campaign in sorted({c for c, _ in rows}):
        ordered.append(rows[campaign, None])
        sources = [row for (c, s), row in rows.items() if c == campaign and s is not None]
        ordered.extend(sorted(sources, key=lambda row: (-row.views, row.src or "")))
    return ordered
