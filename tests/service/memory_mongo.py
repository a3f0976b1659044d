"""An in-memory MongoDB for the middle test tier: mongomock's collections behind PyMongo's async API.

Only what the services call is here. It checks document encoding like PyMongo (a ``date`` is refused),
answers with the same error classes (``DuplicateKeyError``, ``BulkWriteError``), and returns aware UTC
datetimes. It is not a MongoDB: the process suite runs every boundary against real servers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import mongomock
from bson.codec_options import CodecOptions
from pymongo.results import DeleteResult, InsertManyResult, InsertOneResult, UpdateResult


class MemoryCursor:
    def __init__(self, cursor: mongomock.collection.Cursor) -> None:
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
    def __init__(self, collection: mongomock.Collection) -> None:
        self.sync = collection
        self.name = collection.name

    async def find_one(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self.sync.find_one(*args, **kwargs)  # type: ignore[no-any-return]

    def find(self, *args: Any, **kwargs: Any) -> MemoryCursor:
        return MemoryCursor(self.sync.find(*args, **kwargs))

    async def insert_one(self, document: dict[str, Any]) -> InsertOneResult:
        return self.sync.insert_one(document)  # type: ignore[no-any-return]

    async def insert_many(self, documents: list[dict[str, Any]], ordered: bool = True) -> InsertManyResult:
        return self.sync.insert_many(documents, ordered=ordered)  # type: ignore[no-any-return]

    async def update_one(self, *args: Any, **kwargs: Any) -> UpdateResult:
        return self.sync.update_one(*args, **kwargs)  # type: ignore[no-any-return]

    async def update_many(self, *args: Any, **kwargs: Any) -> UpdateResult:
        return self.sync.update_many(*args, **kwargs)  # type: ignore[no-any-return]

    async def find_one_and_update(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        return self.sync.find_one_and_update(*args, **kwargs)  # type: ignore[no-any-return]

    async def delete_one(self, *args: Any, **kwargs: Any) -> DeleteResult:
        return self.sync.delete_one(*args, **kwargs)  # type: ignore[no-any-return]

    async def delete_many(self, *args: Any, **kwargs: Any) -> DeleteResult:
        return self.sync.delete_many(*args, **kwargs)  # type: ignore[no-any-return]

    async def count_documents(self, *args: Any, **kwargs: Any) -> int:
        return self.sync.count_documents(*args, **kwargs)  # type: ignore[no-any-return]

    async def create_index(self, *args: Any, **kwargs: Any) -> str:
        return self.sync.create_index(*args, **kwargs)  # type: ignore[no-any-return]


class MemoryDatabase:
    """A fresh, empty database (one per test)."""

    def __init__(self) -> None:
        client: mongomock.MongoClient = mongomock.MongoClient(tz_aware=True)
        self._database = client.get_database("test", codec_options=CodecOptions(tz_aware=True))
        self._collections: dict[str, MemoryCollection] = {}

    def __getitem__(self, name: str) -> MemoryCollection:
        if name not in self._collections:
            self._collections[name] = MemoryCollection(self._database[name])
        return self._collections[name]
