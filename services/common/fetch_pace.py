"""How long the broker may hold a lane's fetch: short while the lane has records, long once it is idle; and how a
lane waits for its records: until they come.

aiokafka sends one fetch at a time to a broker, and leaves out of it the partitions whose records are still being
applied. While that fetch is held for the other partitions (idle topics, most of a lane's), the busy partition's
next records wait for it: up to the fetch's whole wait. Measured with one busy partition among 36 (100 records/s,
50 ms per batch): p95 1.8 s behind a 2 s wait, 0.2-0.5 s behind 500 ms. A long wait is what makes an idle lane
cheap (one fetch per wait), so the wait follows the lane: ``busy_ms`` from its first batch on, ``idle_ms``
(``KAFKA_FETCH_MAX_WAIT_MS``) once ``IDLE_AFTER_S`` passed without one. The first record after a quiet spell is
not slowed: the fetch then in flight names every partition, and the broker answers it as the record arrives.

A busy routine lane also asks the broker for a batch's worth (``batch_bytes``) before it answers, within the
batch wait: with one byte (aiokafka's default) each fetch came back with the one or two records that had arrived, and
the lanes' fetches, small batches and offset commits made Kafka the pipeline's largest user of CPU (the side-by-side
figures: docs/performance.md, "Issue 31, third round"). A routine hop waits up to the batch wait more; urgent lanes
keep one byte (``IDLE_MIN_BYTES``), so an alert is handed over as it arrives.

aiokafka reads the wait and the least size from its fetcher's ``_fetch_max_wait_ms`` and ``_fetch_min_bytes`` for
every fetch it sends; no public setting changes them while the consumer runs. tests/unit/common/test_fetch_pace.py
checks that aiokafka still keeps them there, and a fetcher without them is logged once (the lane then keeps
``KAFKA_FETCH_MAX_WAIT_MS`` and one byte, as before this module).

A lane with nothing to apply waits in aiokafka's ``getmany`` until records arrive (``idle_ms`` at most, then it looks
again). FastStream's batch loop instead asks for ``batch_timeout_ms`` and, given nothing, sleeps as long again: an
idle lane woke 10-20 times a second (notifications' and caseload's 1.2-1.4 % of a core idle, most of it), and a record
that came during the sleep waited for its end (the urgent lane's 50 ms). ``getmany`` hands over what it holds as soon
as it holds any, so the longer wait delays nothing; a stopping lane's wait is cancelled with its task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from itertools import chain
from typing import Any, Protocol

from aiokafka.structs import ConsumerRecord

log = logging.getLogger(__name__)

IDLE_AFTER_S = 5.0
"""A lane without a batch this long is idle: its fetches are held for ``KAFKA_FETCH_MAX_WAIT_MS`` again."""
FETCH_WAIT = "_fetch_max_wait_ms"
"""Where aiokafka's fetcher keeps the wait it sends with each fetch."""
FETCH_MIN_BYTES = "_fetch_min_bytes"
"""… and the least it asks the broker to gather before answering within that wait."""
RECORD_BYTES = 1_300
"""About what one of the pipeline's events weighs in a fetch (its value, headers and the batch's overhead)."""


def batch_bytes(max_records: int) -> int:
    """What a busy routine lane's fetch asks for: about a full batch (64 kB for the default 50 records)."""
    return max_records * RECORD_BYTES


IDLE_MIN_BYTES = 1
"""What an idle lane's fetch, and an urgent lane's always, asks for: any record, answered as it arrives."""
NEXT_BATCH = "get_msg"
"""What FastStream's batch loop calls for a lane's next records."""


class Consumer(Protocol):
    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, list[ConsumerRecord[Any, Any]]]: ...


class FetchPace:
    """One lane's fetch wait (one per subscriber: each lane is its own consumer)."""

    def __init__(
        self, busy_ms: int, idle_ms: int, idle_after_s: float = IDLE_AFTER_S, busy_min_bytes: int = IDLE_MIN_BYTES
    ) -> None:
        """``busy_min_bytes``: what a busy lane's fetch asks for (``IDLE_MIN_BYTES``, urgent; ``batch_bytes``)."""
        self.busy_ms = min(busy_ms, idle_ms)
        self.busy_min_bytes = busy_min_bytes
        self.idle_ms = idle_ms
        self._idle_after_s = idle_after_s
        self._back_to_idle: asyncio.TimerHandle | None = None
        self._warned = False

    def batch_arrived(self, consumer: object) -> None:
        """A batch came: fetch with the short wait until the lane has been idle ``idle_after_s``."""
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is None or not (hasattr(fetcher, FETCH_WAIT) and hasattr(fetcher, FETCH_MIN_BYTES)):
            self._warn_once()
            return
        setattr(fetcher, FETCH_WAIT, self.busy_ms)
        setattr(fetcher, FETCH_MIN_BYTES, self.busy_min_bytes)
        if self._back_to_idle is not None:
            self._back_to_idle.cancel()
        self._back_to_idle = asyncio.get_running_loop().call_later(self._idle_after_s, self._idle, fetcher)

    def _idle(self, fetcher: object) -> None:
        setattr(fetcher, FETCH_WAIT, self.idle_ms)
        setattr(fetcher, FETCH_MIN_BYTES, IDLE_MIN_BYTES)

    def wait_for_records(self, subscriber: object, max_records: int) -> None:
        """``subscriber``'s loop waits for records up to ``idle_ms`` (not the batch wait, then a sleep as long)."""
        if not callable(getattr(subscriber, NEXT_BATCH, None)):
            log.warning("the Kafka subscriber has no %s: an idle lane looks for records every batch wait (was "
                        "FastStream upgraded?)", NEXT_BATCH)  # fmt: skip
            return
        setattr(subscriber, NEXT_BATCH, self._records(max_records))

    def _records(self, max_records: int) -> Callable[[Consumer], Awaitable[tuple[ConsumerRecord[Any, Any], ...]]]:
        async def next_batch(consumer: Consumer) -> tuple[ConsumerRecord[Any, Any], ...]:
            batches = await consumer.getmany(timeout_ms=self.idle_ms, max_records=max_records)
            return tuple(chain.from_iterable(batches.values()))

        return next_batch

    def _warn_once(self) -> None:
        if not self._warned:
            self._warned = True
            log.warning("the Kafka client keeps no fetch wait or size where Stepwise sets them: a busy lane's fetches "
                        "are held up to KAFKA_FETCH_MAX_WAIT_MS (%d ms) for one record (was aiokafka upgraded?)",
                        self.idle_ms)  # fmt: skip
