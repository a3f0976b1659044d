"""The one change path of every record that carries an outbox (an episode, a care plan, an alumni enrolment, a
safety alert): load it, decide (pure), and store what the decision changed with its events in one version-checked
write; when another writer won in between, load it and decide again.

Each service keeps a thin, typed wrapper (``change_episode``, ``change_plan``, …) that says how its store loads
and saves the record (a ``Record``). What the wrapper's callers pass is a ``Decide``: the record as loaded and the
time, to the record as decided, its events and the caller's answer.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from stepwise_contract import EventData

from .outbox import ConcurrentChange
from .utc import utc_now

S = TypeVar("S")
"""The record as stored: what the version-checked write needs (its version), and the events applied to it."""
A = TypeVar("A")
"""What a decision works on: the aggregate (an episode, a care plan), or the part of the stored record that a
write changes."""
R = TypeVar("R")
"""What the caller is answered: the decision's result."""

ATTEMPTS = 5
"""How often a change is decided again while other writers keep winning, before the caller is told to retry."""


class Conflict(enum.Enum):
    """An attempt that lost: another writer changed the record between its load and this write."""

    CONFLICT = "conflict"


CONFLICT = Conflict.CONFLICT

Decide = Callable[[A, datetime], tuple[A, Sequence[EventData], R]]
"""The record as loaded and now, to the record as decided, the events it publishes and the caller's answer. Pure."""


def _nothing_applied(_: Any) -> Collection[str]:
    return ()


@dataclass(frozen=True)
class Record(Generic[S, A]):
    """One record as the change path reaches it through its store."""

    load: Callable[[], Awaitable[S | None]]
    """The record with its version, or None when there is none."""
    state: Callable[[S], A]
    """What a decision works on, of the stored record."""
    save: Callable[[S, A, Sequence[EventData], str | None], Awaitable[bool]]
    """The version-checked write of the decided state with its events in the record's outbox and the key of the
    event applied (if one was); False when another writer changed the record since ``load``."""
    applied: Callable[[S], Collection[str]] = _nothing_applied
    """The keys (source#id) of the events the record has applied."""
    new: New[A] | None = None
    """How a record that does not exist yet is made by its first change (None: it is not, ``absent`` answers)."""


@dataclass(frozen=True)
class New(Generic[A]):
    """A record its first change makes: decided on from ``empty`` and inserted with what it publishes."""

    empty: Callable[[], A]
    create: Callable[[A, Sequence[EventData], str | None], Awaitable[bool]]
    """The insert of the decided state with its events and the key of the event applied; False when a record exists
    already (another writer made it first: load it and decide again)."""


async def retry(attempt: Callable[[], Awaitable[R | Conflict]], attempts: int = ATTEMPTS) -> R:
    """Run ``attempt`` (load, decide, conditional write) until it does not lose; ``ConcurrentChange`` after
    ``attempts`` conflicts in a row."""
    for _ in range(attempts):
        outcome = await attempt()
        if not isinstance(outcome, Conflict):
            return outcome
    raise ConcurrentChange("the record kept changing; try again")


@overload
async def change(
    record: Record[S, A],
    decide: Decide[A, R],
    absent: Callable[[], R],
    *,
    applied: None = None,
    clock: Callable[[], datetime] = ...,
    likely_new: bool = ...,
) -> R: ...


@overload
async def change(
    record: Record[S, A],
    decide: Decide[A, R],
    absent: Callable[[], R],
    *,
    applied: str | None,
    clock: Callable[[], datetime] = ...,
    likely_new: bool = ...,
) -> R | None: ...


async def change(
    record: Record[S, A],
    decide: Decide[A, R],
    absent: Callable[[], R],
    *,
    applied: str | None = None,
    clock: Callable[[], datetime] = utc_now,
    likely_new: bool = False,
) -> R | None:
    """Apply ``decide`` to the record and answer its result. No record: ``absent()`` answers (or raises). With
    ``applied`` (an event's source#id), None when the record applied that event before, and the key is written
    with the change; without one, a decision that changes nothing writes nothing. Raises what ``decide`` raises.
    ``likely_new`` (the change that usually makes the record): inserted with no load first, one round trip; a record
    that exists refuses it, and is loaded and decided on as usual (a redelivery is then found applied)."""

    async def attempt() -> R | Conflict | None:
        stored = await record.load()
        if stored is None:
            return absent() if record.new is None else await first(record.new)
        if applied and applied in record.applied(stored):
            return None
        current = record.state(stored)
        decided, events, result = decide(current, clock())
        if decided == current and not events and not applied:
            return result
        return result if await record.save(stored, decided, events, applied) else CONFLICT

    async def first(new: New[A]) -> R | Conflict:
        """The change that makes the record: one insert (no empty record written first and loaded again)."""
        empty = new.empty()
        decided, events, result = decide(empty, clock())
        if decided == empty and not events and not applied:
            return result
        return result if await new.create(decided, events, applied) else CONFLICT

    if likely_new and record.new is not None and (made := await _made_at_once(record.new, decide, applied, clock())):
        return made[0]
    return await retry(attempt)


async def _made_at_once(new: New[A], decide: Decide[A, R], applied: str | None, now: datetime) -> tuple[R] | None:
    """The change that usually makes the record, as its insert with no load first: (its result,) when the insert
    made the record; None when one exists already (or the decision writes nothing: the record is looked for)."""
    empty = new.empty()
    decided, events, result = decide(empty, now)
    if (decided != empty or events or applied) and await new.create(decided, events, applied):
        return (result,)
    return None
