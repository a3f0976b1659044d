"""tools/deploy/backup.py on a real server: a dump, the databases wiped, a restore, and nothing lost (every document
byte for byte, every index); a backup made with another key, cut short or changed is refused; old backups pruned."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Binary, Int64, ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from tools.deploy import backup

Document = dict[str, Any]
KEY = b"a-backup-key-from-the-secret-file\n"


def sample(number: int) -> Document:
    """A record with the types the services store: string ids, UTC times, nesting, lists, 64-bit ints, bytes."""
    return {
        "_id": f"episode-{number:05d}",
        "version": number % 7,
        "at": datetime(2026, 12, 6, 10, 0, tzinfo=UTC) + timedelta(minutes=number),
        "patient": {"name": f"Person {number}", "phones": ["+12025550123"], "notes": "x" * 900},
        "counts": Int64(2**40 + number),
        "digest": Binary(number.to_bytes(4, "big")),
        "outbox": [{"topic": "iop.assessment.completed", "sent": number % 2 == 0}],
    }


async def index_shapes(client: AsyncMongoClient[Any], database: str, collection: str) -> list[str]:
    """A collection's indexes by what they do (keys and options), not by name: a stand-in names them its own way."""
    shapes = []
    async for index in await client[database][collection].list_indexes():
        options = {option: index[option] for option in backup.INDEX_OPTIONS if option in index}
        shapes.append(repr((list(index["key"].items()), sorted(options.items()))))
    return sorted(shapes)


async def raw_documents(client: AsyncMongoClient[Any], database: str, collection: str) -> list[bytes]:
    found = client.get_database(database, codec_options=backup.RAW)[collection].find({}, sort=[("_id", 1)])
    return [document.raw async for document in found]


@pytest.fixture
async def databases(mongo_client: AsyncMongoClient[Document]) -> Any:
    names = [f"stepwise_backup_{uuid.uuid4().hex[:8]}_{n}" for n in ("intake", "care_plan")]
    intake, care_plan = (mongo_client[name] for name in names)
    await intake.patients.insert_many([sample(n) for n in range(2500)])  # ~2.5 MB: several encrypted chunks
    await intake.patients.create_index([("patient.name", 1), ("version", -1)], name="by_name", unique=True)
    await intake.audit.insert_many([{"_id": ObjectId(), "by": "clinician", "at": datetime.now(UTC)} for _ in range(3)])
    await care_plan.plans.insert_one({"_id": "plan-1", "level": "IOP", "due": None})
    await care_plan.plans.create_index(
        [("level", 1)], name="active_levels", partialFilterExpression={"level": {"$exists": True}}
    )
    yield names
    for name in names:
        await mongo_client.drop_database(name)


async def test_a_restore_after_a_wipe_brings_back_every_document_and_index(
    mongo_client: AsyncMongoClient[Document], databases: list[str]
) -> None:
    collections = [(databases[0], "patients"), (databases[0], "audit"), (databases[1], "plans")]
    before = {(d, c): await raw_documents(mongo_client, d, c) for d, c in collections}
    indexes = {(d, c): await index_shapes(mongo_client, d, c) for d, c in collections}
    file = io.BytesIO()
    taken = await backup.dump(mongo_client, databases, file, KEY)
    assert taken.counts == {databases[0]: {"audit": 3, "patients": 2500}, databases[1]: {"plans": 1}}
    assert b"Person 1" not in file.getvalue(), "a backup holds PII: it must be encrypted"

    for name in databases:  # the wipe
        await mongo_client.drop_database(name)
    file.seek(0)
    restored = await backup.restore(mongo_client, file, KEY)

    assert restored.counts == taken.counts
    for (database, collection), documents in before.items():
        assert await raw_documents(mongo_client, database, collection) == documents, (database, collection)
    for (database, collection), shapes in indexes.items():
        assert await index_shapes(mongo_client, database, collection) == shapes, (database, collection)
    with pytest.raises(DuplicateKeyError):  # the unique index is back, enforcing
        await mongo_client[databases[0]].patients.insert_one({**sample(7), "_id": "another"})


async def test_another_key_a_cut_or_a_changed_backup_is_refused(
    mongo_client: AsyncMongoClient[Document], databases: list[str]
) -> None:
    file = io.BytesIO()
    await backup.dump(mongo_client, databases, file, KEY)
    whole = file.getvalue()
    changed = bytearray(whole)
    changed[len(whole) // 2] ^= 1
    header = len(backup.MAGIC) + backup.SALT_BYTES + backup.PREFIX_BYTES
    first_chunk_end = header + 4 + int.from_bytes(whole[header : header + 4], "big")
    assert first_chunk_end < len(whole), "the sample must take more than one chunk"
    for wrong, key, reason in [
        (whole, b"another key", "does not decrypt"),
        (whole[:first_chunk_end], KEY, "cut short"),
        (whole[: len(whole) - 40], KEY, "does not decrypt"),
        (bytes(changed), KEY, "does not decrypt"),
        (b"plain text" + whole, KEY, "not a Stepwise backup"),
    ]:
        with pytest.raises(ValueError, match=reason):
            await backup.restore(mongo_client, io.BytesIO(wrong), key)
    assert await mongo_client[databases[0]].patients.count_documents({}) == 2500, "a refused backup wiped data"
    assert await mongo_client[databases[1]].plans.count_documents({}) == 1, "a refused backup wiped data"


def test_backups_older_than_the_retention_are_removed(tmp_path: Path) -> None:
    now = datetime(2026, 12, 6, 2, 30, tzinfo=UTC)
    for days in (0, 34, 36, 90):
        (tmp_path / backup.backup_name(now - timedelta(days=days))).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("kept")
    removed = backup.prune(tmp_path, keep_days=35, now=now)
    assert sorted(path.name for path in removed) == sorted(
        backup.backup_name(now - timedelta(days=days)) for days in (36, 90)
    )
    assert len(list(tmp_path.iterdir())) == 3


def test_raw_documents_are_kept_as_stored() -> None:
    document = RawBSONDocument(bytes(bson.encode(sample(1))))
    assert bson.decode_all(document.raw, backup.RAW)[0].raw == document.raw
