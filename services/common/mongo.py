"""MongoDB connection: one database per service, timezone-aware datetimes, string ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from .store_commands import StoreCommands

Document = dict[str, Any]


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


async def ping(database: AsyncDatabase[Document]) -> None:
    await database.client.admin.command("ping")
