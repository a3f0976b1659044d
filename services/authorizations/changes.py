"""Changing an episode's coverage: load it, decide (pure), settle what follows, and store the coverage, its events
and its next daily look in one version-checked write (retried when another writer won). HTTP, events and the
timer call the changes named here; each goes through ``change_coverage``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import NoReturn, TypeVar

from services.common.change_path import Decide, New, Record, change
from stepwise_contract import EventData, new_event

from .domain import authorizations as rules
from .domain.authorizations import Decision, NewAuthorization, ReviewIn
from .domain.coverage import Rules, certification_recorded, next_check_on, settle
from .domain.model import Authorization, Certification, Coverage
from .settings import SOURCE
from .store import CoverageStore, StoredCoverage

T = TypeVar("T")
Said = Callable[[Coverage, T, datetime], list[EventData]]
"""What a change publishes of itself, from the coverage as decided and the change's result."""
State = tuple[Coverage, date | None]
"""The coverage with its next daily look: a settle that only moves the look is a change to store all the same."""


@dataclass(frozen=True)
class Desk:
    """What changes work with: one per service instance (also the handlers' context, ``HANDLER_CONTEXT``)."""

    store: CoverageStore
    rules: Rules


async def change_coverage(
    desk: Desk,
    episode_id: str,
    decide: Callable[[Coverage, datetime], tuple[Coverage, T]],
    applied: str | None = None,
    *,
    likely_new: bool = False,
) -> T | None:
    """Apply ``decide`` to the episode's coverage (an empty one when it has none: the change makes it); None when
    ``applied`` (an event's source#id) was applied before. ``likely_new``: the episode's first event here, whose
    coverage is inserted without a look first (one round trip; one that exists already is loaded as usual)."""
    return await change(_coverage_of(desk.store, episode_id), _settled(desk.rules, decide), _gone, applied=applied,
                        likely_new=likely_new)  # fmt: skip


async def change_known(
    desk: Desk, episode_id: str, decide: Callable[[Coverage, datetime], tuple[Coverage, T]], said: Said[T] | None = None
) -> T:
    """A person's change: on the episode's coverage (empty when it has none yet); ``said``: what the change itself
    publishes, in its write (before what settling it says)."""
    return await change(_coverage_of(desk.store, episode_id), _settled(desk.rules, decide, said), _gone)


def _coverage_of(store: CoverageStore, episode_id: str) -> Record[StoredCoverage, State]:
    async def save(stored: StoredCoverage, state: State, events: Sequence[EventData], applied: str | None) -> bool:
        coverage, look = state
        return await store.save(stored, coverage, [new_event(e, source=SOURCE) for e in events], applied, look)

    async def create(state: State, events: Sequence[EventData], applied: str | None) -> bool:
        coverage, look = state
        return await store.create(coverage, [new_event(e, source=SOURCE) for e in events], applied, look)

    return Record(
        load=lambda: store.get(episode_id),
        state=lambda stored: (stored.coverage, stored.next_check_on),
        save=save,
        applied=lambda stored: stored.applied_events,
        new=New(lambda: (Coverage(episode_id=episode_id), None), create),
    )


def _settled(
    rules_: Rules, decide: Callable[[Coverage, datetime], tuple[Coverage, T]], said: Said[T] | None = None
) -> Decide[State, T]:
    def settled(state: State, now: datetime) -> tuple[State, list[EventData], T]:
        decided, result = decide(state[0], now)
        told = said(decided, result, now) if said is not None else []
        coverage, events = settle(decided, now, rules_)
        return (coverage, next_check_on(coverage, now, rules_)), [*told, *events], result

    return settled


def _gone() -> NoReturn:
    raise AssertionError("the coverage was made before the change")  # pragma: no cover


# --- a coordinator's changes ---------------------------------------------------------------------------------


async def record_authorization(desk: Desk, episode_id: str, new: NewAuthorization, by: str) -> Authorization:
    def decide(coverage: Coverage, now: datetime) -> tuple[Coverage, Authorization]:
        return rules.record(coverage, new, desk.rules.policy, by, now)

    return await change_known(desk, episode_id, decide)


async def decide_authorization(
    desk: Desk, episode_id: str, authorization_id: str, decision: Decision, by: str
) -> Authorization:
    def decide(coverage: Coverage, now: datetime) -> tuple[Coverage, Authorization]:
        decided = rules.decide(coverage, authorization_id, decision, by, now)
        return decided, decided.authorization(authorization_id)

    return await change_known(desk, episode_id, decide)


async def review_authorization(
    desk: Desk, episode_id: str, authorization_id: str, outcome: ReviewIn, by: str
) -> Authorization:
    def decide(coverage: Coverage, now: datetime) -> tuple[Coverage, Authorization]:
        reviewed = rules.review(coverage, authorization_id, outcome, by, now)
        return reviewed, reviewed.authorization(authorization_id)

    return await change_known(desk, episode_id, decide)


async def certify(
    desk: Desk, episode_id: str, certified_on: date, hours_per_week: float, clinician: str, by: str
) -> Certification:
    def decide(coverage: Coverage, now: datetime) -> tuple[Coverage, Certification]:
        return rules.certify(coverage, certified_on, hours_per_week, clinician, by, now)

    def said(coverage: Coverage, certification: Certification, now: datetime) -> list[EventData]:
        return [*certification_recorded(coverage, certification, desk.rules.policy, now)]

    return await change_known(desk, episode_id, decide, said)


async def look_again(desk: Desk, episode_id: str) -> None:
    """The daily look: nothing new, but days passed (a review or a certification may be due)."""
    await change_known(desk, episode_id, lambda coverage, _now: (coverage, None))
