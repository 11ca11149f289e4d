"""Revocation wins: an opt-out cancels the signups of its number not yet sent, on both
databases, including the one a worker holds at that moment (before and during its call)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.consent import Disclosure, OptOutRecord
from app.outbox import OPT_OUT_MAX_AGE, Job, Kind, State, transition
from app.storage import Outbox, create_engine
from app.upstream import Accepted, FieldError, OptOut, Rejected, Unavailable
from tests import test_delivery, test_outbox
from tests.test_outbox import POLICY, optin, record

pytestmark = pytest.mark.anyio

NOTICE = Disclosure.of("<p>This stops <strong>every</strong> text message from us.</p>")
PHONE = "12015550123"
WINDOW = timedelta(minutes=10)

# An outbox on each database, as the outbox's own tests have it.
outbox = test_outbox.outbox


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def stop(phone: str = PHONE, **changes: object) -> OptOutRecord:
    values: dict[str, object] = {
        "created_at": datetime.now(UTC),
        "phone": phone,
        "campaign": None,
        "page_url": "https://signup.example/stop",
        "language": "en",
        "notice": NOTICE,
        "client_ip": "203.0.113.8",
        "user_agent": "Mozilla/5.0 (stop)",
    }
    values.update(changes)
    return OptOutRecord(**values)  # type: ignore[arg-type]


async def states(outbox: Outbox, *ids: int) -> list[str]:
    return [(await outbox.get(job_id) or {})["state"] for job_id in ids]


async def test_an_opt_out_cancels_the_pending_signups_of_its_number_and_goes_first(outbox: Outbox) -> None:
    waiting = await outbox.add(record(), optin(), duplicate_window=WINDOW)
    other_campaign = await outbox.add(record(campaign="ALERTS"), optin(), duplicate_window=WINDOW)
    someone_else = await outbox.add(record(phone="12015550999"), optin("12015550999"), duplicate_window=WINDOW)
    opt_out = await outbox.add(stop(), OptOut(PHONE), duplicate_window=WINDOW)

    assert await states(outbox, waiting.id, other_campaign.id, someone_else.id, opt_out.id) == [
        "cancelled", "cancelled", "pending", "pending",
    ]  # fmt: skip
    assert ("cancelled", f"cancelled by opt-out {opt_out.id}") in await outbox.history(waiting.id)
    # The opt-out is taken before any signup, even one stored earlier.
    [first] = await outbox.claim("w")
    assert (first.id, first.kind) == (opt_out.id, Kind.OPT_OUT)


async def test_a_failed_signup_is_cancelled_too_so_retry_failed_never_sends_it(outbox: Outbox) -> None:
    # Older than the policy's maximum age: given up at its first unsuccessful attempt.
    failed = await outbox.add(record(created_at=datetime.now(UTC) - timedelta(hours=2)), optin())
    [job] = await outbox.claim("w")
    await outbox.settle(job, Unavailable("HTTP 503", status=503), worker="w")
    assert await states(outbox, failed.id) == ["failed"]
    await outbox.add(stop(), OptOut(PHONE))

    assert await outbox.retry_failed() == 0
    assert await states(outbox, failed.id) == ["cancelled"]


async def test_a_held_signup_is_cancelled_too_so_retry_failed_held_never_sends_it(outbox: Outbox) -> None:
    held = await outbox.add(record(), optin())
    [job] = await outbox.claim("w")
    await outbox.settle(job, Rejected((FieldError("GroupIds", "Group Ids is invalid."),)), worker="w")
    assert await states(outbox, held.id) == ["held"]  # refused for the set-up, not the number
    await outbox.add(stop(), OptOut(PHONE))

    assert await outbox.retry_failed(held=True) == 0
    assert await states(outbox, held.id) == ["cancelled"]


async def test_a_signup_leased_by_a_worker_waiting_for_its_slot_is_not_sent(outbox: Outbox) -> None:
    await outbox.add(record(), optin())
    [held] = await outbox.claim("w")
    # The opt-out comes while the worker waits for a slot in the pace.
    opt_out = await outbox.add(stop(), OptOut(PHONE))

    # The worker checks before it calls: the signup is not sent.
    assert await outbox.vet(held, worker="w") is False
    assert await states(outbox, held.id) == ["cancelled"]
    # Its lease may still cover a call, so the opt-out waits for it to end: ProTexting
    # gets the opt-out after anything that worker could still send.
    row = await outbox.get(opt_out.id)
    assert row is not None and row["next_attempt_at"] >= datetime.now(UTC) + timedelta(seconds=50)
    assert (await outbox.history(opt_out.id))[0][1].startswith("waits until")


async def test_a_signup_whose_call_is_under_way_is_recorded_as_sent_before_its_opt_out(outbox: Outbox) -> None:
    await outbox.add(record(), optin())
    [held] = await outbox.claim("w")
    assert await outbox.vet(held, worker="w") is True  # the call starts
    opt_out = await outbox.add(stop(), OptOut(PHONE))  # the opt-out comes during it
    await outbox.settle(held, Accepted(201), worker="w")  # ProTexting answers the call

    # Still cancelled (no retry, ever), and its history says the call went out before
    # the opt-out, which ProTexting gets once the lease has run out, after it.
    assert await states(outbox, held.id) == ["cancelled"]
    assert (await outbox.history(held.id))[-1] == (
        "cancelled", "ProTexting accepted (HTTP 201) (sent before its opt-out)",
    )  # fmt: skip
    assert await outbox.claim("w2") == []  # the opt-out waits for the lease
    row = await outbox.get(opt_out.id)
    assert row is not None and row["state"] == "pending"


async def test_an_opt_out_and_a_signup_of_one_number_racing_never_leave_an_older_signup_to_send(
    outbox: Outbox, database_url: str
) -> None:
    # Many at once, from two replicas (two engines, two writers): every signup stamped
    # before the opt-out ends cancelled, whichever commits first; every one stamped
    # after it stays to be sent (new consent).
    engine = create_engine(database_url)
    replica = Outbox(engine, policy=POLICY, lease=timedelta(seconds=60))
    base = datetime.now(UTC)
    numbers = [f"1201555{n:04d}" for n in range(3000, 3020)]
    signups = [
        outbox.add(record(phone=n, created_at=base - timedelta(milliseconds=1 + i % 2 * -2)), optin(n),
                   duplicate_window=WINDOW)
        for i, n in enumerate(numbers)
    ]  # fmt: skip
    stops = [replica.add(stop(n, created_at=base), OptOut(n), duplicate_window=WINDOW) for n in numbers]
    try:
        added = await asyncio.gather(*[job for pair in zip(signups, stops, strict=True) for job in pair])
    finally:
        await replica.close()
        await engine.dispose()
    for i, number in enumerate(numbers):
        signup = added[2 * i]
        expected = "cancelled" if signup.created_at <= base else "pending"
        assert await states(outbox, signup.id) == [expected], (number, signup.created_at, base)


async def test_the_same_number_twice_is_sent_once_and_a_signup_between_undoes_that(outbox: Outbox) -> None:
    first = await outbox.add(stop(), OptOut(PHONE), duplicate_window=WINDOW)
    again = await outbox.add(stop(), OptOut(PHONE), duplicate_window=WINDOW)
    assert await states(outbox, first.id, again.id) == ["pending", "duplicate"]

    # A new signup after the opt-out is new consent: sent, not a duplicate of the one
    # before the opt-out, and the next opt-out is sent again.
    signup = await outbox.add(record(), optin(), duplicate_window=WINDOW)
    assert signup.state == State.PENDING
    third = await outbox.add(stop(), OptOut(PHONE), duplicate_window=WINDOW)
    assert await states(outbox, signup.id, third.id) == ["cancelled", "pending"]


def test_an_opt_out_is_not_given_up_after_a_few_attempts_but_after_a_week() -> None:
    now = datetime.now(UTC)
    job = Job(1, Kind.OPT_OUT, OptOut(PHONE), State.PENDING, 100, now - timedelta(days=2), PHONE, None)
    down = Unavailable("HTTP 503", status=503)
    assert transition(job, down, now=now, policy=POLICY).state == State.PENDING
    old = dataclasses.replace(job, created_at=now - OPT_OUT_MAX_AGE)
    assert transition(old, down, now=now, policy=POLICY).state == State.FAILED


build = test_delivery.build


async def test_signups_queue_behind_an_opt_out_waiting_for_the_pace(build: Any) -> None:
    async with build(rate="100/second") as rig:
        # The worker takes the opt-out and waits for its slot (held there by the test:
        # the pace has room, so a signup could take a slot at once).
        waiting, go_on = asyncio.Event(), asyncio.Event()
        acquire = rig.pacer.acquire

        async def held(*args: Any, **kwargs: Any) -> bool:
            waiting.set()
            await go_on.wait()
            return await acquire(*args, **kwargs)

        rig.pacer.acquire = held
        await rig.delivery.queue(stop(), OptOut(PHONE))
        rig.delivery.start()
        await asyncio.wait_for(waiting.wait(), timeout=10)
        # A signup now does not take a slot ahead of the revocation: it is stored for
        # the worker, which sends the opt-out first.
        other = "12015550999"
        submitted = await rig.delivery.submit(test_delivery.consent(other), test_delivery.optin(other))
        assert submitted.state == State.PENDING
        assert rig.fake.calls == [] and rig.fake.opt_outs == []
        go_on.set()
        await asyncio.wait_for(rig.delivery.drain(), timeout=10)
        await rig.delivery.settled()
        assert [call["PhoneNumber"] for call in rig.fake.opt_outs] == [PHONE]
