"""The console's parts, built by the app's lifespan when OPTIN_ADMIN_PASSWORD_HASH is
set (`open_console`), and read by its endpoints from `app.state.console`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from limits.aio.storage import Storage

from ..consent import digits_of, stored_as
from ..delivery import Delivery
from ..funnel import Funnel
from ..metrics import Metrics
from ..settings import Settings
from ..storage import utcnow
from ..storage.console import AuditEntry, ConsoleStore
from .auth import LoginLimit, Passwords, Sessions

logger = logging.getLogger(__name__)

# The funnel's counts go to the table every this many flushes of the tally (seconds):
# a write a few seconds for a whole burst of views, and a console page writes what
# this process has first, so it shows every view up to the moment it is asked.
FUNNEL_WRITE_FLUSHES = 10

# One number's proof of consent, from the opt-out work (its `proof` data function): the
# number as the operator typed it in, to the records that prove its consent (each a
# mapping of field to value, shown in order). /admin/proof exists once it is set.
ProofLookup = Callable[[str], Awaitable[Sequence[Mapping[str, object]]]]
# The opt-outs of a period (since, until, campaign or None) as (campaign's key, src,
# count): the funnel's column shows them once they are recorded, "—" until then.
OptOutCounts = Callable[[datetime, datetime, str | None], Awaitable[Iterable[tuple[str, str, int]]]]


@dataclass
class Console:
    settings: Settings
    passwords: Passwords
    sessions: Sessions
    login_limit: LoginLimit
    store: ConsoleStore
    funnel: Funnel
    metrics: Metrics
    delivery: Delivery
    proof: ProofLookup | None = None
    opt_outs: OptOutCounts | None = None
    _flushes: int = field(default=0, repr=False)

    async def audit(self, action: str, address: str | None, detail: str | None = None) -> None:
        """One action taken in the console, kept with its time and address."""
        await self.store.record(AuditEntry(utcnow(), action, address, detail))

    async def write_funnel(self) -> None:
        """The funnel's pending counts into the table; kept for the next try when the
        database does not take them."""
        counts = self.funnel.take()
        try:
            await self.store.add_counts(counts)
        except Exception:
            self.funnel.put_back(counts)
            logger.warning("could not write the funnel's counts; kept for the next write", exc_info=True)

    async def flushed(self) -> None:
        """After each flush of the tally (app.main): every so many, write the funnel."""
        self._flushes += 1
        if self._flushes >= FUNNEL_WRITE_FLUSHES:
            self._flushes = 0
            await self.write_funnel()

    async def up_to_date(self) -> None:
        """This process's counts so far, in the table: before a page reads it."""
        self.metrics.flush()
        await self.write_funnel()


@asynccontextmanager
async def open_console(
    settings: Settings, *, delivery: Delivery, metrics: Metrics, counters: Storage
) -> AsyncIterator[Console | None]:
    """The console, or None when OPTIN_ADMIN_PASSWORD_HASH is unset (then /admin is a 404).
    Its funnel reads the tally at each flush; what is pending is written at the end."""
    if settings.admin_password_hash is None:
        yield None
        return
    console = Console(
        settings=settings,
        passwords=Passwords(settings.admin_password_hash.get_secret_value()),
        sessions=Sessions(
            settings.signing_key(), ended=counters, secure=urlsplit(settings.public_url).scheme == "https"
        ),
        login_limit=LoginLimit(counters),
        store=ConsoleStore(delivery.outbox),
        funnel=Funnel(),
        metrics=metrics,
        delivery=delivery,
    )
    secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else None

    async def proof(typed: str) -> list[dict[str, object]]:
        # Under its digits, and under its keyed hash once its person was forgotten.
        digits = digits_of(typed)
        return await delivery.outbox.proof(stored_as(digits, secret)) if digits is not None else []

    console.proof = proof
    console.opt_outs = console.store.opt_outs
    metrics.readers.append(console.funnel.read)
    try:
        yield console
    finally:
        metrics.flush()
        metrics.readers.remove(console.funnel.read)
        await console.write_funnel()
