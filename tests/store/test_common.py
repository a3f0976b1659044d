"""What every service's store builds on, on a real server: the outbox and the idempotency keys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from pymongo.asynchronous.database import AsyncDatabase

from services.common.idempotency import IDEMPOTENCY_KEYS, KEPT, IdempotencyKeys, KeyReused
from services.common.indexes import Index, create_indexes, default_name
from services.common.outbox import (
    APPLIED_EVENTS_KEPT,
    OutboxRelay,
    ensure_outbox_index,
    insert_aggregate,
    inserted_new_aggregates,
    update_aggregate,
)
from services.common.replay import record_replay
from services.common.utc import utc_now
from stepwise_contract import AlumniLeft, CloudEvent, new_event
from tests.store.conftest import Document, relayed_to

pytestmark = pytest.mark.second_server


def left(episode_id: str, number: int) -> CloudEvent[Any]:
    """An event to queue; ``number`` tells the events of one aggregate apart (in its time)."""
    at = utc_now() + timedelta(seconds=number)
    return new_event(AlumniLeft(episode_id=episode_id, left_at=at, reason_code="opted_out"), source="/test")


class Body(BaseModel):
    name: str


# --- idempotency keys -----------------------------------------------------------------------------------


async def test_the_keys_index_is_made_on_every_server(database: AsyncDatabase[Document], ferretdb: bool) -> None:
    keys = IdempotencyKeys(database)
    await keys.create_indexes()  # FerretDB v1 refuses the TTL index: NotImplemented, once fatal to intake's start
    indexes = await database[IDEMPOTENCY_KEYS].index_information()
    [at] = [index for index in indexes.values() if index["key"] == [("at", 1)]]
    # Where the server removes expired keys itself, the index says when; elsewhere the service purges them.
    assert keys.expired_by_server is not ferretdb
    assert at.get("expireAfterSeconds") == (None if ferretdb else KEPT.total_seconds())


async def test_a_key_fixes_the_id_for_its_scope_and_body(database: AsyncDatabase[Document]) -> None:
    keys = IdempotencyKeys(database)
    await keys.create_indexes()
    first = await keys.record_id("key-1", "staff:POST /v1/patients", Body(name="a"))
    assert await keys.record_id("key-1", "staff:POST /v1/patients", Body(name="a")) == first
    assert await keys.record_id("key-1", "other:POST /v1/patients", Body(name="a")) != first
    with pytest.raises(KeyReused):
        await keys.record_id("key-1", "staff:POST /v1/patients", Body(name="b"))


async def test_a_key_older_than_24_hours_is_a_new_request_whether_or_not_it_was_purged(
    database: AsyncDatabase[Document],
) -> None:
    keys = IdempotencyKeys(database)
    await keys.create_indexes()
    first = await keys.record_id("key-1", "scope", Body(name="a"))
    await database[IDEMPOTENCY_KEYS].update_many({}, {"$set": {"at": utc_now() - KEPT - timedelta(minutes=1)}})
    again = await keys.record_id("key-1", "scope", Body(name="b"))  # another body is no reuse after a day
    assert again != first
    assert await keys.record_id("key-1", "scope", Body(name="b")) == again


async def test_the_purge_removes_the_expired_keys_only(database: AsyncDatabase[Document]) -> None:
    keys = IdempotencyKeys(database)
    await keys.create_indexes()
    await keys.record_id("old", "scope", Body(name="a"))
    await database[IDEMPOTENCY_KEYS].update_many({}, {"$set": {"at": utc_now() - KEPT - timedelta(seconds=1)}})
    kept = await keys.record_id("new", "scope", Body(name="a"))
    assert await keys.purge_expired() == 1
    assert [document["record_id"] async for document in database[IDEMPOTENCY_KEYS].find({})] == [kept]


# --- the outbox ---------------------------------------------------------------------------------------------


async def test_a_change_and_its_events_are_one_write_relayed_in_order_then_removed(
    database: AsyncDatabase[Document],
) -> None:
    aggregates = database["aggregates"]
    await ensure_outbox_index(aggregates)
    events = [left("ep-1", number) for number in range(4)]
    assert await insert_aggregate(aggregates, {"_id": "ep-1", "state": "new"}, events[:2])
    assert not await insert_aggregate(aggregates, {"_id": "ep-1", "state": "again"}, events[:2])
    assert await update_aggregate(aggregates, "ep-1", 1, {"state": "changed"}, events[2:], applied="/care#1")
    stored = await aggregates.find_one({"_id": "ep-1"})
    assert stored is not None
    assert (stored["state"], stored["version"], stored["outbox_pending"]) == ("changed", 2, 4)
    assert stored["applied_events"] == ["/care#1"]

    published: list[Document] = []
    relay = OutboxRelay([aggregates], relayed_to(published), poll_seconds=0.1)
    assert await relay.work_once() == 4
    assert [record["id"] for record in published] == [event.id for event in events]
    assert [record["key"] for record in published] == ["ep-1"] * 4
    relayed = await aggregates.find_one({"_id": "ep-1"})
    assert relayed is not None
    assert (relayed["outbox"], relayed["outbox_pending"]) == ([], 0)
    assert await relay.work_once() == 0


async def test_a_write_from_a_stale_version_changes_nothing(database: AsyncDatabase[Document]) -> None:
    aggregates = database["aggregates"]
    await insert_aggregate(aggregates, {"_id": "ep-1", "state": "new"})
    assert await update_aggregate(aggregates, "ep-1", 1, {"state": "first writer"})
    assert not await update_aggregate(aggregates, "ep-1", 1, {"state": "second writer"}, [left("ep-1", 0)])
    stored = await aggregates.find_one({"_id": "ep-1"})
    assert stored is not None
    assert (stored["state"], stored["version"], stored["outbox"]) == ("first writer", 2, [])


async def test_a_publish_that_fails_leaves_the_rest_queued_for_the_next_pass(
    database: AsyncDatabase[Document],
) -> None:
    aggregates = database["aggregates"]
    events = [left("ep-1", number) for number in range(3)]
    await insert_aggregate(aggregates, {"_id": "ep-1"}, events)
    published: list[Document] = []

    async def broker_gone_after_one(record: Document) -> None:
        if published:
            raise ConnectionError("broker gone")
        published.append(record)

    with pytest.raises(ConnectionError):
        await OutboxRelay([aggregates], broker_gone_after_one).work_once()
    stored = await aggregates.find_one({"_id": "ep-1"})
    assert stored is not None
    assert [json.loads(record)["id"] for record in stored["outbox"]] == [event.id for event in events[1:]]
    assert stored["outbox_pending"] == 2
    assert await OutboxRelay([aggregates], relayed_to(published)).work_once() == 2
    assert [record["id"] for record in published] == [event.id for event in events]


async def test_new_aggregates_are_inserted_once_each_in_one_round_trip(database: AsyncDatabase[Document]) -> None:
    aggregates = database["aggregates"]
    assert len(await inserted_new_aggregates(aggregates, [{"_id": "a"}, {"_id": "b"}])) == 2
    assert len(await inserted_new_aggregates(aggregates, [{"_id": "b"}, {"_id": "c"}, {"_id": "a"}])) == 1
    assert sorted([document["_id"] async for document in aggregates.find({})]) == ["a", "b", "c"]


async def test_an_aggregate_remembers_the_last_applied_events_only(
    database: AsyncDatabase[Document], ferretdb: bool
) -> None:
    if ferretdb:
        pytest.skip("FerretDB v1 ignores $slice in $push (docs/development.md, Backends): the list keeps growing")
    aggregates = database["aggregates"]
    await insert_aggregate(aggregates, {"_id": "ep-1"}, applied="/x#0")
    for number in range(1, APPLIED_EVENTS_KEPT + 2):
        assert await update_aggregate(aggregates, "ep-1", number, {"n": number}, applied=f"/x#{number}")
    stored = await aggregates.find_one({"_id": "ep-1"})
    assert stored is not None
    assert stored["applied_events"] == [f"/x#{number}" for number in range(2, APPLIED_EVENTS_KEPT + 2)]


# --- declared indexes -----------------------------------------------------------------------------------


async def test_an_index_that_extends_an_earlier_one_replaces_it_at_every_start(
    database: AsyncDatabase[Document],
) -> None:
    """The earlier one (found by its keys: nx-27017 names indexes its own way) is dropped once the new one exists,
    and the next start (the earlier one gone) does not mind."""
    plans = database["plans"]
    await plans.create_index([("group_id", 1)])
    extended = Index("plans", (("group_id", 1), ("status", 1)), "a test's", replaces=("group_id_1",))
    for _ in range(2):
        await create_indexes(database, [extended])
        keys = [list(index["key"].items()) async for index in await plans.list_indexes()]
        assert sorted(default_name(found) for found in keys) == ["_id_1", "group_id_1_status_1"]


# --- set-aside events' replays ----------------------------------------------------------------------------


async def test_each_replay_is_kept_on_the_set_aside_record_as_a_document_and_none_is_lost(
    database: AsyncDatabase[Document],
) -> None:
    shelf = database["set_aside_events"]
    await shelf.insert_one({"_id": "iop.x:0:1", "topic": "iop.x", "reason": "rejected: unknown_session"})
    first = {"at": utc_now(), "outcome": "set_aside_again", "detail": "rejected: unknown_session"}
    read = await shelf.find_one({"_id": "iop.x:0:1"})
    assert read is not None
    kept = await record_replay(shelf, read, first)
    applied = {"at": utc_now(), "outcome": "applied", "detail": "applied by the handler"}
    await record_replay(shelf, read, applied)  # read before the first was kept: read again, both kept
    stored = await shelf.find_one({"_id": "iop.x:0:1"})
    assert stored is not None and kept["replays"] == [first]
    assert [(entry["outcome"], type(entry["at"])) for entry in stored["replays"]] == [
        ("set_aside_again", datetime), ("applied", datetime)]  # fmt: skip
    assert await shelf.count_documents({"replays.outcome": "applied"}) == 1  # as the metrics ask
