"""Background work that polls its store: run a pass, and when it found nothing, wait for a wake-up
(a local write) or the poll interval (work from other instances, or left by a crash)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class PollingWorker:
    poll_seconds: float = 1.0

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()

    async def work_once(self) -> int:
        """Do what is due; return how much was done (0: nothing, so the loop waits)."""
        raise NotImplementedError

    def wake(self) -> None:
        """Call after a local write so the work is done now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        failures = 0
        while True:
            self._wakeup.clear()
            try:
                done = await self.work_once()
                failures = 0
            except Exception:
                failures += 1
                log.exception("%s pass failed (attempt %d)", type(self).__name__, failures)
                await asyncio.sleep(min(0.5 * 2**failures, 30.0))
                continue
            if not done:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.poll_seconds)
