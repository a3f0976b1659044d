"""The console's sessions, kept in caseload's database so any instance serves any session.

The browser's cookie holds only a random id; the database holds its SHA-256 (a copy of the database is no cookie),
the person's access token (used for every call to the services, never sent to the browser), who they are (for the
audit), the session's CSRF token and when it was last used (microseconds since the epoch, as the projection's
stamps: a number compares the same on every server). A session unused for ``CONSOLE_IDLE_MINUTES`` is signed out at
its next request; idle ones are removed whenever someone signs in."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase

from services.common.auth import Principal, Role
from services.common.indexes import Index, create_index
from services.common.mongo import Document
from services.common.utc import utc_now

from ..store import stamp

COLLECTION = "console_sessions"
INDEXES = (Index(COLLECTION, (("last_seen_us", 1),), "signing out the sessions idle too long"),)


@dataclass(frozen=True)
class ConsoleSession:
    key: str
    """The stored id (the cookie's hash)."""
    token: str
    csrf: str
    principal: Principal

    @property
    def authorization(self) -> str:
        return f"Bearer {self.token}"

    def csrf_matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), (presented or "").encode())


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class ConsoleSessions:
    def __init__(self, database: AsyncDatabase[Document], idle: timedelta) -> None:
        self.collection = database[COLLECTION]
        self._idle_us = int(idle.total_seconds() * 1_000_000)

    async def create_indexes(self) -> None:
        [idle] = INDEXES
        await create_index(self.collection, idle)

    async def open(self, token: str, principal: Principal) -> str:
        """A new session for the person; the cookie's value."""
        cookie = secrets.token_urlsafe(32)
        now = stamp(utc_now())
        await self.collection.delete_many({"last_seen_us": {"$lte": now - self._idle_us}})
        await self.collection.insert_one({
            "_id": _key(cookie), "token": token, "csrf": secrets.token_urlsafe(32), "role": principal.role.value,
            "token_id": principal.token_id, "subject": principal.subject, "username": principal.username,
            "opened_us": now, "last_seen_us": now,
        })  # fmt: skip
        return cookie

    async def find(self, cookie: str | None, touch: bool = True) -> ConsoleSession | None:
        """The session the cookie names, None when there is none or it was idle too long (then it is removed).
        ``touch``: the request counts as activity (a live stream's checks do not)."""
        if not cookie:
            return None
        now = stamp(utc_now())
        document = await self.collection.find_one({"_id": _key(cookie)})
        if document is None:
            return None
        if now - document["last_seen_us"] >= self._idle_us:
            await self.collection.delete_one({"_id": document["_id"]})
            return None
        if touch:
            await self.collection.update_one({"_id": document["_id"]},
                                             {"$set": {"last_seen_us": now}})  # fmt: skip
        principal = Principal(Role(document["role"]), document["token_id"], document["subject"], document["username"])
        return ConsoleSession(document["_id"], document["token"], document["csrf"], principal)

    async def close(self, session: ConsoleSession) -> None:
        await self.collection.delete_one({"_id": session.key})
