"""Hot reload of the campaigns file: a new file replaces the campaigns without a restart.

A restart would drop what the process keeps in memory (the pace of calls to ProTexting,
the limits when they are not in Redis) and the connections it holds, so an edit of the
campaigns file is picked up while the service runs: when the file's modification time
(or size, or inode: an editor that saves by renaming) changes, checked every few
seconds, and at once on SIGHUP. The new file is validated whole; only a valid one
replaces the campaigns, in one step, and an invalid one leaves the last good campaigns
serving and logs an ERROR saying what to fix (file, campaign and key).

This module knows when to reload and what a failed one does; what a reload builds and
how it is put in place (the disclosures stored first, then the `Site` swapped) are the
caller's (`app.main`), so it holds no web or storage code.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

from .campaigns import CampaignsError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What tells two versions of the file apart without reading it.
Signature = tuple[int, int, int] | None


def signature(path: Path) -> Signature:
    """The file's modification time, size and inode; None when it cannot be read."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size, found.st_ino)


class CampaignsWatcher(Generic[T]):
    """Reloads the campaigns file at `path` when it changes.

    `build()` reads and validates the file and builds what the service serves (it runs
    in a thread: reading the file and rendering every page would otherwise hold the
    event loop); it raises `CampaignsError` for a file the service cannot use.
    `install(built)` puts a new build in place. A build that raised, or an install that
    raised (the database that stores the new disclosures is down), leaves the running
    campaigns as they are; a failed install is tried again at the next check."""

    def __init__(
        self,
        path: Path,
        build: Callable[[], T],
        install: Callable[[T], Awaitable[None]],
        *,
        interval: float,
        loaded: Signature,
    ) -> None:
        self.path = path
        self._build = build
        self._install = install
        self._interval = interval
        # The version being served: the one start-up loaded (its signature taken
        # before it was read, so an edit made while it was read is not missed).
        self._seen = loaded
        self._wake = asyncio.Event()

    def request(self) -> None:
        """Reload now, whether the file looks changed or not (SIGHUP)."""
        self._wake.set()

    async def check(self, *, force: bool = False) -> bool:
        """Reload if the file changed (or `force`); True when new campaigns were put in place."""
        seen = signature(self.path)
        if seen == self._seen and not force:
            return False
        # Marked seen before it is built: a file that fails is reported once, not at
        # every check, until it changes again.
        self._seen = seen
        try:
            built = await asyncio.to_thread(self._build)
        except CampaignsError as exc:
            logger.error("campaigns file not reloaded, the last good campaigns keep serving: %s", exc)
            return False
        except Exception:
            logger.exception("campaigns file not reloaded, the last good campaigns keep serving: %s", self.path)
            return False
        try:
            await self._install(built)
        except Exception:
            logger.exception("campaigns file %s not put in place; tried again at the next check", self.path)
            self._seen = None
            return False
        logger.info("campaigns reloaded from %s", self.path)
        return True

    async def run(self) -> None:
        """Check every `interval` seconds (0: only on request), until cancelled."""
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self._interval or None)
            except TimeoutError:
                forced = False
            else:
                forced = True
                self._wake.clear()
            await self.check(force=forced)
