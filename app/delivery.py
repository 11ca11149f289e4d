"""Delivery: from a stored consent record to ProTexting, at the shared pace, once.

`Delivery.submit()` is what a signup request calls: it stores the consent record
(committed before anything else happens), then tries ProTexting at once with a short
deadline so a refusal can still be shown beside the field. Whatever is not settled by
the deadline stays pending and the person is thanked; the attempt itself is not
cancelled, so a slow 201 is recorded rather than sent twice. It ends by the call's own
deadline (`ProTexting.deadline`), which the lease outlives: no other worker can take
the signup while a call for it is still open.

`Delivery.run()` is the worker: it claims due pending signups under a lease, waits for
the pace, calls ProTexting and records the outcome. It runs inside the app (lifespan)
or on its own (`optin worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .consent import ConsentRecord
from .metrics import Metrics
from .outbox import Job, State, Transition, transition
from .pacing import Pacer
from .storage import Outbox, unreachable, utcnow
from .upstream import Accepted, OptIn, Outcome, ProTexting, Rejected, Unavailable

logger = logging.getLogger(__name__)

# How long the worker sleeps when the queue is empty before looking again (another
# replica may have queued work); a local signup wakes it sooner.
POLL_SECONDS = 1.0
# After a 401/403 nothing can be delivered until someone fixes the token; after a 200
# or a redirect, until someone fixes PROTEXTING_API_URL.
UNAUTHORIZED_PAUSE_SECONDS = 60.0
# A lease must outlive the call made under it by this much: time to record the outcome
# (and share a pause) before the signup may come due for someone else.
LEASE_MARGIN_SECONDS = 2.0
# How long shutdown waits for calls in flight before giving up on them.
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Submitted:
    """Where a new signup stands when the person gets their answer."""

    signup: Job
    state: State
    rejected: Rejected | None = None
    # For a duplicate: where the earlier signup of the same number stands.
    earlier: State | None = None
    # False for a 201 whose body could not be read: delivered, but not for sure.
    verified: bool = True

    @property
    def waiting(self) -> bool:
        """True while no text is known to be sent (the thanks page says "shortly"): a
        held signup too, which goes once the business has fixed its set-up."""
        return self.state in _WAITING or self.earlier in _WAITING or not self.verified


_WAITING = frozenset({State.PENDING, State.HELD})


class Delivery:
    def __init__(
        self,
        *,
        outbox: Outbox,
        protexting: ProTexting,
        pacer: Pacer,
        inline_deadline: float = 3.0,
        duplicate_window: timedelta = timedelta(minutes=10),
        concurrency: int = 4,
        name: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        if outbox.lease.total_seconds() < protexting.deadline + LEASE_MARGIN_SECONDS:
            raise ValueError(
                f"a lease of {outbox.lease.total_seconds():g}s does not outlive a call to ProTexting: it must be at "
                f"least the call's deadline ({protexting.deadline:g}s) + {LEASE_MARGIN_SECONDS:g}s"
            )
        self.outbox = outbox
        self.protexting = protexting
        self.pacer = pacer
        self.inline_deadline = inline_deadline
        self.duplicate_window = duplicate_window
        self.concurrency = concurrency
        # Deliveries, calls to ProTexting, pace waits and pauses (app.metrics).
        self.metrics = metrics if metrics is not None else Metrics()
        self.worker_id = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[tuple[Transition, Outcome]]] = set()
        self._workers: list[asyncio.Task[None]] = []
        self._database_down = False

    # -- the request path -------------------------------------------------------

    async def submit(self, record: ConsentRecord, optin: OptIn) -> Submitted:
        # The pace is asked first, so that a signup that must wait is stored unleased,
        # ready for the worker, in the same write (a duplicate wastes its slot: rare).
        slot = not self._stop.is_set() and await self.pacer.try_acquire()
        signup = await self.outbox.add(
            record, optin, leased_by=self.worker_id if slot else None, duplicate_window=self.duplicate_window
        )
        if signup.state == State.DUPLICATE:
            return Submitted(signup, State.DUPLICATE, earlier=signup.earlier)
        if not slot:
            self._wake.set()
            return Submitted(signup, State.PENDING)

        answered: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        attempt = asyncio.create_task(self._deliver(signup, answered))
        self._inflight.add(attempt)
        attempt.add_done_callback(self._finished)
        # The person's answer needs ProTexting's, not its record: the outcome is
        # stored by the attempt while the answer goes out (a crash in between leaves
        # the row leased, and delivered again after the lease, as it would a moment
        # earlier). asyncio.wait leaves the attempt running past the deadline
        # (wait_for would cancel it, and a cancelled call may still have sent a text).
        waits: set[asyncio.Future[Any]] = {answered, attempt}
        await asyncio.wait(waits, timeout=self.inline_deadline, return_when=asyncio.FIRST_COMPLETED)
        if not answered.done():
            return Submitted(signup, State.PENDING)
        outcome = answered.result()
        step = transition(signup, outcome, now=utcnow(), policy=self.outbox.policy)
        verified = not isinstance(outcome, Accepted) or outcome.verified
        # Only a refusal of the number goes back to the person; a held one is thanked.
        rejected = outcome if isinstance(outcome, Rejected) and step.state == State.REJECTED else None
        return Submitted(signup, step.state, rejected, verified=verified)

    def wake(self) -> None:
        """Look for due signups now (an operator queued some again), not at the next poll."""
        self._wake.set()

    async def settled(self) -> None:
        """Wait until the outcomes of the attempts under way are stored."""
        while self._inflight:
            await asyncio.wait(set(self._inflight))

    def _finished(self, attempt: asyncio.Task[tuple[Transition, Outcome]]) -> None:
        self._inflight.discard(attempt)
        if not attempt.cancelled() and attempt.exception() is not None:
            # The row keeps its lease and comes due again when it ends.
            logger.error("inline delivery attempt failed: %r", attempt.exception())

    # -- the worker -------------------------------------------------------------

    def start(self) -> None:
        """Run the worker in the background of the current event loop."""
        self._workers = [asyncio.create_task(self.run(), name=f"delivery-{i}") for i in range(self.concurrency)]

    async def stop(self) -> None:
        """Stop claiming; let calls in flight finish and record; release what is held."""
        self._stop.set()
        self._wake.set()
        pending = [*self._workers, *self._inflight]
        if pending:
            _, late = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
            for task in late:
                task.cancel()
            # Rows of cancelled attempts keep their lease and come due when it ends.
            await asyncio.gather(*late, return_exceptions=True)
        self._workers = []

    async def run(self) -> None:
        """Deliver due signups until `stop()`."""
        while not self._stop.is_set():
            try:
                delivered = await self._step()
            except Exception as exc:
                # A database hiccup must not kill the worker; the lease protects the row.
                self._step_failed(exc)
                delivered = False
            else:
                if self._database_down:
                    self._database_down = False
                    logger.info("database answers again: delivery resumes")
            if not delivered:
                await self._idle()

    def _step_failed(self, exc: Exception) -> None:
        if not unreachable(exc):
            logger.exception("delivery worker step failed; retrying shortly")
        elif not self._database_down:
            # Once an outage, not a traceback a second: the worker asks again each poll.
            self._database_down = True
            logger.error("database unreachable (%s): delivery waits until it answers", type(exc).__name__)
        else:
            logger.debug("database still unreachable (%s)", type(exc).__name__)

    async def drain(self) -> None:
        """Deliver until nothing is due, or until ProTexting asks for a pause (a 429,
        a bad token): for `optin worker --once`, which must end."""
        while await self.pacer.paused_for() <= 0 and await self._step():
            pass

    async def _step(self) -> bool:
        paused = await self.pacer.paused_for()
        if paused > 0:
            await _wait(self._stop, min(paused, POLL_SECONDS))
            return True
        claimed = await self.outbox.claim(self.worker_id, limit=1)
        if not claimed:
            return False
        signup = claimed[0]
        # The slot wait, the call and recording its outcome all fit in the lease, so
        # no other worker can claim the row while this one may still be sending it.
        wait = self.outbox.lease.total_seconds() - self.protexting.deadline - LEASE_MARGIN_SECONDS
        waited = time.monotonic()
        got_slot = await self.pacer.acquire(self._stop, timeout=wait)
        self.metrics.pacing_wait_seconds.observe(time.monotonic() - waited)
        if not got_slot:
            await self.outbox.release(signup, worker=self.worker_id, reason="no slot before shutdown or lease end")
            return False
        await self._deliver(signup)
        return True

    async def _idle(self) -> None:
        self._wake.clear()
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(self._stop.wait())]
        _, pending = await asyncio.wait(waits, timeout=POLL_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()

    # -- one attempt ------------------------------------------------------------

    async def _deliver(
        self, signup: Job, answered: asyncio.Future[Outcome] | None = None
    ) -> tuple[Transition, Outcome]:
        called = time.monotonic()
        outcome = await self._call(signup)
        self.metrics.protexting_seconds.observe(time.monotonic() - called)
        self.metrics.protexting_responses.labels(_status_of(outcome)).inc()
        # A pause ProTexting asks for holds before anyone (the next signup included)
        # can ask for a slot.
        await self._respect(outcome, signup)
        if answered is not None and not answered.done():
            answered.set_result(outcome)
        step = await self.outbox.settle(signup, outcome, worker=self.worker_id)
        self.metrics.deliveries.labels(_RESULTS.get(step.state, str(step.state))).inc()
        if isinstance(outcome, Rejected):
            self._refused_for_set_up(signup, outcome, step)
        logger.info(
            "signup %s (%s): %s after %s attempt(s)",
            signup.id,
            signup.campaign,
            step.state,
            step.attempts,
            extra={"campaign": signup.campaign, "outcome": str(step.state)},
        )
        return step, outcome

    def _refused_for_set_up(self, signup: Job, outcome: Rejected, step: Transition) -> None:
        """Tell the operator what ProTexting says is wrong with the set-up: the person
        was thanked (held) or told only of the number, so nobody else will. ProTexting's
        words are quoted, never the token (no part of a call's URL is in them)."""
        causes = outcome.causes
        if not causes:
            return
        for cause in causes:
            self.metrics.held.labels(cause.kind).inc()
        said = "; ".join(cause.text for cause in causes)
        extra = {"campaign": signup.campaign, "outcome": str(step.state), "cause": causes[0].kind}
        if step.state == State.HELD:
            logger.error(
                "signup %s (%s) held: ProTexting refused it for the set-up: %s. Fix that, then run "
                "`optin retry-failed --held` to send the held signups",
                signup.id, signup.campaign, said, extra=extra,
            )  # fmt: skip
        else:
            logger.error(
                "signup %s (%s) refused for its number; ProTexting also refused the set-up: %s",
                signup.id, signup.campaign, said, extra=extra,
            )  # fmt: skip

    async def _call(self, job: Job) -> Outcome:
        """The call to ProTexting a job of its kind makes."""
        match job.payload:
            case OptIn():
                return await self.protexting.opt_in(job.payload)

    async def _respect(self, outcome: Outcome, signup: Job) -> None:
        """Slow every replica down when ProTexting says so."""
        limits = outcome.rate_limit
        if isinstance(outcome, Accepted) and not outcome.verified:
            logger.warning(
                "signup %s: ProTexting answered 201 but its answer could not be checked (%s): "
                "recorded as delivered, and not sent again",
                signup.id,
                outcome.reason,
            )
        if isinstance(outcome, Unavailable) and outcome.unauthorized:
            logger.error(
                "ProTexting refused the access token (HTTP %s): delivery paused; check PROTEXTING_ACCESS_TOKEN",
                outcome.status,
            )
            self.metrics.delivery_pauses.labels("unauthorized").inc()
            await self.pacer.pause(UNAUTHORIZED_PAUSE_SECONDS)
        elif isinstance(outcome, Unavailable) and outcome.misconfigured:
            # A wrong URL would otherwise swallow every signup as "delivered".
            logger.error(
                "the opt-in call was answered HTTP %s, which ProTexting never sends: delivery paused; "
                "check PROTEXTING_API_URL",
                outcome.status,
            )
            self.metrics.delivery_pauses.labels("misconfigured").inc()
            await self.pacer.pause(UNAUTHORIZED_PAUSE_SECONDS)
        elif isinstance(outcome, Unavailable) and outcome.rate_limited:
            self.metrics.delivery_pauses.labels("rate_limited").inc()
            wait = limits.reset if limits.reset else self.pacer.interval
            logger.warning("ProTexting rate limit hit: pausing delivery for %.0fs", wait)
            await self.pacer.pause(wait)
        elif limits.remaining == 0 and limits.reset:
            # The allowance is spent; one call's worth refills in reset/limit seconds.
            await self.pacer.pause(limits.reset / limits.limit if limits.limit else limits.reset)
        elif isinstance(outcome, Unavailable):
            logger.warning("ProTexting unavailable for signup %s: %s", signup.id, outcome.reason)


# A settled attempt's state, as `optin_deliveries_total{result}` counts it.
_RESULTS = {
    State.DELIVERED: "delivered",
    State.REJECTED: "rejected",
    State.FAILED: "failed",
    State.PENDING: "retry",
    State.DUPLICATE: "duplicate",
    State.HELD: "held",
}


def _status_of(outcome: Outcome) -> str:
    """The HTTP status ProTexting answered, for `optin_protexting_responses_total`."""
    if isinstance(outcome, Accepted):
        return str(outcome.status)
    if isinstance(outcome, Rejected):
        return "422"
    return str(outcome.status) if outcome.status is not None else "none"


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
