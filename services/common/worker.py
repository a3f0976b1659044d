"""Background work that polls its store: run a pass, and when it found nothing, wait for a wake-up
(a local write) or the poll interval (work from other instances, or left by a crash).

With ``idle_seconds``, passes that keep finding nothing wait longer: each empty pass doubles the wait, from
``poll_seconds`` up to ``idle_seconds``; a wake-up or a pass that found work starts again from ``poll_seconds``. An
idle service then asks its store a few times a minute instead of every second, and what a local write asks for is
still done at once (it wakes the worker); only work no write here announced (another instance's, a crash's, a due
time coming) waits up to ``idle_seconds`` for a pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger(__name__)


class PollingWorker:
    poll_seconds: float = 1.0
    idle_seconds: float | None = None
    """The longest wait between two empty passes (None: ``poll_seconds`` always)."""

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()

    async def work_once(self) -> int:
        """Do what is due; return how much was done (0: nothing, so the loop waits)."""
        raise NotImplementedError

    def wake(self) -> None:
        """Call after a local write so the work is done now rather than at the next poll."""
        self._wakeup.set()

    def next_wait(self, waited: float | None, woken: bool) -> float:
        """The wait after an empty pass: ``poll_seconds`` after a wake-up or work (``waited`` None), else twice the last
        wait, up to ``idle_seconds``."""
        if waited is None or woken:
            return self.poll_seconds
        return max(self.poll_seconds, min(2 * waited, self.idle_seconds or self.poll_seconds))

    async def run(self) -> None:
        failures = 0
        waited: float | None = None
        woken = False
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
            if done:
                waited = None
                continue
            waited = self.next_wait(waited, woken)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), waited)
            woken = self._wakeup.is_set()
