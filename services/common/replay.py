"""Putting a set-aside event back: it goes through the service's normal handler, in this process, once.

An event was set aside because it was malformed or our rules rejected it (an unknown session, a plan not
active). Once the cause is fixed (the session added, a bug fixed and deployed), an admin replays it. The
handler and its dependencies are the ones the subscriber uses; the event's own source and id keep the
effect to once, as on a redelivery. Each replay is recorded on the set-aside record (when, by whom, with
what outcome); a replay that applied the event is not repeated.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from aiokafka import ConsumerRecord
from faststream._internal.context import ContextRepo
from faststream._internal.context.context_type import Context  # the marker FastStream's Context(...) returns
from pydantic import BaseModel, Field

from .auth import Principal
from .consumer import SET_ASIDE, EventHandlers, set_aside_reason
from .mongo import Document
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
    outcome: Outcome
    detail: str


class SetAsideEventOut(BaseModel):
    """An event this service could not apply, without its value (it may hold what must not be shown)."""

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


@dataclass(frozen=True)
class _StoredMessage:
    """What a handler reads of its Kafka message (``raw_message``), rebuilt from the set-aside record."""

    raw_message: ConsumerRecord[bytes, bytes]


async def replay(shelved: Document, handlers: EventHandlers, context: ContextRepo) -> Replayed:
    """Apply a set-aside event through its handler. A dependency that is down raises (try again later)."""
    if any(entry["outcome"] == "applied" for entry in shelved.get("replays", [])):
        return Replayed("already_applied", "replayed and applied before")
    model = next((model for model in handlers if model.event_type == shelved["topic"]), None)
    if model is None:
        return Replayed("set_aside_again", f"rejected: this service has no handler for {shelved['topic']}")
    handle = handlers[model].handle
    try:
        data = model.model_validate_json(shelved["value"])
        await handle(data, _StoredMessage(_record(shelved)), **_context_arguments(handle, context))
    except SET_ASIDE as error:
        return Replayed("set_aside_again", set_aside_reason(error))
    return Replayed("applied", "applied by the handler")


def replay_entry(replayed: Replayed, by: Principal) -> Document:
    """What the set-aside record keeps of a replay: the audit of who put it back, when, and what came of it."""
    entry = {"at": utc_now(), "role": by.role.value, "token_id": by.token_id, "outcome": replayed.outcome,
             "detail": replayed.detail}  # fmt: skip
    log.info("set-aside event replayed by %s (%s): %s", by.token_id, by.role.value, replayed.outcome)
    return entry


def _record(shelved: Document) -> ConsumerRecord[bytes, bytes]:
    headers = [(name, value.encode()) for name, value in shelved["headers"].items()]
    value = shelved["value"].encode()
    return ConsumerRecord(
        topic=shelved["topic"], partition=shelved["partition"], offset=shelved["offset"], timestamp=0,
        timestamp_type=0, key=shelved["key"].encode(), value=value, checksum=None, serialized_key_size=-1,
        serialized_value_size=len(value), headers=headers,
    )  # fmt: skip


def _context_arguments(handle: Any, context: ContextRepo) -> dict[str, Any]:
    """The handler's ``Annotated[..., Context("name")]`` parameters after the data and the message, from the
    broker's context."""
    hints = get_type_hints(handle, include_extras=True)
    arguments = {}
    for name in list(inspect.signature(handle).parameters)[2:]:
        hint = hints.get(name)
        if get_origin(hint) is Annotated:
            for marker in get_args(hint)[1:]:
                if isinstance(marker, Context):
                    arguments[name] = context.get(marker.name)
    return arguments
