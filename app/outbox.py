"""The outbox: jobs of calls to ProTexting and where each stands, as pure rules.

A job is one call to make to ProTexting, of a kind (`Kind`) with the request it sends
(its payload: an `OptIn` for a signup). Every job goes through the same states:

    pending ──> delivered    ProTexting answered 201 (its body unread or not: never re-sent)
        │  ──> rejected     ProTexting answered 422 about the number; its messages are kept
        │  ──> held         ProTexting answered 422 about the business's set-up (or one we
        │                   cannot read): kept until an operator queues it again
        │  ──> failed       gave up after the configured attempts or age
        └─ (retry later)    timeout, refused connection, 5xx, 429, 401/403, 200/3xx, pacing
    duplicate               the same call for the same number within the window:
                            the record is kept, ProTexting is not called again
    failed, held ──> pending   an operator's `optin retry-failed` (`--held`)

This module holds the rules only: the states, what an outcome does to a job
(`transition()`), the retry policy and how a kind's payload is stored. Storing jobs,
leasing and settling them is `app.storage.Outbox`'s.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .upstream import Accepted, OptIn, Outcome, Rejected, Unavailable


class State(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    # Refused for the business's set-up (its groups, words, credit, account), not for
    # the number: sent again once the set-up is fixed (`optin retry-failed --held`).
    HELD = "held"


class Kind(enum.StrEnum):
    """What a job asks of ProTexting. Each kind has its payload type and its own
    record (a signup's consent record for an opt-in)."""

    OPT_IN = "opt_in"

    @property
    def priority(self) -> int:
        """Due jobs are taken lowest first (an opt-out, when it comes, before any opt-in)."""
        return _PRIORITY[self]


_PRIORITY = {Kind.OPT_IN: 1}

# The request a job sends: one type per kind.
Payload = OptIn


def kind_of(payload: Payload) -> Kind:
    match payload:
        case OptIn():
            return Kind.OPT_IN
    raise TypeError(f"not a job's payload: {payload!r}")


def encode(payload: Payload) -> dict[str, Any]:
    """A payload as the JSON the job row keeps."""
    match payload:
        case OptIn():
            return {
                "phone": payload.phone,
                "group_ids": list(payload.group_ids),
                "cta_message": payload.cta_message,
                "confirm_message": payload.confirm_message,
                "send_cta_message": payload.send_cta_message,
            }
    raise TypeError(f"not a job's payload: {payload!r}")


def decode(kind: Kind, data: dict[str, Any]) -> Payload:
    """The payload of a job of `kind` from its stored JSON."""
    match kind:
        case Kind.OPT_IN:
            return OptIn(
                phone=data["phone"],
                group_ids=tuple(data["group_ids"]),
                cta_message=data.get("cta_message"),
                confirm_message=data.get("confirm_message"),
                send_cta_message=bool(data.get("send_cta_message")),
            )
    raise ValueError(f"unknown kind of job: {kind!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 12
    max_age: timedelta = timedelta(days=1)
    base: float = 5.0
    cap: float = 1800.0

    def backoff(self, attempts: int, rng: random.Random | None = None) -> float:
        """Exponential backoff with full jitter (AWS architecture blog): U(0, min(cap, base*2^n))."""
        ceiling = min(self.cap, self.base * 2 ** max(0, attempts - 1))
        return (rng or random).uniform(0, ceiling)


@dataclass(frozen=True, slots=True)
class Job:
    """One stored call to ProTexting. Its id is its record's (a signup's id for an opt-in)."""

    id: int
    kind: Kind
    payload: Payload
    state: State
    attempts: int
    created_at: datetime
    # The number the call is for, and the campaign it came from (None for a kind without one).
    phone: str
    campaign: str | None
    # For a duplicate: the state of the earlier job it repeats.
    earlier: State | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """What one outcome does to a pending job."""

    state: State
    attempts: int
    retry_in: float | None = None  # seconds; set when the row stays pending
    error: str | None = None
    messages: list[dict[str, str | int | None]] | None = None


def transition(
    job: Job, outcome: Outcome, *, now: datetime, policy: RetryPolicy, rng: random.Random | None = None
) -> Transition:
    """The delivery state machine, as a pure function."""
    match outcome:
        case Accepted():
            return Transition(State.DELIVERED, job.attempts + 1)
        case Rejected():
            # ProTexting's words, and its code where it gave one, kept in the record.
            messages: list[dict[str, str | int | None]] = [
                {"field": e.field, "message": e.message} | ({"code": e.code} if e.code is not None else {})
                for e in outcome.errors
            ]
            if outcome.about_number:
                return Transition(State.REJECTED, job.attempts + 1, messages=messages)
            cause = "; ".join(c.text for c in outcome.causes)
            return Transition(State.HELD, job.attempts + 1, error=cause, messages=messages)
        case Unavailable() if outcome.unauthorized or outcome.rate_limited or outcome.misconfigured:
            # Not this job's fault: the account, the set-up or the pace. Wait without
            # using up an attempt; the caller pauses all delivery as well.
            wait = outcome.rate_limit.reset if outcome.rate_limited and outcome.rate_limit.reset else policy.base
            return Transition(State.PENDING, job.attempts, retry_in=wait, error=outcome.reason)
        case Unavailable():
            attempts = job.attempts + 1
            too_old = now - job.created_at >= policy.max_age
            if attempts >= policy.max_attempts or too_old:
                return Transition(State.FAILED, attempts, error=outcome.reason)
            return Transition(State.PENDING, attempts, retry_in=policy.backoff(attempts, rng), error=outcome.reason)
    raise TypeError(f"not an outcome: {outcome!r}")


def describe(outcome: Outcome, step: Transition) -> str:
    """The line an outcome adds to a job's history."""
    match outcome:
        case Accepted() if not outcome.verified:
            return f"ProTexting accepted (HTTP {outcome.status}), unverified: {outcome.reason}; not sent again"
        case Accepted():
            return f"ProTexting accepted (HTTP {outcome.status})"
        case Rejected() if step.state == State.HELD:
            return f"held: ProTexting refused it for the set-up: {step.error}"
        case Rejected():
            return "ProTexting refused: " + "; ".join(e.message for e in outcome.errors)
        case Unavailable():
            if step.state == State.FAILED:
                return f"gave up after {step.attempts} attempts: {outcome.reason}"
            return f"{outcome.reason}; retry in {step.retry_in:.1f}s"
    return ""
