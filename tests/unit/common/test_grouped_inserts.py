"""Group commit of inserts (services/common/grouped_inserts.py) on a fake collection whose inserts wait for the test
to let them finish: no sleeping, each step waits on a condition."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.errors import AutoReconnect, BulkWriteError, DuplicateKeyError

from services.common.grouped_inserts import GroupedInserts

Document = dict[str, Any]


class HeldInserts:
    """A collection whose ``insert_many`` is held until ``finish`` (which may make it fail)."""

    def __init__(self) -> None:
        self.groups: list[list[Document]] = []
        self._outcomes: asyncio.Queue[BaseException | None] = asyncio.Queue()
        self._arrived = asyncio.Condition()

    async def insert_many(self, documents: list[Document], ordered: bool = True) -> None:
        assert not ordered  # each document on its own: one refused leaves the others stored
        async with self._arrived:
            self.groups.append(list(documents))
            self._arrived.notify_all()
        outcome = await self._outcomes.get()
        if outcome is not None:
            raise outcome

    async def group_sent(self, count: int) -> None:
        """Waits until ``count`` inserts were sent."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.groups) >= count)

    def finish(self, outcome: BaseException | None = None) -> None:
        self._outcomes.put_nowait(outcome)


async def waiting(tasks: list[asyncio.Task[None]]) -> None:
    """Until each task waits (a turn of the loop for each, so that it has queued its document)."""
    for _ in tasks:
        await asyncio.sleep(0)


def inserts(held: HeldInserts) -> GroupedInserts:
    return GroupedInserts(held, window_seconds=0)  # type: ignore[arg-type]


async def test_documents_sent_while_a_group_is_written_go_together_and_each_caller_waits_for_its_own() -> None:
    held = HeldInserts()
    grouped = inserts(held)
    first = asyncio.create_task(grouped.insert({"n": 1}))
    await held.group_sent(1)
    later = [asyncio.create_task(grouped.insert({"n": n})) for n in (2, 3)]
    await waiting(later)
    assert not first.done()  # not stored yet: its caller still waits
    held.finish()
    await first
    await held.group_sent(2)
    assert not any(task.done() for task in later)
    held.finish()
    await asyncio.gather(*later)
    assert held.groups == [[{"n": 1}], [{"n": 2}, {"n": 3}]]


async def test_a_failed_insert_fails_the_callers_of_its_group_only() -> None:
    held = HeldInserts()
    grouped = inserts(held)
    first = asyncio.create_task(grouped.insert({"n": 1}))
    await held.group_sent(1)
    second = asyncio.create_task(grouped.insert({"n": 2}))
    await waiting([second])
    held.finish(AutoReconnect("connection lost"))
    with pytest.raises(AutoReconnect):
        await first
    await held.group_sent(2)
    held.finish()
    await second  # stored by the next group


async def test_a_refused_document_fails_its_own_caller_only_as_insert_one_would() -> None:
    held = HeldInserts()
    grouped = inserts(held)
    blocker = asyncio.create_task(grouped.insert({"n": 0}))
    await held.group_sent(1)
    group = [asyncio.create_task(grouped.insert({"n": n})) for n in (1, 2, 3)]
    await waiting(group)
    held.finish()
    await blocker
    await held.group_sent(2)
    held.finish(BulkWriteError({"writeErrors": [{"index": 1, "code": 11000, "errmsg": "duplicate"}], "nInserted": 2}))
    outcomes = await asyncio.gather(*group, return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], DuplicateKeyError)


async def test_a_write_concern_not_met_fails_the_whole_group() -> None:
    held = HeldInserts()
    grouped = inserts(held)
    group = [asyncio.create_task(grouped.insert({"n": n})) for n in (1, 2)]
    await held.group_sent(1)
    held.finish(BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "timeout"}]}))
    outcomes = await asyncio.gather(*group, return_exceptions=True)
    assert all(isinstance(outcome, BulkWriteError) for outcome in outcomes)


async def test_a_caller_that_gives_up_leaves_the_others_stored() -> None:
    held = HeldInserts()
    grouped = inserts(held)
    leaving = asyncio.create_task(grouped.insert({"n": 1}))
    staying = asyncio.create_task(grouped.insert({"n": 2}))
    await held.group_sent(1)
    leaving.cancel()
    held.finish()
    await staying
    assert leaving.cancelled() and held.groups == [[{"n": 1}, {"n": 2}]]
