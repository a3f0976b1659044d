"""What the stores do where a MongoDB server lacks a feature (docs/development.md, "Backends"), without that server: the
store tier (tests/store) runs the same code on FerretDB itself in ``make test``."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from pymongo.errors import OperationFailure

from services.common.idempotency import IDEMPOTENCY_KEYS, KEPT, ExpiredKeyPurge, IdempotencyKeys
from services.common.utc import utc_now
from tests.service.memory_mongo import MemoryDatabase


class Body(BaseModel):
    name: str


def without_ttl_indexes(database: MemoryDatabase, code: int = 238) -> list[dict[str, Any]]:
    """``database``'s keys collection answering a TTL index as FerretDB v1 does; returns the indexes made."""
    collection = database[IDEMPOTENCY_KEYS]
    made: list[dict[str, Any]] = []

    async def create_index(keys: list[tuple[str, int]], **options: Any) -> str:
        if "expireAfterSeconds" in options:
            raise OperationFailure("Index option 'expireAfterSeconds' is not implemented yet", code=code)
        made.append({"keys": keys, **options})
        return "at_1"

    collection.create_index = create_index  # type: ignore[method-assign]
    return made


async def test_a_server_with_ttl_indexes_removes_expired_keys_itself() -> None:
    keys = IdempotencyKeys(MemoryDatabase())  # type: ignore[arg-type]
    await keys.create_indexes()
    assert keys.expired_by_server


async def test_without_ttl_indexes_the_keys_get_a_plain_index_and_the_service_purges_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    database = MemoryDatabase()
    made = without_ttl_indexes(database)
    keys = IdempotencyKeys(database)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="services.common.idempotency"):
        await keys.create_indexes()
    assert made == [{"keys": [("at", 1)]}]
    assert [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "services.common.idempotency"] == [
        ("WARNING", "this MongoDB server has no TTL indexes: expired idempotency keys are purged every 1:00:00 "
                    "by the service instead"),
    ]  # fmt: skip
    assert not keys.expired_by_server

    await keys.record_id("old", "scope", Body(name="a"))
    await database[IDEMPOTENCY_KEYS].update_many({}, {"$set": {"at": utc_now() - KEPT - timedelta(seconds=1)}})
    kept = await keys.record_id("new", "scope", Body(name="a"))
    purge = ExpiredKeyPurge(keys)
    assert purge.poll_seconds == 3600
    assert await purge.work_once() == 1
    assert [document["record_id"] async for document in database[IDEMPOTENCY_KEYS].find({})] == [kept]


async def test_any_other_refusal_of_the_ttl_index_stops_the_start() -> None:
    database = MemoryDatabase()
    without_ttl_indexes(database, code=85)  # IndexOptionsConflict: an index on "at" made otherwise before
    with pytest.raises(OperationFailure):
        await IdempotencyKeys(database).create_indexes()  # type: ignore[arg-type]
