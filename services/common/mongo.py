"""MongoDB connection: one database per service, timezone-aware datetimes, string ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, WriteError

from .store_commands import StoreCommands

Document = dict[str, Any]

DUPLICATE_KEY = frozenset({11000, 11001, 12582})
"""MongoDB's codes for a duplicate key (those PyMongo raises as ``DuplicateKeyError``)."""


def write_error(entry: Document) -> WriteError:
    """The error a lone write would have raised for ``entry``, one of a bulk result's ``writeErrors``."""
    code = entry.get("code")
    kind = DuplicateKeyError if code in DUPLICATE_KEY else WriteError
    return kind(str(entry.get("errmsg", "write refused")), code, dict(entry))


def connect(
    url: str, *, tls_ca_file: Path | None, service: str = "", shapes_file: Path | None = None
) -> AsyncMongoClient[Document]:
    """A client of ``url`` (``MONGODB_URL``; ``tls=true`` in it switches TLS on), trusting the CAs of
    ``tls_ca_file`` (``MONGODB_TLS_CA_FILE``) when given, else the system's; each command counted (and its shape
    written to ``shapes_file`` when given: services/common/store_commands.py)."""
    tls: dict[str, Any] = {"tlsCAFile": str(tls_ca_file)} if tls_ca_file else {}
    listeners = [StoreCommands(service, shapes_file)]
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000, appname="stepwise",
                            event_listeners=listeners, **tls)  # fmt: skip


def equals(value: Any) -> Document:
    """A field's equality in a filter the services run on every event or pass: ``{"$eq": value}`` rather than the bare
    value. The same on MongoDB (for a scalar field); the test stand-in (nx-27017) serves it from an index whose columns
    start with the field, where a bare value (which it also compares as an array's element) it serves from a scan
    unless a single-field index names it, so a filter led by a bare value costs it a read of the whole collection."""
    return {"$eq": value}


async def count(collection: AsyncCollection[Document], query: Document) -> int:
    """How many documents of ``collection`` match ``query``: the server's ``count`` command (with a query: exact on a
    sharded cluster too), not ``count_documents``. MongoDB serves either from an index that covers the query; the
    test stand-in (nx-27017) runs ``count_documents``' pipeline ($match, $group) over every document of the
    collection (1.5 s at 20,000 messages, the store busy meanwhile), the command on the index."""
    answer = await collection.database.command("count", collection.name, query=query)
    return int(answer["n"])


async def ping(database: AsyncDatabase[Document]) -> None:
    await database.client.admin.command("ping")
