"""Putting a set-aside event back: it goes through the service's normal handler, in this process, once.

An event was set aside because it was malformed or our rules rejected it (an unknown session, a plan not
active). Once the cause is fixed (the session added, a bug fixed and deployed), an admin replays it. The
handler and its dependencies are the ones the subscriber uses; the event's own source and id keep the
effect to once, as on a redelivery. Each replay is recorded on the set-aside record (when, by whom, with
what outcome); a replay that applied the event is not repeated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from aiokafka import ConsumerRecord
from faststream import ContextRepo
from pydantic import BaseModel, Field
from pymongo.asynchronous.collection import AsyncCollection

from .auth import Principal
from .consumer import HANDLER_CONTEXT, SET_ASIDE, EventBatch, EventHandlers, set_aside_reason
from .mongo import Document
from .schemas import response_example
from .utc import UtcDatetime, utc_now

log = logging.getLogger(__name__)

Outcome = Literal["applied", "set_aside_again", "already_applied"]


@dataclass(frozen=True)
class Replayed:
    outcome: Outcome
    detail: str


class ReplayOut(BaseModel):
    at: UtcDatetime
    role: str
    token_id: str = Field(description="A fingerprint of the admin's token.")
    by: str | None = Field(default=None, description="The admin signed in at the identity provider, if so.")
    outcome: Outcome
    detail: str


class SetAsideEventOut(BaseModel):
    """An event this service could not apply, without its value (it may hold what must not be shown)."""

    model_config = response_example(
        {
            "id": "iop.episode.graduated:1:42",
            "topic": "iop.episode.graduated",
            "partition": 1,
            "offset": 42,
            "key": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "headers": {"ce_id": "5f0c9b7e-2d4a-4c1b-9e8f-3a6d2b1c0e97", "ce_type": "iop.episode.graduated"},
            "reason": "rejected: episode not found",
            "attempts": 1,
            "set_aside_at": "2026-12-01T15:00:02Z",
            "replays": [],
        }
    )

    id: str = Field(description="topic:partition:offset")
    topic: str
    partition: int
    offset: int
    key: str
    headers: dict[str, str]
    reason: str
    attempts: int
    set_aside_at: UtcDatetime
    replays: list[ReplayOut] = []

    @classmethod
    def of(cls, shelved: Document) -> SetAsideEventOut:
        return cls.model_validate({**shelved, "id": shelved["_id"]})


async def replay(shelved: Document, handlers: EventHandlers, context: ContextRepo) -> Replayed:
    """Apply a set-aside event through its handler. A dependency that is down raises (try again later)."""
    if any(entry["outcome"] == "applied" for entry in shelved.get("replays", [])):
        return Replayed("already_applied", "replayed and applied before")
    model = next((model for model in handlers if model.event_type == shelved["topic"]), None)
    if model is None:
        return Replayed("set_aside_again", f"rejected: this service has no handler for {shelved['topic']}")
    try:
        await EventBatch({model: handlers[model]}).apply(_record(shelved), context.get(HANDLER_CONTEXT))
    except SET_ASIDE as error:
        return Replayed("set_aside_again", set_aside_reason(error))
    return Replayed("applied", "applied by the handler")


def replay_entry(replayed: Replayed, by: Principal) -> Document:
    """What the set-aside record keeps of a replay: the audit of who put it back, when, and what came of it."""
    entry = {"at": utc_now(), "role": by.role.value, "token_id": by.token_id, "by": by.username or by.subject,
             "outcome": replayed.outcome, "detail": replayed.detail}  # fmt: skip
    log.info("set-aside event replayed by %s (%s): %s", by.token_id, by.role.value, replayed.outcome)
    return entry


RECORDED = "replays_recorded"
"""How many replays the set-aside record keeps: each is added if nobody added one since the record was read."""


async def record_replay(shelf: AsyncCollection[Document], shelved: Document, entry: Document) -> Document:
    """The set-aside record with the replay added, stored. The whole list is set, not pushed (a document pushed
    into an array is stored as its JSON text on the MongoDB stand-in), if no other replay was recorded since the
    record was read (its count, missing on a record never replayed, is as read), else it is read again."""
    while True:
        replays = [*shelved.get("replays", []), entry]
        counted = {"_id": shelved["_id"], RECORDED: shelved.get(RECORDED)}
        written = await shelf.update_one(counted, {"$set": {"replays": replays, RECORDED: len(replays)}})
        if written.matched_count == 1:
            return {**shelved, "replays": replays, RECORDED: len(replays)}
        again = await shelf.find_one({"_id": shelved["_id"]})
        if again is None:
            return {**shelved, "replays": replays}  # removed meanwhile: nothing to keep it on
        shelved = again


def _record(shelved: Document) -> ConsumerRecord[bytes, bytes]:
    headers = [(name, value.encode()) for name, value in shelved["headers"].items()]
    value = shelved["value"].encode()
    return ConsumerRecord(
        topic=shelved["topic"], partition=shelved["partition"], offset=shelved["offset"], timestamp=0,
        timestamp_type=0, key=shelved["key"].encode(), value=value, checksum=None, serialized_key_size=-1,
        serialized_value_size=len(value), headers=headers,
    )  # fmt: skip
