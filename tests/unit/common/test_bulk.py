"""The writes of one consumer batch sent together (services/common/bulk.py): one bulk_write once each lane of the
batch waits on it, each write hearing its own outcome as a lone write would; its questions to another service alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from pymongo import InsertOne
from pymongo.errors import BulkWriteError, ConnectionFailure, DocumentTooLarge, DuplicateKeyError, WriteError

from services.common.bulk import (
    GATHERING,
    BulkWrites,
    EpisodeRecords,
    GatheredLookups,
    Gathering,
    Insert,
    Update,
    versioned,
)
from services.common.consumer import HANDLER_CONTEXT, EventBatch, Subscription
from services.common.store_errors import too_large
from stepwise_contract import SessionMissed
from tests.unit.common.test_consumer import Context, Message, Shelf, record

T = TypeVar("T")


@dataclass
class Named:
    """A collection's names, as the buffer groups writes by them."""

    name: str = "episodes"

    @property
    def full_name(self) -> str:
        return f"db.{self.name}"


@dataclass
class Collection(Named):
    """Keeps each bulk_write (the ids it wrote) and each lone update; answers with ``failing`` when set."""

    bulks: list[list[str]] = field(default_factory=list)
    alone: list[str] = field(default_factory=list)
    failing: Exception | None = None

    async def bulk_write(self, operations: list[Any], ordered: bool = True) -> None:
        assert not ordered
        self.bulks.append([operation._filter["_id"] for operation in operations])
        if self.failing is not None:
            raise self.failing

    async def update_one(self, filter: dict[str, Any], update: dict[str, Any], upsert: bool = False) -> None:
        assert upsert
        self.alone.append(filter["_id"])


def write(n: int) -> Update:
    return versioned(f"ep-{n}", 1, {"n": n})


async def in_lanes(count: int, each: Callable[[int], Awaitable[T]]) -> list[T | BaseException]:
    """``each(n)`` for n < ``count``, as the lanes of one consumer batch: its outcome, or the error it raised."""
    gathering = Gathering(count)

    async def lane(n: int) -> T | BaseException:
        try:
            return await each(n)
        except Exception as error:
            return error
        finally:
            gathering.finished()

    token = GATHERING.set(gathering)
    try:
        return await asyncio.gather(*(lane(n) for n in range(count)))
    finally:
        GATHERING.reset(token)


async def in_one_batch(writes: BulkWrites, collection: Collection, count: int) -> list[BaseException | None]:
    return await in_lanes(count, lambda n: writes.write(collection, write(n)))  # type: ignore[arg-type]


async def test_a_batchs_lanes_write_once_together_each_episodes_writes_in_order() -> None:
    collection = Collection()
    writes = BulkWrites(linger=60.0)  # sent when every lane waits, never by the clock here

    async def handle(event: Any, _context: Any) -> None:
        await writes.write(collection, versioned(event.subject, 0, {}))  # type: ignore[arg-type]

    batch = EventBatch({SessionMissed: Subscription(handle, "")})
    records = (record(0, "a"), record(1, "b"), record(2, "a"), record(3, "c"), record(4, "a"))
    await batch(Message(records), Context({"event_shelf": Shelf(), HANDLER_CONTEXT: None}))  # type: ignore[arg-type]
    assert [sorted(bulk) for bulk in collection.bulks] == [["a", "b", "c"], ["a"], ["a"]]


async def test_each_write_hears_its_own_outcome() -> None:
    errors = [{"index": 1, "code": 11000, "errmsg": "E11000 duplicate key"},
              {"index": 2, "code": 17419, "errmsg": "Resulting document after update is too large"}]  # fmt: skip
    collection = Collection(failing=BulkWriteError({"writeErrors": errors, "writeConcernErrors": []}))
    outcomes = await in_one_batch(BulkWrites(linger=60.0), collection, 4)
    assert collection.bulks == [["ep-0", "ep-1", "ep-2", "ep-3"]]
    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], DuplicateKeyError)  # a lost race, as a lone upsert would say
    assert isinstance(outcomes[2], WriteError) and too_large(outcomes[2])  # the consumer sets that one aside


async def test_a_failure_of_the_whole_command_reaches_every_write() -> None:
    collection = Collection(failing=ConnectionFailure("the store is down"))
    outcomes = await in_one_batch(BulkWrites(linger=60.0), collection, 3)
    assert all(isinstance(outcome, ConnectionFailure) for outcome in outcomes)
    concern = BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64, "errmsg": "waiting"}]})
    outcomes = await in_one_batch(BulkWrites(linger=60.0), Collection(failing=concern), 2)
    assert all(isinstance(outcome, BulkWriteError) for outcome in outcomes)


@pytest.mark.parametrize("failing", [DocumentTooLarge("too large"), KeyError("nModified")])
async def test_a_bulk_that_cannot_be_sent_or_read_goes_write_by_write(failing: Exception) -> None:
    """One operation too large to send, or an answer without nModified (FerretDB 1.24): each write alone."""
    collection = Collection(failing=failing)
    assert await in_one_batch(BulkWrites(linger=60.0), collection, 3) == [None] * 3
    assert collection.alone == ["ep-0", "ep-1", "ep-2"]


async def test_outside_a_batch_a_write_goes_at_once_and_a_busy_lane_holds_the_others_a_moment_only() -> None:
    collection = Collection()
    writes = BulkWrites(linger=0.001)
    await writes.write(collection, write(0))  # type: ignore[arg-type]
    assert collection.bulks == [["ep-0"]]
    gathering, reading = Gathering(2), asyncio.Event()
    token = GATHERING.set(gathering)
    try:
        busy = asyncio.create_task(reading.wait())  # a lane reading, not writing
        await writes.write(collection, write(1))  # type: ignore[arg-type]
        assert not busy.done()
        reading.set()
        await busy
    finally:
        GATHERING.reset(token)
    assert collection.bulks == [["ep-0"], ["ep-1"]]


# A batch's questions to another service: one request for the lanes' questions, each hearing its own answer.


class Asked:
    def __init__(self, failing: Exception | None = None) -> None:
        self.requests: list[list[int]] = []
        self.failing = failing

    async def __call__(self, questions: list[int]) -> list[str]:
        self.requests.append(questions)
        await asyncio.sleep(0)
        if self.failing is not None:
            raise self.failing
        return [f"answer {n}" for n in questions]


async def asked_in_one_batch(lookups: GatheredLookups[int, str], count: int) -> list[str | BaseException]:
    return await in_lanes(count, lookups.ask)


async def test_a_batchs_lanes_ask_in_one_request_each_hearing_its_own_answer() -> None:
    asked = Asked()
    lookups = GatheredLookups(asked, linger=60.0)  # asked when every lane waits, never by the clock here
    assert await asked_in_one_batch(lookups, 3) == ["answer 0", "answer 1", "answer 2"]
    assert asked.requests == [[0, 1, 2]]


async def test_a_question_outside_a_batch_is_asked_at_once_alone() -> None:
    asked = Asked()
    assert await GatheredLookups(asked, linger=60.0).ask(7) == "answer 7"
    assert asked.requests == [[7]]


async def test_a_failed_request_reaches_each_question_of_it() -> None:
    down = ConnectionError("the other service is away")
    outcomes = await asked_in_one_batch(GatheredLookups(Asked(failing=down), linger=60.0), 2)
    assert outcomes == [down, down]


async def test_a_lane_that_never_asks_delays_the_others_by_the_linger_at_most() -> None:
    asked = Asked()
    lookups: GatheredLookups[int, str] = GatheredLookups(asked, linger=0.001)
    gathering = Gathering(2)  # the second lane is busy elsewhere and asks nothing
    token = GATHERING.set(gathering)
    try:
        assert await asyncio.wait_for(lookups.ask(1), 1.0) == "answer 1"
    finally:
        GATHERING.reset(token)
    assert asked.requests == [[1]]


@dataclass
class Inserts(Named):
    """Keeps each bulk_write as its kinds and ids; a document whose _id is in ``existing`` is a duplicate key."""

    name: str = "notifications"
    bulks: list[list[tuple[str, str]]] = field(default_factory=list)
    existing: set[str] = field(default_factory=set)

    async def bulk_write(self, operations: list[Any], ordered: bool = True) -> None:
        assert not ordered
        written = [
            ("insert", op._doc["_id"]) if isinstance(op, InsertOne) else ("update", op._filter["_id"])
            for op in operations
        ]
        self.bulks.append(written)
        failed = [{"index": n, "code": 11000, "errmsg": "E11000"} for n, (_, id_) in enumerate(written)
                  if id_ in self.existing]  # fmt: skip
        if failed:
            raise BulkWriteError({"writeErrors": failed, "writeConcernErrors": [], "nInserted": 0})


async def test_a_batchs_new_documents_are_one_insert_apart_from_its_updates_and_an_existing_one_fails_alone() -> None:
    collection = Inserts(existing={"new-1"})
    writes = BulkWrites(linger=60.0)

    async def each(n: int) -> None:
        if n == 3:
            await writes.write(collection, write(n))  # type: ignore[arg-type]
        else:
            await writes.write(collection, Insert({"_id": f"new-{n}"}))  # type: ignore[arg-type]

    outcomes = await in_lanes(4, each)
    assert [sorted(bulk) for bulk in collection.bulks] == [
        [("insert", "new-0"), ("insert", "new-1"), ("insert", "new-2")],
        [("update", "ep-3")],
    ]
    assert [type(outcome).__name__ for outcome in outcomes] == ["NoneType", "DuplicateKeyError", "NoneType", "NoneType"]


async def test_several_writes_outside_a_batch_go_together_each_with_its_outcome() -> None:
    collection = Inserts(existing={"b"})
    outcomes = await BulkWrites().write_all(collection, [Insert({"_id": id_}) for id_ in "abc"])  # type: ignore[arg-type]
    assert collection.bulks == [[("insert", "a"), ("insert", "b"), ("insert", "c")]]
    assert [type(outcome).__name__ for outcome in outcomes] == ["NoneType", "DuplicateKeyError", "NoneType"]


async def test_a_lane_handing_in_several_writes_waits_for_the_other_lanes_as_one() -> None:
    collection = Inserts()
    writes = BulkWrites(linger=60.0)  # sent when every lane waits, never by the clock here

    async def each(n: int) -> list[Exception | None]:
        if n == 0:
            return await writes.write_all(collection, [Insert({"_id": f"many-{k}"}) for k in range(3)])  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the other lane hands its write in later
        return await writes.write_all(collection, [Insert({"_id": "one"})])  # type: ignore[arg-type]

    assert await in_lanes(2, each) == [[None] * 3, [None]]
    assert [sorted(bulk) for bulk in collection.bulks] == [
        [("insert", "many-0"), ("insert", "many-1"), ("insert", "many-2"), ("insert", "one")]
    ]


async def test_what_a_handler_takes_of_an_episodes_records_is_not_stored_again_at_the_end() -> None:
    stored: list[list[str]] = []

    async def store(items: list[str]) -> None:
        stored.append(items)

    episode = EpisodeRecords()
    assert not episode.holds(store)
    episode.collect(store, "measure")
    episode.collect(store, "screen")
    assert episode.holds(store)
    assert episode.take(store) == ["measure", "screen"]  # in the order they came
    assert not episode.holds(store) and episode.take(store) == []
    episode.collect(store, "alert")
    await episode.finish()
    assert stored == [["alert"]]
