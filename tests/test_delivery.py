"""Delivery: the inline attempt, the worker, pacing against ProTexting's limit, idempotency.

ProTexting is the in-process fake (`app.sandbox.FakeProTexting`), which speaks the
documented contract and, when asked, enforces a rate limit the way the provider's
leaky bucket does; the client reaches it through httpx's ASGI transport, so the real
client code runs.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app import upstream
from app.consent import ConsentRecord, Disclosure
from app.delivery import LEASE_MARGIN_SECONDS, Delivery
from app.outbox import RetryPolicy, State
from app.pacing import Pacer
from app.sandbox import FakeProTexting
from app.storage import Outbox, create_engine, migrate
from app.upstream import OptIn

from .conftest import FakeUpstream, answers

pytestmark = pytest.mark.anyio

DISCLOSURE = Disclosure.of("<p>Recurring automated marketing texts. Reply <strong>STOP</strong> to cancel.</p>")
GOOD = "12015550123"


# Frozen, so one instance can be every default.
FAST_RETRIES = RetryPolicy(max_attempts=3, base=0.01, cap=0.05)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def consent(phone: str = GOOD, campaign: str = "JOIN") -> ConsentRecord:
    return ConsentRecord(
        created_at=datetime.now(UTC),
        campaign=campaign,
        phone=phone,
        group_ids=(1,),
        disclosure_sha256=DISCLOSURE.sha256,
        page_url=f"https://signup.example/{campaign}",
        source={},
        client_ip="198.51.100.4",
        user_agent="test",
    )


def optin(phone: str = GOOD) -> OptIn:
    return OptIn(phone=phone, group_ids=(1,))


@dataclass
class Rig:
    delivery: Delivery
    outbox: Outbox
    fake: FakeProTexting
    pacer: Pacer

    async def states(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, state, count in await self.outbox.counts():
            counts[state] = counts.get(state, 0) + count
        return counts

    async def make_due(self) -> None:
        """Skip the backoff: every pending row is due now."""
        async with self.outbox.engine.begin() as conn:
            await conn.execute(text("UPDATE jobs SET next_attempt_at = created_at WHERE state = 'pending'"))


Build = Callable[..., Any]

# Set each time a rig's outbox records an outcome: what `_until` waits on, not a timer.
# One per test (an asyncio.Event belongs to one event loop), made by `build`.
_recorded: asyncio.Event


def _watch(outbox: Outbox) -> Outbox:
    settle = outbox.settle

    async def settle_and_tell(*args: Any, **kwargs: Any) -> Any:
        try:
            return await settle(*args, **kwargs)
        finally:
            _recorded.set()

    outbox.settle = settle_and_tell  # an observer: the call itself is unchanged
    return outbox


@pytest.fixture
async def build(database_url: str) -> AsyncIterator[Build]:
    global _recorded
    _recorded = asyncio.Event()
    async with AsyncExitStack() as stack:
        engine = create_engine(database_url)
        stack.push_async_callback(engine.dispose)
        await migrate(engine)

        @asynccontextmanager
        async def make(
            *,
            rate: str = "100/second",
            fake: FakeProTexting | None = None,
            deadline: float = 2.0,
            window: timedelta = timedelta(minutes=10),
            policy: RetryPolicy = FAST_RETRIES,
            concurrency: int = 2,
            transport: httpx.AsyncBaseTransport | None = None,
            base_url: str = "http://protexting.test/v1",
            upstream_deadline: float = upstream.DEFAULT_DEADLINE,
            lease: float = 30,
            network: bool = False,
        ) -> AsyncIterator[Rig]:
            fake = fake or FakeProTexting(token="t")
            if not network:  # with `network`: the real one, to `base_url`
                transport = transport or httpx.ASGITransport(fake.app())
            signed = upstream.token_transport(token="t", transport=transport)
            protexting = upstream.ProTexting(signed, base_url=base_url, deadline=upstream_deadline)
            pacer = Pacer(rate)
            outbox = _watch(Outbox(engine, policy=policy, lease=timedelta(seconds=lease)))
            await outbox.remember_disclosures([DISCLOSURE])
            delivery = Delivery(
                outbox=outbox,
                protexting=protexting,
                pacer=pacer,
                inline_deadline=deadline,
                duplicate_window=window,
                concurrency=concurrency,
            )
            try:
                yield Rig(delivery, outbox, fake, pacer)
            finally:
                await delivery.stop()
                await outbox.close()
                await protexting.aclose()
                await pacer.close()

        yield make


async def test_a_signup_is_delivered_inline_with_one_call(build: Build) -> None:
    async with build() as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        assert submitted.state == State.DELIVERED
        assert [call["PhoneNumber"] for call in rig.fake.calls] == [GOOD]
        # The answer goes out with ProTexting's; its record follows at once.
        await rig.delivery.settled()
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["state"] == "delivered" and row["attempts"] == 1


async def test_a_refusal_comes_back_to_the_form_and_is_recorded(build: Build) -> None:
    async with build() as rig:
        submitted = await rig.delivery.submit(consent("12015550101"), optin("12015550101"))
        assert submitted.state == State.REJECTED
        assert submitted.rejected is not None
        assert [e.message for e in submitted.rejected.number_errors] == ["Phone number is opted out."]
        await rig.delivery.settled()
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["upstream_messages"][0]["message"] == "Phone number is opted out."


async def test_while_protexting_is_down_signups_wait_and_are_delivered_once_it_is_back(build: Build) -> None:
    fake = FakeProTexting(token="t", down=True)
    async with build(fake=fake, policy=RetryPolicy(max_attempts=50, base=0.01, cap=0.05)) as rig:
        phones = [f"120155501{n:02d}" for n in range(10, 20)]
        results = [await rig.delivery.submit(consent(p), optin(p)) for p in phones]
        assert {r.state for r in results} == {State.PENDING}
        assert fake.calls == []  # the fake records only calls it accepted for processing

        rig.delivery.start()
        # The worker retries against a fake that is still down.
        first = results[0].signup.id
        await _until(lambda: _attempted(rig.outbox, first, times=2), True)
        fake.down = False
        await _until(lambda: rig.states(), {"delivered": 10})
        assert sorted(call["PhoneNumber"] for call in fake.calls) == phones  # each exactly once


async def test_a_slow_protexting_gets_the_thanks_page_and_no_second_call(build: Build) -> None:
    fake = FakeProTexting(token="t", latency=0.5)
    async with build(fake=fake, deadline=0.05) as rig:
        rig.delivery.start()
        started = asyncio.get_running_loop().time()
        submitted = await rig.delivery.submit(consent(), optin())
        assert submitted.state == State.PENDING
        assert asyncio.get_running_loop().time() - started < 0.4  # answered at the deadline
        # The attempt was not cancelled: it finishes in the background and is recorded;
        # the worker, running all along, never sends it again.
        await _until(lambda: rig.states(), {"delivered": 1})
        await rig.delivery.stop()  # any call the worker had open has ended, and is counted
        assert len(fake.calls) == 1


async def test_over_the_pace_a_signup_is_queued_without_a_call(build: Build) -> None:
    async with build(rate="2 per 1 second") as rig:
        states = [
            (await rig.delivery.submit(consent(f"1201555012{n}"), optin(f"1201555012{n}"))).state for n in range(4)
        ]
        assert states == [State.DELIVERED, State.DELIVERED, State.PENDING, State.PENDING]
        assert len(rig.fake.calls) == 2
        rig.delivery.start()
        await _until(lambda: rig.states(), {"delivered": 4})


async def test_a_burst_is_drained_at_the_pace_without_a_single_429(build: Build) -> None:
    # The fake enforces ProTexting's leaky bucket: 5 calls, refilled at 5 per second.
    fake = FakeProTexting(token="t", rate_limit=(5, 1.0))
    async with build(fake=fake, rate="5 per 1 second", concurrency=4) as rig:
        phones = [f"12015551{n:03d}" for n in range(20)]
        results = await asyncio.gather(*(rig.delivery.submit(consent(p), optin(p)) for p in phones))
        assert {r.state for r in results} <= {State.DELIVERED, State.PENDING}
        rig.delivery.start()
        await _until(lambda: rig.states(), {"delivered": 20}, timeout=15)
        assert fake.throttled == 0
        assert sorted(call["PhoneNumber"] for call in fake.calls) == phones


async def test_a_429_pauses_delivery_until_the_reset_without_using_attempts(build: Build) -> None:
    fake = FakeProTexting(token="t", rate_limit=(2, 4.0))
    async with build(fake=fake, rate="100/second") as rig:
        # Another integration of the same account has just used the allowance up.
        fake.spend(2)
        submitted = await rig.delivery.submit(consent("12015550131"), optin("12015550131"))
        assert submitted.state == State.PENDING
        assert fake.throttled == 1
        await rig.delivery.settled()
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["attempts"] == 0 and row["last_error"] == "HTTP 429"
        # X-Rate-Limit-Reset said when the allowance is back: everyone holds off till then.
        assert await rig.pacer.paused_for() > 1
        assert not await rig.pacer.try_acquire()
        rig.delivery.start()
        await _until(lambda: rig.states(), {"delivered": 1}, timeout=10)
        assert fake.throttled == 1


async def test_an_exhausted_allowance_pauses_before_the_429(build: Build) -> None:
    fake = FakeProTexting(token="t", rate_limit=(2, 4.0))
    async with build(fake=fake, rate="100/second") as rig:
        await rig.delivery.submit(consent("12015550140"), optin("12015550140"))
        await rig.delivery.submit(consent("12015550141"), optin("12015550141"))  # Remaining: 0
        third = await rig.delivery.submit(consent("12015550142"), optin("12015550142"))
        assert third.state == State.PENDING
        assert fake.throttled == 0  # we waited instead of asking


async def test_a_bad_token_pauses_delivery_and_logs_an_error(build: Build, caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeProTexting(token="the-right-token")  # the rig sends "t"
    async with build(fake=fake) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        assert submitted.state == State.PENDING
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["attempts"] == 0
        assert await rig.pacer.paused_for() > 30
        assert any(r.levelno == logging.ERROR and "PROTEXTING_ACCESS_TOKEN" in r.getMessage() for r in caplog.records)


async def test_the_same_number_again_within_the_window_is_not_sent_twice(build: Build) -> None:
    async with build() as rig:
        first = await rig.delivery.submit(consent(), optin())
        again = await rig.delivery.submit(consent(), optin())
        other_campaign = await rig.delivery.submit(consent(campaign="ALERTS"), optin())
        assert (first.state, again.state, other_campaign.state) == (State.DELIVERED, State.DUPLICATE, State.DELIVERED)
        assert again.earlier == State.DELIVERED and not again.waiting
        assert len(rig.fake.calls) == 2
        row = await rig.outbox.get(again.signup.id)
        assert row is not None and row["duplicate_of"] == first.signup.id  # consent kept all the same


async def test_simultaneous_submissions_of_one_number_send_once(build: Build) -> None:
    # A double click, or the same person on two replicas at once.
    async with build() as rig:
        results = await asyncio.gather(*(rig.delivery.submit(consent(), optin()) for _ in range(5)))
        assert sorted(r.state for r in results).count(State.DUPLICATE) == 4
        assert len(rig.fake.calls) == 1


async def test_a_duplicate_of_a_signup_still_waiting_is_told_it_is_waiting(build: Build) -> None:
    async with build(fake=FakeProTexting(token="t", down=True)) as rig:
        first = await rig.delivery.submit(consent(), optin())
        again = await rig.delivery.submit(consent(), optin())
        assert first.state == State.PENDING
        assert again.state == State.DUPLICATE and again.earlier == State.PENDING and again.waiting


async def test_with_no_window_every_submission_is_sent(build: Build) -> None:
    async with build(window=timedelta(0)) as rig:
        await rig.delivery.submit(consent(), optin())
        await rig.delivery.submit(consent(), optin())
        assert len(rig.fake.calls) == 2


async def test_gives_up_after_the_configured_attempts_and_the_operator_can_retry(build: Build) -> None:
    fake = FakeProTexting(token="t", down=True)
    async with build(fake=fake, policy=RetryPolicy(max_attempts=3, base=0.01, cap=0.02)) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        rig.delivery.start()
        await _until(lambda: rig.states(), {"failed": 1})
        history = await rig.outbox.history(submitted.signup.id)
        assert history[-1][0] == "failed" and "gave up after 3 attempts" in (history[-1][1] or "")

        fake.down = False
        assert await rig.outbox.retry_failed() == 1
        await _until(lambda: rig.states(), {"delivered": 1})


async def test_the_worker_holds_a_signup_refused_for_the_set_up_and_sends_it_when_asked(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeProTexting(token="t", down=True)
    async with build(fake=fake) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        assert submitted.state == State.PENDING  # ProTexting down while the person waited
        # It comes back, refusing the campaign's groups.
        fake.down, fake.refuse = False, [{"field": "GroupIds", "message": "Group Ids is invalid."}]
        await rig.make_due()
        rig.delivery.start()
        await _until(lambda: rig.states(), {"held": 1})
        [line] = [r for r in caplog.records if r.levelname == "ERROR"]
        assert line.getMessage() == (
            f"signup {submitted.signup.id} (JOIN) held: ProTexting refused it for the set-up: the campaign's "
            "group_ids (GroupIds: 'Group Ids is invalid.'). Fix that, then run `optin retry-failed --held` "
            "to send the held signups"
        )
        assert rig.delivery.metrics.held.labels("group_ids")._value.get() == 1
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["upstream_messages"] == [
            {"field": "GroupIds", "message": "Group Ids is invalid."}
        ]

        fake.refuse = None  # the groups are fixed
        assert await rig.outbox.retry_failed(held=True) == 1
        await _until(lambda: rig.states(), {"delivered": 1})
        assert [call["PhoneNumber"] for call in fake.calls] == [GOOD]


async def test_shutdown_finishes_the_call_in_hand(build: Build) -> None:
    fake = FakeProTexting(token="t", latency=0.4)
    async with build(fake=fake, deadline=0.01) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        assert submitted.state == State.PENDING
        await rig.delivery.stop()
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["state"] == "delivered" and row["leased_by"] is None


async def _until(read: Callable[[], Any], expected: Any, *, timeout: float = 8.0) -> None:
    """Read again each time an outcome is recorded, until `read()` gives `expected`."""
    got = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                _recorded.clear()  # before the read: an outcome recorded during it counts
                if (got := await read()) == expected:
                    return
                await _recorded.wait()
    except TimeoutError:
        raise AssertionError(f"after {timeout:g}s: {got}, wanted {expected}") from None


async def _attempted(outbox: Outbox, signup_id: Any, *, times: int) -> bool:
    row = await outbox.get(signup_id)
    return row is not None and row["attempts"] >= times


# -- answers ProTexting never gives ------------------------------------------------


async def test_a_200_pauses_delivery_keeps_the_signup_and_names_the_url(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    # What a wrong PROTEXTING_API_URL gets: some web server's 200, empty.
    fake = FakeUpstream(answers(200, text=""))
    async with build(transport=httpx.MockTransport(fake)) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        assert submitted.state == State.PENDING and submitted.waiting  # "You'll get a text shortly"
        await rig.delivery.settled()
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["state"] == "pending" and row["attempts"] == 0
        assert "PROTEXTING_API_URL" in row["last_error"]
        # Delivery holds off, as for a bad token, so nothing is swallowed meanwhile.
        assert await rig.pacer.paused_for() > 30
        assert not await rig.pacer.try_acquire()
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("PROTEXTING_API_URL" in message for message in errors)


async def test_a_201_with_an_html_body_is_delivered_unverified_and_not_sent_again(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeUpstream(answers(201, text="<html><body>Created</body></html>"))
    async with build(transport=httpx.MockTransport(fake)) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        # The text may be on its way, so it is delivered; but nobody knows it is.
        assert submitted.state == State.DELIVERED and submitted.waiting
        await rig.delivery.settled()
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["state"] == "delivered"
        history = await rig.outbox.history(submitted.signup.id)
        assert history[-1][0] == "delivered" and "unverified" in (history[-1][1] or "")
        warnings = [r for r in caplog.records if r.name == "app.delivery" and r.levelno == logging.WARNING]
        assert any("201" in r.getMessage() and "not sent again" in r.getMessage() for r in warnings)
        rig.delivery.start()
        await rig.delivery.stop()
        assert len(fake.requests) == 1


async def test_a_429_with_a_reset_of_1e12_pauses_an_hour_at_most(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"X-Rate-Limit-Limit": "60", "X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": "1e12"}
    fake = FakeUpstream(answers(429, {"message": "Rate limit exceeded."}, headers=headers))
    async with build(transport=httpx.MockTransport(fake)) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        assert submitted.state == State.PENDING
        await rig.delivery.settled()
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["state"] == "pending" and row["leased_by"] is None  # recorded, not stuck
        assert 3500 < await rig.pacer.paused_for() <= 3600
        assert any("capped at 3600s" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


# -- one call in flight per signup -------------------------------------------------


async def test_a_lease_shorter_than_a_call_is_refused(build: Build) -> None:
    with pytest.raises(ValueError, match="lease of 6s does not outlive a call"):
        async with build(upstream_deadline=10, lease=6):
            pass


@dataclass
class RawProTexting:
    """A socket server standing in for ProTexting: it reads each request and answers with
    the bytes in `answer`, then hangs up (or, with `hold`, keeps the connection open
    until the client leaves). It counts the calls open per number, as the provider
    would see them."""

    answer: bytes = b""
    hold: bool = False
    calls: list[str] = field(default_factory=list)
    open: dict[str, int] = field(default_factory=dict)
    most_open: int = 0
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        phone = "?"
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            phone = json.loads(await reader.readexactly(length))["PhoneNumber"]
            self.calls.append(phone)
            self.open[phone] = self.open.get(phone, 0) + 1
            self.most_open = max(self.most_open, self.open[phone])
            writer.write(self.answer)
            await writer.drain()
            if self.hold:
                await reader.read()  # until the client hangs up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if phone in self.open:
                self.open[phone] -= 1
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        try:
            yield self.url
        finally:
            server.close()
            await server.wait_closed()


@pytest.mark.parametrize(
    ("answer", "final"),
    [
        # No answer at all: each attempt ends at the deadline and is retried, never
        # while the one before is still open.
        pytest.param(b"", "failed", id="hangs"),
        # A 201 whose body drips in: ProTexting has taken it; one call, never repeated.
        pytest.param(b"HTTP/1.1 201 Created\r\nContent-Length: 100000\r\n\r\n{", "delivered", id="drips"),
    ],
)
async def test_two_workers_never_have_two_calls_open_for_one_signup(
    build: Build, database_url: str, answer: bytes, final: str
) -> None:
    provider = RawProTexting(answer=answer, hold=True)
    phones = [f"12015552{n:03d}" for n in range(10)]
    policy = RetryPolicy(max_attempts=2, base=0.01, cap=0.05)
    # The shortest lease allowed for a 0.3 s deadline.
    options = dict(upstream_deadline=0.3, lease=0.3 + LEASE_MARGIN_SECONDS, policy=policy, network=True)
    async with provider.running() as url, build(base_url=url, **options) as one, build(base_url=url, **options) as two:
        for phone in phones:
            await one.outbox.add(consent(phone), optin(phone))

        async def states() -> dict[str, int]:
            assert provider.most_open <= 1, f"{provider.most_open} calls open at once for one number"
            return await one.states()

        one.delivery.start()
        two.delivery.start()
        await _until(states, {final: 10}, timeout=30)
        await one.delivery.stop()
        await two.delivery.stop()
    assert provider.most_open == 1
    calls = Counter(provider.calls)
    assert calls == {phone: policy.max_attempts if final == "failed" else 1 for phone in phones}


# -- whatever comes back -------------------------------------------------------------

_NUMBERS = st.sampled_from(
    [b"inf", b"-inf", b"nan", b"1e12", b"1e309", b"-1", b"0", b"1", b"60", b"0.5", b"x", b"", b"9" * 400, b"\xff\xfe"]
) | st.integers(-10, 10**13).map(lambda n: str(n).encode())
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["message", "code", "field", "Id", "Number", "status"]) | st.text(max_size=4),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)
_BODIES = st.one_of(
    _JSON.map(lambda value: json.dumps(value).encode()),
    st.sampled_from(
        [
            json.dumps({"Id": 1, "Number": GOOD, "OptedOut": 0, "GroupIds": [1]}).encode(),
            json.dumps({"message": "Confirmation message successfully sent"}).encode(),
            json.dumps([{"field": "PhoneNumber", "message": "Not a mobile number."}]).encode(),
            json.dumps({"name": "Unprocessable entity", "message": "Opted out.", "code": [1], "status": 422}).encode(),
            b"[" * 100_000 + b"]" * 100_000,
            b"<html><body>Welcome</body></html>",
            b"",
            b"x" * (upstream.MAX_ANSWER_BYTES + 1),
        ]
    ),
    st.binary(max_size=100),
)


@st.composite
def raw_answers(draw: st.DrawFn) -> tuple[bytes, bool]:
    """An HTTP answer as bytes on the wire, and whether the server then holds the
    connection open: a status line, headers, a body, its encoding and framing."""
    # Mostly answers ProTexting could give; now and then any status, or no HTTP at all.
    status = draw(st.sampled_from([200, 201, 201, 201, 204, 301, 401, 422, 422, 429, 500, 503, None]))
    if status is None:
        status = draw(st.integers(100, 999))
    line = b"HTTP/1.1 %d Whatever\r\n" % status
    if draw(st.integers(0, 9)) == 0:
        line = draw(
            st.sampled_from(
                [b"HTTP/1.0 201 Created\r\n", b"HTTP/1.1 201\r\n", b"HTTP/1.1 abc\r\n", b"garbage\r\n", b""]
            )
        )
    headers = [b"%s: %s" % item for item in draw(st.dictionaries(st.sampled_from(RATE_HEADERS), _NUMBERS)).items()]
    body = draw(_BODIES)
    encoding = draw(st.sampled_from([None, b"gzip", b"deflate", b"br", b"bogus"]))
    if encoding is not None:
        headers.append(b"Content-Encoding: " + encoding)
        if draw(st.booleans()):  # or leave it undecodable
            body = gzip.compress(body) if encoding == b"gzip" else zlib.compress(body)
    framing = draw(st.sampled_from(["length", "short", "long", "hold", "double", "chunked", "bad-chunked", "close"]))
    if framing in ("length", "short", "long", "hold", "double"):
        length = {"short": max(0, len(body) - 5), "long": len(body) + 10, "hold": len(body) + 10}.get(
            framing, len(body)
        )
        headers.append(b"Content-Length: %d" % length)
        if framing == "double":
            headers.append(b"Content-Length: %d" % (length + 1))
    elif framing == "chunked":
        headers.append(b"Transfer-Encoding: chunked")
        body = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + 4096]), body[i : i + 4096]) for i in range(0, len(body), 4096)
        )
        body += b"0\r\n\r\n"
    elif framing == "bad-chunked":
        headers.append(b"Transfer-Encoding: chunked")
        body = b"zz\r\n" + body
    return line + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body, framing == "hold"


RATE_HEADERS = [b"X-Rate-Limit-Limit", b"X-Rate-Limit-Remaining", b"X-Rate-Limit-Reset"]


@pytest.fixture
async def raw_protexting() -> AsyncIterator[RawProTexting]:
    provider = RawProTexting()
    async with provider.running():
        yield provider


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(answer=raw_answers())
async def test_every_answer_is_an_outcome_that_is_recorded(
    build: Build, raw_protexting: RawProTexting, answer: tuple[bytes, bool]
) -> None:
    raw_protexting.answer, raw_protexting.hold = answer
    async with build(base_url=raw_protexting.url, network=True, upstream_deadline=0.3, window=timedelta(0)) as rig:
        submitted = await rig.delivery.submit(consent(), optin())
        await rig.delivery.settled()

        # The outcome was recorded (no exception left the row leased), the person got
        # an answer, and any pause is an hour at most.
        row = await rig.outbox.get(submitted.signup.id)
        assert row is not None and row["leased_by"] is None
        assert row["state"] in ("pending", "delivered", "rejected", "held", "failed")
        assert submitted.state.value == row["state"]
        assert await rig.pacer.paused_for() <= upstream.MAX_RESET_SECONDS
        if row["state"] == "pending":
            assert submitted.waiting


class _Lines(logging.Handler):
    """The worker's log lines as they come, with an event for the moment a wanted one arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.loop = loop
        self.wanted: tuple[Callable[[list[logging.LogRecord]], bool], asyncio.Event] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.wanted is not None and self.wanted[0](self.records):
            self.wanted[1].set()

    async def until(self, condition: Callable[[list[logging.LogRecord]], bool]) -> None:
        event = asyncio.Event()
        self.wanted = (condition, event)
        if not condition(self.records):
            await asyncio.wait_for(event.wait(), timeout=30)


async def test_a_database_that_stops_answering_is_one_error_not_a_traceback_a_poll(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlsplit

    from app import delivery as delivery_module
    from tests.support.blackhole import Relay

    monkeypatch.setattr(delivery_module, "POLL_SECONDS", 0.05)  # the worker asks again at once
    direct = create_engine(postgres_url)
    await migrate(direct)
    await direct.dispose()
    target = urlsplit(postgres_url)
    lines = _Lines(asyncio.get_running_loop())
    worker_log = logging.getLogger("app.delivery")
    worker_log.addHandler(lines)
    # setLevel, not the attribute: it also clears the levels the loggers cached.
    level = worker_log.level
    worker_log.setLevel(logging.DEBUG)
    with Relay((target.hostname or "127.0.0.1", target.port or 5432)) as relay:
        engine = create_engine(
            postgres_url.replace(target.netloc.split("@")[-1], f"127.0.0.1:{relay.port}"), timeout=0.3
        )
        fake = FakeProTexting(token="t")
        signed = upstream.token_transport(token="t", transport=httpx.ASGITransport(fake.app()))
        protexting = upstream.ProTexting(signed, base_url="http://protexting.test/v1")
        outbox = Outbox(engine, policy=FAST_RETRIES, lease=timedelta(seconds=30))
        delivery = Delivery(outbox=outbox, protexting=protexting, pacer=Pacer("100/second"), concurrency=1)
        try:
            relay.freeze()
            delivery.start()

            def still_down(records: list[logging.LogRecord]) -> bool:
                return sum("still unreachable" in r.getMessage() for r in records) >= 3

            await lines.until(still_down)
            relay.thaw()
            await lines.until(lambda records: any("answers again" in r.getMessage() for r in records))
        finally:
            worker_log.removeHandler(lines)
            worker_log.setLevel(level)
            await delivery.stop()
            await outbox.close()
            await protexting.aclose()
            await engine.dispose()
    errors = [r for r in lines.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [errors[0].getMessage()]
    assert "database unreachable" in errors[0].getMessage() and errors[0].exc_info is None
