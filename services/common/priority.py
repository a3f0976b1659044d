"""Urgent work first, within one process: while an urgent event or message is being handled, routine work
starts nothing new.

One event loop runs everything a service does, first come first served: with a routine backlog, each step
of a safety alert (a store write, the mail relay's answer) waits behind every routine step ready before it.
Routine units (an episode's records in a batch, a claim of a routine message) ask ``routine_turn`` before
they start; the urgent lanes hold ``urgent()`` while they work. Units already running finish, so routine
work pauses within a unit's time (tens of milliseconds) and resumes as soon as the urgent work is done, or
after ``LONGEST_PAUSE`` at most.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from stepwise_contract import SafetyAlertRaised

URGENT_EVENTS = frozenset({SafetyAlertRaised.event_type})
"""What is urgent on the way out too: a relay publishes a write's safety alert without waiting for a slot, routine
work in its process held meanwhile (the consumers' urgent lanes are each service's ``Subscription(urgent=True)``)."""

LONGEST_PAUSE = 2.0
"""Seconds routine work waits for urgent work at most."""


class UrgentFirst:
    def __init__(self) -> None:
        self._urgent = 0
        self._clear: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._clear is None or self._loop is not loop:  # a new loop (tests): nothing urgent runs on it yet
            self._clear, self._loop, self._urgent = asyncio.Event(), loop, 0
            self._clear.set()
        return self._clear

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        """Hold while urgent work runs: routine work waits to start."""
        clear = self._event()
        self._urgent += 1
        clear.clear()
        try:
            yield
        finally:
            self._urgent -= 1
            if self._urgent == 0:
                clear.set()

    async def routine_turn(self) -> None:
        """Return once no urgent work is running (at once, mostly), or after ``LONGEST_PAUSE`` whatever runs: a
        stuck urgent unit (a mail relay that does not answer) never stops routine work."""
        clear = self._event()
        if not clear.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(clear.wait(), LONGEST_PAUSE)


URGENT_FIRST = UrgentFirst()
"""The process's one gate: the consumer lanes and the dispatcher's lanes share it."""
