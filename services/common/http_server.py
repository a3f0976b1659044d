"""uvicorn's server with a quieter clock: it looks at its exit flag once a second, and at once on a stop signal;
and, once it has started, what it calls then (``settled``: ``collector.settle`` for a service).

uvicorn's main loop wakes ten times a second to see whether it should stop (and, every tenth time, to refresh the
Date header): an idle service's most frequent wake-up after the Kafka lanes'. Here it waits a second at a time, the
header still refreshed each second, and a SIGTERM or SIGINT ends the wait at once, so stopping is no slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from types import FrameType

import uvicorn

TICK_SECONDS = 1.0
TICKS_PER_SECOND = 10
"""uvicorn's ``on_tick`` refreshes the Date header when its counter is a multiple of this."""


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, settled: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._settled = settled

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._settled is not None:
            self._settled()

    async def main_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + TICKS_PER_SECOND) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), TICK_SECONDS)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:  # a signal handler: the loop is told through its self-pipe
            self._loop.call_soon_threadsafe(self._stop.set)
