"""Retention and erasure, each one transaction: `purge` (records past the retention
period) and `forget` (one person's personal data).

purge   deletes what is older than the cutoff and no longer proves anything in force:
        an opt-in that was never sent (refused, failed, held, cancelled), or one revoked by
        an opt-out itself past the cutoff; every opt-out past it; their jobs and
        history; and the disclosure texts no record points at any more (save those
        a page still shows). A delivered signup no opt-out has revoked is the proof of
        the texts still being sent on it: it is kept, however old.
forget  keeps the number only as a keyed hash (app.consent.forgotten) in every record
        and job of it, and drops the address and user agent. It asks that the
        number's last word be an opt-out ProTexting has taken: the revocation is then
        in force where the texts are sent, and nothing of the number is left to send
        (its opt-ins are all sent, refused or cancelled; a failed or held one is
        cancelled, so `optin retry-failed` cannot send it). A signup made afterwards is new consent
        and is sent as any other.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.engine import Connection

from ..outbox import Kind, State
from .tables import disclosures, job_events, jobs, opt_outs, signups, utcnow


@dataclass(frozen=True, slots=True)
class Purged:
    """What a purge deletes (or, in a dry run, would)."""

    signups: int
    opt_outs: int
    jobs: int
    events: int
    disclosures: int


class CannotForget(Exception):
    """The number cannot be erased yet; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What `forget` changed: how many records of each kind, and the hash kept."""

    hashed: str
    signups: int
    opt_outs: int
    jobs: int


# Opt-ins that never took effect: nothing was sent on them, so nothing needs proving.
_UNSENT = (State.REJECTED.value, State.FAILED.value, State.CANCELLED.value)
# ... and those a purge deletes once past the period: held ones too (never sent).
_PURGED_UNSENT = (*_UNSENT, State.HELD.value)
# What `forget` turns into `cancelled`: what an operator could otherwise send again.
_SENDABLE_LATER = (State.FAILED.value, State.HELD.value)


def _doomed(cutoff: datetime) -> Any:
    """The ids of the jobs (and so records) a purge with this cutoff deletes."""
    later = jobs.alias("later")
    revoked = exists().where(
        later.c.phone == jobs.c.phone,
        later.c.kind == Kind.OPT_OUT.value,
        later.c.created_at >= jobs.c.created_at,
        later.c.created_at < cutoff,
    )
    return select(jobs.c.id).where(
        jobs.c.created_at < cutoff,
        jobs.c.state != State.PENDING.value,
        (jobs.c.kind == Kind.OPT_OUT.value) | jobs.c.state.in_(_PURGED_UNSENT) | revoked,
    )


def purge(conn: Connection, *, cutoff: datetime, keep_texts: Collection[str] | None, apply: bool) -> Purged:
    """Delete (with `apply`; else count) what is past `cutoff`. `keep_texts` are the
    hashes of the disclosures the pages show now: kept even when no record points at
    them, since the next signup will (None: keep every disclosure text)."""
    ids = list(conn.execute(_doomed(cutoff)).scalars())
    counted = _counts(conn, ids)
    texts: list[str] = []
    if keep_texts is not None:
        # The texts that no record left after the purge points at.
        left = [
            ~exists().where(signups.c.disclosure_sha256 == disclosures.c.sha256, signups.c.id.not_in(ids)),
            ~exists().where(opt_outs.c.notice_sha256 == disclosures.c.sha256, opt_outs.c.id.not_in(ids)),
        ]
        orphans = select(disclosures.c.sha256).where(
            disclosures.c.first_shown_at < cutoff, disclosures.c.sha256.not_in(list(keep_texts)), *left
        )
        texts = list(conn.execute(orphans).scalars())
    if apply:
        for chunk in _chunks(ids):
            conn.execute(delete(job_events).where(job_events.c.job_id.in_(chunk)))
            conn.execute(delete(signups).where(signups.c.id.in_(chunk)))
            conn.execute(delete(opt_outs).where(opt_outs.c.id.in_(chunk)))
            conn.execute(delete(jobs).where(jobs.c.id.in_(chunk)))
        for chunk in _chunks(texts):
            conn.execute(delete(disclosures).where(disclosures.c.sha256.in_(chunk)))
    return Purged(**counted, disclosures=len(texts))


def _counts(conn: Connection, ids: list[int]) -> dict[str, int]:
    counts = {"signups": 0, "opt_outs": 0, "jobs": len(ids), "events": 0}
    for chunk in _chunks(ids):
        for name, table, column in (
            ("signups", signups, signups.c.id),
            ("opt_outs", opt_outs, opt_outs.c.id),
            ("events", job_events, job_events.c.job_id),
        ):
            counts[name] += conn.execute(select(func.count()).select_from(table).where(column.in_(chunk))).scalar_one()
    return counts


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    # Bound each statement's parameters (SQLite allows some tens of thousands).
    return [values[i : i + size] for i in range(0, len(values), size)]


# An opt-out ProTexting took, or one it was not sent again for (a duplicate of such).
_TAKEN = (State.DELIVERED.value, State.DUPLICATE.value)


def forget(conn: Connection, *, phone: str, hashed: str) -> Forgotten:
    """Erase one number's personal data (see the module's docstring); raise
    CannotForget while that would leave a revocation not in force or a job to send."""
    found = conn.execute(
        select(jobs.c.id, jobs.c.kind, jobs.c.state, jobs.c.leased_by, jobs.c.payload)
        .where(jobs.c.phone == phone)
        .order_by(jobs.c.created_at.desc(), jobs.c.id.desc())
        .with_for_update()
    ).all()
    if not found:
        raise CannotForget("no record of this number (forgotten already, or never stored)")
    if any(row.state == State.PENDING for row in found):
        raise CannotForget("a job of this number is still on its way to ProTexting; run forget again once it is not")
    last = next((row for row in found if not (row.kind == Kind.OPT_IN and row.state in _UNSENT)), found[0])
    if last.kind != Kind.OPT_OUT or last.state not in _TAKEN:
        raise CannotForget(
            "this number's last record is not an opt-out ProTexting has taken, so it may still be texted: "
            "opt it out first (at /stop), then run forget once the opt-out is delivered"
        )
    now = utcnow()
    events = []
    for row in found:
        payload = {**row.payload, "phone": hashed}
        state = State.CANCELLED if row.kind == Kind.OPT_IN and row.state in _SENDABLE_LATER else row.state
        conn.execute(
            update(jobs).where(jobs.c.id == row.id).values(phone=hashed, payload=payload, state=state, updated_at=now)
        )
        events.append(
            {
                "job_id": row.id,
                "at": now,
                "state": state,
                "detail": "forgotten: number hashed, address and device erased",
            }
        )
    conn.execute(insert(job_events), events)
    erased = {"phone": hashed, "client_ip": None, "user_agent": None}
    signed = conn.execute(update(signups).where(signups.c.phone == phone).values(**erased)).rowcount
    stopped = conn.execute(update(opt_outs).where(opt_outs.c.phone == phone).values(**erased)).rowcount
    return Forgotten(hashed=hashed, signups=signed, opt_outs=stopped, jobs=len(found))
