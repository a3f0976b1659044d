"""MongoDB connection: one database per service, timezone-aware datetimes, string ids."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]


def connect(url: str) -> AsyncMongoClient[Document]:
    return AsyncMongoClient(url, tz_aware=True, serverSelectionTimeoutMS=5000, appname="stepwise")


async def ping(database: AsyncDatabase[Document]) -> None:
    await database.client.admin.command("ping")
