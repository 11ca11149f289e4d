"""The writer: every write this process makes to the database, in order, grouped.

Group commit. Writes queued with `submit()` (new jobs and their records, outcomes,
releases) wait while one transaction is being written, and the next transaction takes
them all: one BEGIN, one COMMIT and one fsync for a whole batch, and a few statements
for it instead of a few per write. That is what lets a burst be absorbed (README,
Performance). `run()` is a transaction of its own (a claim, an operator's retry, the
disclosure texts) in the same order.

On a SQLite file one thread of the writer's own owns every write: SQLite has one
writer at a time, and its busy handler waits by sleeping (1, 2, 5, 10 ms ...), so this
process's transactions queue here instead, in order, without sleeps; and a whole
transaction runs in one trip to that thread, where aiosqlite would make about twenty.
On PostgreSQL, whose driver is natively async, each transaction runs on the engine.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .engine import thread_engine_for, unreachable

Item = TypeVar("Item")
Result = TypeVar("Result")

# Enough to absorb a burst in a few transactions, small enough to keep each short.
MAX_BATCH = 200


@dataclass(slots=True)
class _Queued(Generic[Item]):
    item: Item
    future: asyncio.Future[Any]


def _resolve(future: asyncio.Future[Any], *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the caller gave up waiting (what it asked for is written all the same)
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def next_batch(
    queue: list[_Queued[Item]], key: Callable[[Item], Hashable | None]
) -> tuple[list[_Queued[Item]], list[_Queued[Item]]]:
    """The writes for one transaction, and the rest. Two writes of the same `key`
    (the same row, or a second signup of the same number: a double click) are not
    written together: the second waits for the next transaction, and sees what the
    first wrote."""
    batch: list[_Queued[Item]] = []
    seen: set[Hashable | None] = set()
    for index, queued in enumerate(queue):
        k = key(queued.item)
        if len(batch) == MAX_BATCH or (k is not None and k in seen):
            return batch, queue[index:]
        seen.add(k)
        batch.append(queued)
    return batch, []


class Writer(Generic[Item]):
    """Writes to the database behind `engine`. `write_batch(conn, items)` writes queued
    items in one transaction and returns a result per item, in order; `key(item)`
    names what an item writes (None: nothing another item of its batch could)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        write_batch: Callable[[Connection, list[Item]], list[Any]],
        key: Callable[[Item], Hashable | None],
    ) -> None:
        self.engine = engine
        self._write_batch = write_batch
        self._key = key
        # SQLite: this process's transactions take turns here rather than in SQLite's
        # busy handler (every transaction begins IMMEDIATE: app.storage.engine).
        self._serial = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self._thread_engine = thread_engine_for(engine)
        # Its own thread: the default executor also runs other libraries' work (the
        # `limits` memory storage's expiry, DNS lookups), which must not queue a commit.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="storage-writer") if self._thread_engine else None
        # The thread's own connection (`_in_thread`): used only on that thread.
        self._connection: Connection | None = None
        self._queue: list[_Queued[Item]] = []
        self._writing = False
        self._task: asyncio.Future[None] | None = None

    async def close(self) -> None:
        if self._thread_engine is not None and self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close_in_thread)
            self._thread.shutdown()

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A transaction for reads, on the engine (on SQLite in turn with the writes)."""
        if self._serial is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._serial, self.engine.begin() as conn:
            yield conn

    async def run(self, work: Callable[[Connection], Result]) -> Result:
        """Run `work(conn)` in a transaction of its own; its result once committed."""
        if self._thread is not None:
            assert self._serial is not None
            async with self._serial:
                return await asyncio.get_running_loop().run_in_executor(
                    self._thread, functools.partial(self._in_thread, work)
                )
        async with self.reading() as conn:
            return await conn.run_sync(work)

    def _in_thread(self, work: Callable[[Connection], Result]) -> Result:
        # The thread keeps its connection from one transaction to the next: taking it
        # from the pool and giving it back (with the pool's rollback) cost a transaction
        # about as much as its statements did (py-spy, signups at 100 ms upstream).
        conn = self._connection
        if conn is None:
            assert self._thread_engine is not None
            conn = self._connection = self._thread_engine.connect()
        try:
            with conn.begin():
                return work(conn)
        except BaseException:
            # Whatever failed, the next transaction starts on a fresh connection.
            self._connection = None
            conn.close()
            raise

    def _close_in_thread(self) -> None:
        assert self._thread_engine is not None
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._thread_engine.dispose()

    async def submit(self, item: Item) -> Any:
        """Write `item` in the next group commit; its result once committed."""
        queued = _Queued(item, asyncio.get_running_loop().create_future())
        self._queue.append(queued)
        if not self._writing:
            self._writing = True
            # Held until it ends: the loop keeps only a weak reference to a task.
            self._task = asyncio.ensure_future(self._write_queue())
        return await queued.future

    async def _write_queue(self) -> None:
        try:
            while self._queue:
                batch, self._queue = next_batch(self._queue, self._key)
                try:
                    results = await self._write([queued.item for queued in batch])
                except Exception as exc:
                    if unreachable(exc):
                        # The database did not answer in time or dropped the connection:
                        # written one by one, or in the next batch, each write would wait
                        # as long again. They fail together; the next write tries afresh.
                        failed, self._queue = [*batch, *self._queue], []
                        for queued in failed:
                            _resolve(queued.future, exception=exc)
                        continue
                    if len(batch) == 1:
                        _resolve(batch[0].future, exception=exc)
                        continue
                    # One bad write must not fail the others: write them one by one.
                    for queued in batch:
                        try:
                            [result] = await self._write([queued.item])
                        except Exception as single:
                            _resolve(queued.future, exception=single)
                        else:
                            _resolve(queued.future, result=result)
                    continue
                for queued, result in zip(batch, results, strict=True):
                    _resolve(queued.future, result=result)
        finally:
            self._writing = False

    async def _write(self, items: list[Item]) -> list[Any]:
        return await self.run(lambda conn: self._write_batch(conn, items))
