"""An in-memory MongoDB for the middle test tier: mongomock's collections behind PyMongo's async API.

Only what the services call is here. It checks document encoding like PyMongo (a ``date`` is refused),
answers with the same error classes (``DuplicateKeyError``, ``BulkWriteError``), and returns aware UTC
datetimes. It refuses what MongoDB refuses where our code could hit it, with the errors PyMongo raises there:
a document over 16 MiB (``DocumentTooLarge`` before sending an insert; a ``WriteError``, code 17419, for an
update whose result would be larger, leaving the document as it was) and an update naming one path twice or a
path and its prefix across operators (``$set`` and ``$inc`` on ``a``, or on ``a`` and ``a.b``: code 40,
"would create a conflict"). It is not a MongoDB: the process suite runs every boundary against real servers.

Each database counts what its collections are asked (``MemoryDatabase.calls``: one entry per round trip a
server would take, by operation and collection), so that a test can say what a change costs the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, MutableMapping
from typing import Any, TypeVar

import bson
import mongomock
from bson.codec_options import CodecOptions
from pymongo import InsertOne, UpdateOne
from pymongo.cursor import Cursor
from pymongo.errors import BulkWriteError, DocumentTooLarge, DuplicateKeyError, OperationFailure, WriteError
from pymongo.results import BulkWriteResult, DeleteResult, InsertManyResult, InsertOneResult, UpdateResult

T = TypeVar("T")

MAX_BSON_SIZE = 16 * 1024 * 1024
"""MongoDB's limit on a document (``maxBsonObjectSize``)."""
CONFLICTING_UPDATE_OPERATORS = 40
DOCUMENT_TOO_LARGE_AFTER_UPDATE = 17419
Refusal = type[OperationFailure]
"""How a refused write comes back: a ``WriteError`` for an update, an ``OperationFailure`` for findAndModify."""


def bson_size(document: Mapping[str, Any]) -> int:
    return len(bson.encode(document))


def conflict(update: Mapping[str, Any]) -> str | None:
    """MongoDB's refusal of an update that names a path twice, or a path and a path inside it (None: none)."""
    paths: list[str] = []
    for operator, fields in update.items():
        if operator.startswith("$") and isinstance(fields, Mapping):
            paths += list(fields)
            if operator == "$rename":
                paths += [str(target) for target in fields.values()]
    for n, path in enumerate(paths):
        for other in paths[:n]:
            if path == other or path.startswith(f"{other}.") or other.startswith(f"{path}."):
                return f"Updating the path '{path}' would create a conflict at '{min(path, other, key=len)}'"
    return None


class MemoryCursor:
    def __init__(self, cursor: Cursor[dict[str, Any]]) -> None:
        self._cursor = cursor

    def sort(self, *args: Any, **kwargs: Any) -> MemoryCursor:
        self._cursor = self._cursor.sort(*args, **kwargs)
        return self

    def limit(self, count: int) -> MemoryCursor:
        self._cursor = self._cursor.limit(count)
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        return list(self._cursor)[:length]

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async def documents() -> AsyncIterator[dict[str, Any]]:
            for document in self._cursor:
                yield document

        return documents()


class MemoryCollection:
    def __init__(
        self, collection: mongomock.Collection[dict[str, Any]], calls: list[tuple[str, str]], database: MemoryDatabase
    ) -> None:
        self.sync = collection
        self.name = collection.name
        self.full_name = collection.full_name
        self.calls = calls
        self.database = database

    def _call(self, operation: str) -> None:
        self.calls.append((operation, self.name))

    async def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        self._call("find")
        return self.sync.find_one(*_projection_copied(args), **kwargs)

    def find(self, *args: Any, **kwargs: Any) -> MemoryCursor:
        self._call("find")
        return MemoryCursor(self.sync.find(*_projection_copied(args), **kwargs))

    async def insert_one(self, document: dict[str, Any]) -> InsertOneResult:
        self._call("insert")
        _fits(document)
        return self.sync.insert_one(document)

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> InsertManyResult:
        self._call("insert")
        for document in documents:
            _fits(document)
        return self.sync.insert_many(documents, ordered=ordered)

    async def update_one(self, filter: Mapping[str, Any], update: Mapping[str, Any], **kwargs: Any) -> UpdateResult:
        self._call("update")
        return self._checked_update(WriteError, filter, update, lambda: self.sync.update_one(filter, update, **kwargs))

    async def update_many(self, filter: Mapping[str, Any], update: Mapping[str, Any], **kwargs: Any) -> UpdateResult:
        self._call("update")
        return self._checked_update(WriteError, filter, update, lambda: self.sync.update_many(filter, update, **kwargs))

    async def bulk_write(
        self, requests: list[UpdateOne] | list[InsertOne[Any]], ordered: bool = True
    ) -> BulkWriteResult:
        """Updates or inserts in one round trip (what the services send in bulk: ``UpdateOne``, upserts too, or
        ``InsertOne``, never the two in one request). A write that fails fails alone (unordered) or stops the rest
        (ordered): a ``BulkWriteError`` naming each by its index."""
        if requests and all(isinstance(request, InsertOne) for request in requests):
            return self._inserted_in_bulk([dict(request._doc) for request in requests], ordered)  # type: ignore[arg-type]
        self._call("update")
        matched = modified = 0
        upserted: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for index, request in enumerate(requests):
            assert isinstance(request, UpdateOne), "only UpdateOne is sent in bulk"
            # mongomock's own bulk_write does not take this PyMongo's operations: each is applied as update_one.
            query, update, upsert = request._filter, request._doc, bool(request._upsert)
            assert isinstance(update, Mapping), "no pipeline updates are sent"

            def one(q: Mapping[str, Any] = query, u: Any = update, up: bool = upsert) -> UpdateResult:
                return self.sync.update_one(q, u, upsert=up)

            try:
                result = self._checked_update(WriteError, query, update, one)
            except WriteError as error:
                failed.append({"index": index, "code": error.code or 11000, "errmsg": str(error)})
                if ordered:
                    break
                continue
            matched, modified = matched + result.matched_count, modified + result.modified_count
            if result.upserted_id is not None:
                upserted.append({"index": index, "_id": result.upserted_id})
        answer = {"nMatched": matched, "nModified": modified, "nUpserted": len(upserted), "upserted": upserted,
                  "writeErrors": failed, "writeConcernErrors": [], "nInserted": 0, "nRemoved": 0}  # fmt: skip
        if failed:
            raise BulkWriteError(answer)
        return BulkWriteResult(answer, acknowledged=True)

    def _inserted_in_bulk(self, documents: list[dict[str, Any]], ordered: bool) -> BulkWriteResult:
        self._call("insert")
        for document in documents:
            _fits(document)  # PyMongo refuses the whole request before sending it
        inserted = 0
        failed: list[dict[str, Any]] = []
        for index, document in enumerate(documents):
            try:
                self.sync.insert_one(document)
            except DuplicateKeyError as error:
                failed.append({"index": index, "code": 11000, "errmsg": str(error)})
                if ordered:
                    break
                continue
            inserted += 1
        answer = {"nMatched": 0, "nModified": 0, "nUpserted": 0, "upserted": [], "writeErrors": failed,
                  "writeConcernErrors": [], "nInserted": inserted, "nRemoved": 0}  # fmt: skip
        if failed:
            raise BulkWriteError(answer)
        return BulkWriteResult(answer, acknowledged=True)

    async def find_one_and_update(
        self, filter: Mapping[str, Any], update: Mapping[str, Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any] | None:
        self._call("findAndModify")
        # findAndModify is a command: MongoDB's refusal comes back as an OperationFailure, not a WriteError.
        return self._checked_update(
            OperationFailure, filter, update, lambda: self.sync.find_one_and_update(filter, update, *args, **kwargs)
        )

    def _checked_update(
        self, error: Refusal, filter: Mapping[str, Any], update: Mapping[str, Any], run: Callable[[], T]
    ) -> T:
        """``run`` the update as MongoDB would: refused whole when its paths conflict, and undone (refused) when a
        document it changed would exceed 16 MiB."""
        refused = conflict(update)
        if refused:
            raise error(refused, CONFLICTING_UPDATE_OPERATORS, {"code": CONFLICTING_UPDATE_OPERATORS})
        _fits(update, "update")
        before = {document["_id"]: document for document in self.sync.find(filter)}
        result = run()
        upserted = getattr(result, "upserted_id", None)
        changed = [*before, *([upserted] if upserted is not None else [])]
        for document_id in changed:
            after = self.sync.find_one({"_id": document_id})
            if after is not None and bson_size(after) > MAX_BSON_SIZE:
                for original in before.values():
                    self.sync.replace_one({"_id": original["_id"]}, original)
                if document_id not in before:
                    self.sync.delete_one({"_id": document_id})
                message = f"Resulting document after update is larger than {MAX_BSON_SIZE}"
                raise error(message, DOCUMENT_TOO_LARGE_AFTER_UPDATE, {"code": DOCUMENT_TOO_LARGE_AFTER_UPDATE})
        return result

    async def delete_one(self, *args: Any, **kwargs: Any) -> DeleteResult:
        self._call("delete")
        return self.sync.delete_one(*args, **kwargs)

    async def delete_many(self, *args: Any, **kwargs: Any) -> DeleteResult:
        self._call("delete")
        return self.sync.delete_many(*args, **kwargs)

    async def aggregate(self, pipeline: list[dict[str, Any]], **kwargs: Any) -> MemoryCursor:
        self._call("aggregate")
        return MemoryCursor(self.sync.aggregate(pipeline, **kwargs))  # type: ignore[arg-type]

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        self._call("count")
        return self.sync.count_documents(*args, **kwargs)

    async def estimated_document_count(self) -> int:
        self._call("count")
        return self.sync.estimated_document_count()

    async def create_index(self, *args: Any, **kwargs: Any) -> str:
        return self.sync.create_index(*args, **kwargs)

    async def index_information(self) -> MutableMapping[str, Any]:
        return self.sync.index_information()

    async def drop_index(self, name: str) -> None:
        self.sync.drop_index(name)


def _fits(document: Mapping[str, Any], operation: str = "insert") -> None:
    """PyMongo's own check before it sends a document the server would refuse (``DocumentTooLarge``)."""
    size = bson_size(document)
    if size > MAX_BSON_SIZE:
        if operation == "insert":
            raise DocumentTooLarge(f"BSON document too large ({size} bytes) - the connected server supports BSON "
                                   f"document sizes up to {MAX_BSON_SIZE} bytes.")  # fmt: skip
        raise DocumentTooLarge(f"{operation} command document too large")


class MemoryDatabase:
    """A fresh, empty database (one per test)."""

    def __init__(self) -> None:
        client: mongomock.MongoClient[dict[str, Any]] = mongomock.MongoClient(tz_aware=True)
        self._database = client.get_database("test", codec_options=CodecOptions(tz_aware=True))
        self._collections: dict[str, MemoryCollection] = {}
        self.calls: list[tuple[str, str]] = []
        """Every round trip its collections were asked for: (operation, collection), in order."""

    def __getitem__(self, name: str) -> MemoryCollection:
        if name not in self._collections:
            self._collections[name] = MemoryCollection(self._database[name], self.calls, self)
        return self._collections[name]

    async def command(self, name: str, value: str, **options: Any) -> dict[str, Any]:
        """The one command the services send by name: ``count`` (``mongo.count``)."""
        if name != "count":
            raise NotImplementedError(f"the in-memory store has no {name} command")
        self.calls.append(("count", value))
        return {"n": self._database[value].count_documents(options.get("query", {})), "ok": 1.0}


def _projection_copied(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """mongomock adds ``_id`` to the projection it is given: a store's module-level projection (intake's ``HIDDEN``)
    would then reach the real server of a later store test in the same process changed."""
    if len(args) > 1 and isinstance(args[1], dict):
        return (args[0], dict(args[1]), *args[2:])
    return args
