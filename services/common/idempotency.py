"""``Idempotency-Key`` for requests that create something: a client that retries (its connection broke, the
service was restarted mid-request) gets the first answer again instead of a second record.

The key does not store answers: it fixes the id of what the request creates. The first request with a key
draws the id and keeps it with a fingerprint of the body; a retry with the same key and body gets the same
id, so creating finds the record the first one made (or makes it, if the first died before), and answers
with it. The same key with another body is a client error (422). Keys are kept 24 hours: a TTL index has
MongoDB remove them; a server without TTL indexes (FerretDB v1 answers NotImplemented) gets a plain index and
``ExpiredKeyPurge`` removes them instead. Either way a key is honoured only within 24 hours of its first use,
checked when it is read, since neither removal happens the moment a key expires.

A change of one aggregate may keep its keys in the aggregate instead (``kept_record_id``, ``with_key``: a field
``idempotency_keys`` of the record, key -> fingerprint, record id, first use), written by the change's own
version-checked write: no round trip of its own. A retry reads it with the record the change loads anyway; two
first requests racing are one write and one conflict, and the loser, loading again, finds the winner's key.

A request that creates a record of its own (a patient, an episode) keeps its key in that record instead
(``request_fields``: the fields ``request_key``, ``request_fingerprint``, ``request_at``, under a unique sparse
index): the insert keeps it, and a retry is the insert refused (the key is taken), then one read of the record
that holds it. A record made without a key holds its own id there, so that every record this version writes has
a distinct one (a server that ignores ``sparse``, as FerretDB v1 does, indexes each). Keys kept in
``idempotency_keys`` by the version before are asked (``IdempotencyKeys.kept_apart``) only while a request made
then may still be retried: see ``IdempotencyKeys.note_keys_kept_in_records``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Header
from pydantic import BaseModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, OperationFailure

from .indexes import Index, create_index
from .mongo import Document
from .utc import assume_utc, utc_now
from .worker import PollingWorker

log = logging.getLogger(__name__)

IDEMPOTENCY_KEYS = "idempotency_keys"
KEPT = timedelta(hours=24)
PURGE_EVERY = timedelta(hours=1)
"""How often expired keys are removed where the server cannot do it (no TTL indexes)."""
NOT_IMPLEMENTED = 238
INDEXES = (
    Index(IDEMPOTENCY_KEYS, (("at", 1),), "keys expire 24 hours after their first use: a TTL index (where the "
          "server has none, a plain one for ExpiredKeyPurge's query)",
          options={"expireAfterSeconds": int(KEPT.total_seconds())}),
)  # fmt: skip

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Any unique string (a UUID): a retry with the same key and body within 24 h gets the first "
        "answer again and creates nothing; the same key with another body is a 422.",
    ),
]


KEY_REUSED = "key_reused"
"""The 422 ``type`` of a key that came with another body (``loc``: the header)."""
KEY_RULE = {KEY_REUSED: "an `Idempotency-Key` goes with one body: a retry sends the same, a new request a new key"}
"""The rule an operation that takes a key has beyond its schema (``services.common.schemas.beyond_schema``)."""


class KeyReused(Exception):
    """The key came with another body before: the client is reusing keys."""


REQUEST_KEY = "request_key"
REQUEST_FINGERPRINT = "request_fingerprint"
REQUEST_AT = "request_at"
REQUEST_FIELDS = (REQUEST_KEY, REQUEST_FINGERPRINT, REQUEST_AT)
"""The fields of a record that keep the key of the request that made it (``request_fields``)."""
META = "meta"
RECORDS_KEEP_KEYS = "keys_kept_in_records"
"""The ``meta`` document noting when this service first kept keys in the records its requests make."""

RECORD_KEYS = "idempotency_keys"
"""The field of an aggregate that keeps the keys of the requests that changed it (``with_key``)."""


@dataclass(frozen=True)
class RequestKey:
    """A request's key as kept: its id (of the key and who called what) and its body's fingerprint."""

    key_id: str
    fingerprint: str


def request_key(key: str | None, scope: str, body: BaseModel) -> RequestKey | None:
    """The request's key (None without one): the same for the same key and scope; the body's fingerprint apart."""
    if key is None:
        return None
    key_id = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
    fingerprint = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
    return RequestKey(key_id, fingerprint)


def kept_record_id(kept: Mapping[str, Document], request: RequestKey, now: datetime) -> str | None:
    """The id a request with this key fixed in the record within 24 hours, if one did. Raises KeyReused for the same
    key with another body."""
    entry = kept.get(request.key_id)
    if entry is None or assume_utc(entry["at"]) < now - KEPT:
        return None
    if entry["fingerprint"] != request.fingerprint:
        raise KeyReused("this Idempotency-Key came with another body: use a new key for a new request")
    return str(entry["record_id"])


def with_key(kept: Mapping[str, Document], request: RequestKey, record_id: str, now: datetime) -> Document:
    """The record's keys with this request's (its first use kept), those older than 24 hours left out."""
    fresh = {key_id: entry for key_id, entry in kept.items() if assume_utc(entry["at"]) >= now - KEPT}
    fresh.setdefault(request.key_id, {"fingerprint": request.fingerprint, "record_id": record_id, "at": now})
    return fresh


def request_fields(request: RequestKey | None, record_id: str, now: datetime) -> Document:
    """The fields that keep a request's key in the record it makes (without a key: the record's own id)."""
    if request is None:
        return {REQUEST_KEY: record_id}
    return {REQUEST_KEY: request.key_id, REQUEST_FINGERPRINT: request.fingerprint, REQUEST_AT: now}


def made_by(record: Mapping[str, object], request: RequestKey, now: datetime) -> bool:
    """Whether ``record`` (holding ``request``'s key) was made by this request within 24 hours: False when its key
    is older (the key is free for a new request). Raises KeyReused for the same key with another body."""
    at = record.get(REQUEST_AT)
    if not isinstance(at, datetime) or assume_utc(at) < now - KEPT:
        return False
    if record.get(REQUEST_FINGERPRINT) != request.fingerprint:
        raise KeyReused("this Idempotency-Key came with another body: use a new key for a new request")
    return True


def new_record_id() -> str:
    return str(uuid.uuid4())


class IdempotencyKeys:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.keys = database[IDEMPOTENCY_KEYS]
        self._meta = database[META]
        self.expired_by_server = True
        """False where the server has no TTL indexes: run ``ExpiredKeyPurge`` (known after ``create_indexes``)."""
        self.apart_until: datetime | None = None
        """Until when a key kept in a record may instead be one the version before kept here (``kept_apart``); None
        until ``note_keys_kept_in_records``: always."""

    async def note_keys_kept_in_records(self, *records: AsyncCollection[Document]) -> None:
        """Note (at start-up) until when a request whose key is now kept in the record it makes (in ``records``) may
        be a retry of one the version before kept here: 48 hours after this version first started on a database
        holding keys or records (the 24 hours keys are kept, and as long again for instances of the version before
        still running during a rolling upgrade); never on a database empty then (a new clinic). After that window
        keys kept in records cost no read of this collection."""
        now = utc_now()
        counts = [await collection.estimated_document_count() for collection in (self.keys, *records)]
        until = now + 2 * KEPT if any(counts) else now
        noted = {"$setOnInsert": {"since": now, "apart_until": until}}
        await self._meta.update_one({"_id": RECORDS_KEEP_KEYS}, noted, upsert=True)
        first = await self._meta.find_one({"_id": RECORDS_KEEP_KEYS})  # the first instance's note, not this one's
        self.apart_until = assume_utc(first["apart_until"]) if first is not None else until

    async def kept_apart(self, request: RequestKey | None, now: datetime) -> str | None:
        """The id the version before fixed for this request's key, while its requests may still be retried; None
        otherwise (nothing read after the window). Raises KeyReused for the same key with another body."""
        if request is None or (self.apart_until is not None and now > self.apart_until):
            return None
        kept = await self.keys.find_one({"_id": request.key_id})
        if kept is None or assume_utc(kept["at"]) < now - KEPT:
            return None
        if kept["fingerprint"] != request.fingerprint:
            raise KeyReused("this Idempotency-Key came with another body: use a new key for a new request")
        return str(kept["record_id"])

    async def create_indexes(self) -> None:
        [expiry] = INDEXES
        try:
            await create_index(self.keys, expiry)
        except OperationFailure as error:
            if error.code != NOT_IMPLEMENTED:
                raise
            log.warning("this MongoDB server has no TTL indexes: expired idempotency keys are purged every %s "
                        "by the service instead", PURGE_EVERY)  # fmt: skip
            self.expired_by_server = False
            await create_index(self.keys, replace(expiry, options={}))

    async def purge_expired(self) -> int:
        """Remove the keys older than 24 hours (what a TTL index does); returns how many."""
        result = await self.keys.delete_many({"at": {"$lt": utc_now() - KEPT}})
        return result.deleted_count

    async def record_id(self, key: str | None, scope: str, body: BaseModel) -> str:
        """The id of the record this request creates: a new one without a key; with one, the same for the same
        key, scope (who called what) and body within 24 hours. Raises KeyReused for the same key with another body."""
        request = request_key(key, scope, body)
        return new_record_id() if request is None else await self.kept_id(request)

    async def kept_id(self, request: RequestKey) -> str:
        """The id kept for ``request``'s key (kept now if it is the first), as ``record_id``."""
        key_id, fingerprint = request.key_id, request.fingerprint
        kept = await self._keep(key_id, fingerprint)
        if assume_utc(kept["at"]) < utc_now() - KEPT:  # an old key used again: a new request
            await self.keys.delete_one({"_id": key_id, "at": kept["at"]})
            kept = await self._keep(key_id, fingerprint)
        if kept["fingerprint"] != fingerprint:
            raise KeyReused("this Idempotency-Key came with another body: use a new key for a new request")
        return str(kept["record_id"])

    async def _keep(self, key_id: str, fingerprint: str) -> Document:
        """The key's record: this request's, or the one a request with the same key kept first."""
        while True:
            first = {"_id": key_id, "fingerprint": fingerprint, "record_id": str(uuid.uuid4()), "at": utc_now()}
            try:
                await self.keys.insert_one(first)
                return first
            except DuplicateKeyError:
                kept = await self.keys.find_one({"_id": key_id})
            if kept is not None:
                return kept
            # removed between the two (expired): try again


class ExpiredKeyPurge(PollingWorker):
    """Removes expired keys every hour, where the server has no TTL index to do it."""

    poll_seconds = PURGE_EVERY.total_seconds()

    def __init__(self, keys: IdempotencyKeys) -> None:
        super().__init__()
        self._keys = keys

    async def work_once(self) -> int:
        return await self._keys.purge_expired()
