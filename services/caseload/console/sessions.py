"""The console's sessions, kept in caseload's database so any instance serves any session.

The browser's cookie holds only a random id; the database holds its SHA-256 (a copy of the database is no cookie),
the person's access token (used for every call to the services, never sent to the browser), who they are (for the
audit), the session's CSRF token and when it was last used (microseconds since the epoch, as the projection's
stamps: a number compares the same on every server). A session unused for ``CONSOLE_IDLE_MINUTES`` is signed out at
its next request; idle ones are removed whenever someone signs in.

Signed in at the clinic's provider (``sign_in.py``), a session also holds the refresh token (never sent to the
browser either) and when its access token expires; a sign-in under way at the provider is kept in
``console_sign_ins`` (its state, nonce and PKCE verifier, under the SHA-256 of the browser's own cookie), for ten
minutes and one use."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta

from pymongo.asynchronous.database import AsyncDatabase

from services.common.auth import Principal, Role
from services.common.indexes import Index, create_indexes
from services.common.mongo import Document
from services.common.utc import utc_now

from ..store import stamp

COLLECTION = "console_sessions"
SIGN_INS = "console_sign_ins"
SIGN_IN_US = 10 * 60 * 1_000_000
"""How long a sign-in sent to the provider may take to come back."""
INDEXES = (
    Index(COLLECTION, (("last_seen_us", 1),), "signing out the sessions idle too long"),
    Index(SIGN_INS, (("started_us", 1),), "forgetting the sign-ins that did not come back from the provider in time"),
)  # fmt: skip


@dataclass(frozen=True)
class ConsoleSession:
    key: str
    """The stored id (the cookie's hash)."""
    token: str
    csrf: str
    principal: Principal
    expires_us: int | None = None
    """When the provider's access token expires (None: a static token, or a provider that does not say)."""
    renewable: bool = False
    """The session holds a refresh token."""

    @property
    def authorization(self) -> str:
        return f"Bearer {self.token}"

    def csrf_matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf.encode(), (presented or "").encode())


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class ConsoleSessions:
    def __init__(self, database: AsyncDatabase[Document], idle: timedelta) -> None:
        self._database = database
        self.collection = database[COLLECTION]
        self.sign_ins = database[SIGN_INS]
        self._idle_us = int(idle.total_seconds() * 1_000_000)

    async def create_indexes(self) -> None:
        await create_indexes(self._database, INDEXES)

    async def open(
        self, token: str, principal: Principal, *, refresh_token: str | None = None, expires_us: int | None = None
    ) -> str:
        """A new session for the person; the cookie's value."""
        cookie = secrets.token_urlsafe(32)
        now = stamp(utc_now())
        await self.collection.delete_many({"last_seen_us": {"$lte": now - self._idle_us}})
        await self.collection.insert_one({
            "_id": _key(cookie), "token": token, "csrf": secrets.token_urlsafe(32), **_who(principal),
            "refresh_token": refresh_token, "expires_us": expires_us, "renewing_until_us": 0,
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
        return _session(document)

    async def close(self, session: ConsoleSession) -> None:
        await self.collection.delete_one({"_id": session.key})

    async def claim_renewal(self, session: ConsoleSession, lease_seconds: float) -> str | None:
        """The session's refresh token, for this request alone to use for ``lease_seconds`` (two requests renewing at
        once would spend a rotating refresh token twice); None while another request holds it."""
        now = stamp(utc_now())
        document = await self.collection.find_one_and_update(
            {"_id": session.key, "renewing_until_us": {"$lte": now}, "refresh_token": {"$ne": None}},
            {"$set": {"renewing_until_us": now + int(lease_seconds * 1_000_000)}},
        )
        return None if document is None else str(document["refresh_token"])

    async def renewed(
        self, session: ConsoleSession, token: str, principal: Principal, refresh_token: str, expires_us: int | None
    ) -> ConsoleSession:
        await self.collection.update_one({"_id": session.key}, {"$set": {
            "token": token, **_who(principal), "refresh_token": refresh_token, "expires_us": expires_us,
            "renewing_until_us": 0,
        }})  # fmt: skip
        return replace(session, token=token, principal=principal, expires_us=expires_us)

    async def release(self, session: ConsoleSession) -> None:
        """The renewal did not happen (the provider could not be reached): the next request tries again."""
        await self.collection.update_one({"_id": session.key}, {"$set": {"renewing_until_us": 0}})

    async def current(self, session: ConsoleSession) -> ConsoleSession | None:
        """The session as it is stored now (renewed by another request, or gone)."""
        document = await self.collection.find_one({"_id": session.key})
        return None if document is None else _session(document)

    async def begin(self, state: str, nonce: str, code_verifier: str) -> str:
        """A sign-in sent to the provider; the cookie's value that the provider's answer must come back with."""
        cookie = secrets.token_urlsafe(32)
        now = stamp(utc_now())
        await self.sign_ins.delete_many({"started_us": {"$lte": now - SIGN_IN_US}})
        await self.sign_ins.insert_one({"_id": _key(cookie), "state": state, "nonce": nonce,
                                        "code_verifier": code_verifier, "started_us": now})  # fmt: skip
        return cookie

    async def take(self, cookie: str | None) -> tuple[str, str, str] | None:
        """The sign-in the cookie names (state, nonce, verifier), removed as it is taken: used once, never twice;
        None when there is none or it is too old."""
        if not cookie:
            return None
        document = await self.sign_ins.find_one({"_id": _key(cookie)})
        if document is None or (await self.sign_ins.delete_one({"_id": document["_id"]})).deleted_count != 1:
            return None
        if stamp(utc_now()) - document["started_us"] > SIGN_IN_US:
            return None
        return document["state"], document["nonce"], document["code_verifier"]


def _who(principal: Principal) -> dict[str, str | None]:
    return {"role": principal.role.value, "token_id": principal.token_id, "subject": principal.subject,
            "username": principal.username}  # fmt: skip


def _session(document: Document) -> ConsoleSession:
    principal = Principal(Role(document["role"]), document["token_id"], document["subject"], document["username"])
    return ConsoleSession(document["_id"], document["token"], document["csrf"], principal,
                          document.get("expires_us"), bool(document.get("refresh_token")))  # fmt: skip
