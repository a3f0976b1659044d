"""``Idempotency-Key`` for requests that create something: a client that retries (its connection broke, the
service was restarted mid-request) gets the first answer again instead of a second record.

The key does not store answers: it fixes the id of what the request creates. The first request with a key
draws the id and keeps it with a fingerprint of the body; a retry with the same key and body gets the same
id, so creating finds the record the first one made (or makes it, if the first died before), and answers
with it. The same key with another body is a client error (422). Keys are kept 24 hours.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import Header
from pydantic import BaseModel
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .mongo import Document
from .utc import assume_utc, utc_now

IDEMPOTENCY_KEYS = "idempotency_keys"
KEPT = timedelta(hours=24)

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


class IdempotencyKeys:
    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.keys = database[IDEMPOTENCY_KEYS]

    async def create_indexes(self) -> None:
        # Where the server has TTL indexes, it removes old keys; ``record_id`` checks the age either way.
        await self.keys.create_index([("at", ASCENDING)], expireAfterSeconds=int(KEPT.total_seconds()))

    async def record_id(self, key: str | None, scope: str, body: BaseModel) -> str:
        """The id of the record this request creates: a new one without a key; with one, the same for the same
        key, scope (who called what) and body within 24 hours. Raises KeyReused for the same key with another body."""
        if key is None:
            return str(uuid.uuid4())
        key_id = hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        fingerprint = hashlib.sha256(json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()
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
