"""Group commit of inserts: the documents that concurrent callers insert into one collection within a few
milliseconds (or while the previous group is being written) go to the store in one ``insert_many``.

Each caller still waits until its own document is stored (an audit entry before the PII it records leaves the
service), and a failed insert fails exactly the callers whose documents it did not store: the insert is unordered,
so a document the store refuses (a duplicate key: ``DuplicateKeyError``, as ``insert_one`` raises it) fails its own
caller only; a lost connection or a write concern not met fails the whole group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from .mongo import Document, write_error
from .outcomes import retrieved, settle

GROUP_SECONDS = 0.002
"""How long the first document of a group waits for others to join it (a cost to that one caller's answer)."""
GROUP_MOST = 500
"""At most this many documents in one insert (the rest go in the next)."""


class GroupedInserts:
    """Inserts into ``collection``, grouped across concurrent callers (``insert``)."""

    def __init__(
        self, collection: AsyncCollection[Document], window_seconds: float = GROUP_SECONDS, most: int = GROUP_MOST
    ) -> None:
        self._collection = collection
        self._window = window_seconds
        self._most = most
        self._waiting: list[tuple[Document, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def insert(self, document: Document) -> None:
        """Store ``document``, returning once it is stored; raises what the store raised for its group."""
        stored: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stored.add_done_callback(retrieved)
        self._waiting.append((document, stored))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_groups())
        await asyncio.shield(stored)  # a caller that gives up does not cancel the write of the others

    async def _write_groups(self) -> None:
        """Write groups until none waits: those that arrive while one is written form the next."""
        group: list[tuple[Document, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                await asyncio.sleep(self._window)
                group, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
                await self._write(group)
        finally:  # stopped (the service is shutting down): no caller waits for ever
            for _, stored in [*group, *self._waiting]:
                stored.cancel()
            self._waiting, self._writer = [], None

    async def _write(self, group: list[tuple[Document, asyncio.Future[None]]]) -> None:
        try:
            await self._collection.insert_many([document for document, _ in group], ordered=False)
        except BulkWriteError as error:
            if error.details.get("writeConcernErrors"):
                _settle(group, error)
                return
            refused = {int(e["index"]): e for e in error.details.get("writeErrors", [])}
            for index, one in enumerate(group):
                _settle([one], write_error(refused[index]) if index in refused else None)
        except Exception as error:  # whatever the store raised is each caller's to raise
            _settle(group, error)
        else:
            _settle(group, None)


def _settle(group: Sequence[tuple[Any, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, stored in group:
        settle(stored, error)
