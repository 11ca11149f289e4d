"""What the service counts, for Prometheus (`GET /metrics`, when OPTIN_METRICS_TOKEN is set).

The page view and the signup are the busiest paths, so they do not call
prometheus-client themselves: they add one to a plain `dict` entry of a `Tally`
(a few tens of nanoseconds), and the tally is flushed into prometheus-client's counters
once a second and before each scrape (`Metrics.flush`). What is rarer (a delivery, a
call to ProTexting, a wait for the pace) goes to prometheus-client directly.

Labels stay bounded: a campaign's keyword (the campaigns file lists them all) and a
fixed set of outcomes, results and status codes; never a page's `src`, which anyone can
write into a URL.

Several uvicorn workers in one container share their counts through prometheus-client's
multiprocess mode: `optin serve` points PROMETHEUS_MULTIPROC_DIR at a fresh directory
before it starts them, each process writes its counts there, and whichever process
answers a scrape adds them all up (`Metrics.exposition`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Outcome(StrEnum):
    """How a submission ended, as the metrics count it."""

    DELIVERED = "delivered"  # ProTexting accepted it while the person waited
    QUEUED = "queued"  # stored; delivered shortly
    HELD = "held"  # stored; ProTexting refused the business's set-up: sent once it is fixed
    INVALID_NUMBER = "invalid_number"  # the campaign cannot text the number typed
    REFUSED = "refused"  # ProTexting refused it
    CAPTCHA_FAILED = "captcha_failed"
    TOO_FAST = "too_fast"  # sent sooner than a person fills the form in: asked to confirm
    BOT_TRAPPED = "bot_trapped"  # the honeypot, or a second submission too fast, caught it
    RATE_LIMITED = "rate_limited"  # an abuse limit answered 429
    CROSS_SITE = "cross_site"  # posted from a page on another site
    BAD_TOKEN = "bad_token"  # no token, a forged, stale or spent one


# The views of each campaign by query string; the submissions of each outcome and `src`.
Views = dict[str, dict[bytes, int]]
SubmissionKey = tuple[str, Outcome, str]
Submissions = dict[SubmissionKey, int]


class Tally:
    """Counts of the hot paths, between two flushes: plain ints in dicts.

    A view is counted under its campaign and its raw query string, as the request
    carries it: where it came from (`src`) is read out of the query string once per
    flush and distinct string, not once per view (the console's funnel, app.funnel)."""

    __slots__ = ("submissions", "views")

    def __init__(self) -> None:
        self.views: Views = {}
        self.submissions: Submissions = {}

    def view(self, campaign: str, query: bytes = b"") -> None:
        # Two lookups and a store, no tuple to build and hash: as cheap as counting by
        # campaign alone was (the page view is at its budget). A new key raises once a flush.
        try:
            self.views[campaign][query] += 1
        except KeyError:
            by_query = self.views.setdefault(campaign, {})
            by_query[query] = by_query.get(query, 0) + 1

    def submission(self, campaign: str, outcome: Outcome, src: str = "") -> None:
        key = (campaign, outcome, src)
        self.submissions[key] = self.submissions.get(key, 0) + 1

    def take(self) -> tuple[Views, Submissions]:
        """The counts so far, leaving the tally empty."""
        views, submissions = self.views, self.submissions
        self.views, self.submissions = {}, {}
        return views, submissions


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR))


# ProTexting answers in tens to hundreds of milliseconds; its deadline is 10 s.
_CALL_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_WAIT_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """prometheus-client's metrics of one service process."""

    def __init__(self) -> None:
        # In multiprocess mode the values live in the shared directory and a scrape
        # reads them from there; otherwise in a registry of this process's own (the
        # tests run many apps in one process, each with its own).
        self._registry = None if multiprocess_mode() else CollectorRegistry()
        registry = self._registry
        self.tally = Tally()
        # Whoever else reads the tally's counts at each flush (the console's funnel):
        # one tally, one flush, for every reader.
        self.readers: list[Callable[[Views, Submissions], None]] = []
        self.page_views = Counter(
            "optin_page_views", "Signup pages shown, by campaign.", ["campaign"], registry=registry
        )
        self.submissions = Counter(
            "optin_submissions",
            "Signup submissions, by campaign and outcome.",
            ["campaign", "outcome"],
            registry=registry,
        )
        self.deliveries = Counter(
            "optin_deliveries",
            "Delivery attempts' results: delivered, rejected (ProTexting refused the number), "
            "held (ProTexting refused the business's set-up: optin retry-failed --held once fixed), "
            "retry (ProTexting unavailable or busy), failed (gave up).",
            ["result"],
            registry=registry,
        )
        self.held = Counter(
            "optin_setup_refusals",
            "ProTexting's refusals of the business's set-up, by cause: group_ids, field, forbidden_words, "
            "credit, api_not_activated, ip_not_allowed, sender_blocked, other, unreadable.",
            ["cause"],
            registry=registry,
        )
        self.protexting_seconds = Histogram(
            "optin_protexting_request_duration_seconds",
            "Duration of calls to ProTexting.",
            buckets=_CALL_BUCKETS,
            registry=registry,
        )
        self.protexting_responses = Counter(
            "optin_protexting_responses",
            "Calls to ProTexting by HTTP status ('none': no answer).",
            ["status"],
            registry=registry,
        )
        self.delivery_pauses = Counter(
            "optin_delivery_pauses",
            "Pauses of delivery: unauthorized (ProTexting refused the token, 401/403), misconfigured "
            "(an answer ProTexting never gives: check PROTEXTING_API_URL), rate_limited (ProTexting's 429).",
            ["reason"],
            registry=registry,
        )
        self.pacing_wait_seconds = Histogram(
            "optin_pacing_wait_seconds",
            "How long deliveries waited for the shared pace of calls to ProTexting.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )

    def flush(self) -> None:
        """Move the tally's counts into the counters."""
        views, submissions = self.tally.take()
        if not views and not submissions:
            return
        for campaign, by_query in views.items():
            self.page_views.labels(campaign).inc(sum(by_query.values()))
        by_outcome: dict[tuple[str, Outcome], int] = {}
        for (campaign, outcome, _src), count in submissions.items():
            by_outcome[campaign, outcome] = by_outcome.get((campaign, outcome), 0) + count
        for (campaign, outcome), count in by_outcome.items():
            self.submissions.labels(campaign, outcome.value).inc(count)
        for read in self.readers:
            read(views, submissions)

    def exposition(self, gauges: Iterable[Metric] = ()) -> bytes:
        """The text a scrape gets: this process's counts (or every process's, in
        multiprocess mode), and `gauges` read at the moment of the scrape."""
        self.flush()
        registry = CollectorRegistry()
        if self._registry is None:
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry.register(_Proxy(self._registry))
        registry.register(_Fixed(list(gauges)))
        return generate_latest(registry)


def outbox_depth(counts: Iterable[tuple[str, str, int]]) -> Metric:
    """`optin_outbox_jobs{state}` from the outbox's (campaign, state, count) rows."""
    by_state: dict[str, int] = {}
    for _campaign, state, count in counts:
        by_state[state] = by_state.get(state, 0) + count
    gauge = GaugeMetricFamily("optin_outbox_jobs", "Signups in the outbox, by state.", labels=["state"])
    for state, count in sorted(by_state.items()):
        gauge.add_metric([state], count)
    return gauge


def delivery_paused(paused: bool) -> Metric:
    """`optin_delivery_paused`: 1 while every replica holds delivery back (the shared
    pause); `optin_delivery_pauses_total{reason}` says why, in the process that paused."""
    return GaugeMetricFamily(
        "optin_delivery_paused", "1 while delivery is paused for every replica.", value=1 if paused else 0
    )


class _Proxy(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        return self._registry.collect()


class _Fixed(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return iter(self._metrics)
