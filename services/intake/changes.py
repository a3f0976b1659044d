"""Changing intake's records. Every change to an episode goes through ``change_episode``: load it, decide
(pure, in ``domain/episode.py``), and store the episode with its events in one version-checked write
(retried when another writer won). Patients change through the store, which audits every access first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from services.common.auth import Principal
from services.common.mongo import Document
from services.common.outbox import retry_on_conflict
from services.common.utc import utc_now
from stepwise_contract import Program, ScreenResult, Track, new_event

from .domain import episode as decide_on
from .domain.episode import AssessmentRequest, ConsentTerms, Decision
from .domain.model import Assessment, Consent, DrugScreen, Episode, EpisodeError
from .domain.placement import PlacementPolicy
from .settings import SOURCE
from .store import IntakeStore

T = TypeVar("T")


async def change_episode(store: IntakeStore, episode_id: str, decide: Callable[[Episode, datetime], Decision[T]]) -> T:
    """Apply ``decide`` to an open episode; raises EpisodeError (no such episode, not open, or the decision's)."""

    async def attempt() -> tuple[T] | None:
        stored = await store.get(episode_id)
        if stored is None:
            raise EpisodeError("no_episode", "episode not found")
        if stored.episode.status != "open":
            raise EpisodeError("episode_not_open", f"episode is {stored.episode.status}")
        episode, events, result = decide(stored.episode, utc_now())
        if episode == stored.episode and not events:
            return (result,)
        envelopes = [new_event(event, source=SOURCE) for event in events]
        return (result,) if await store.save(stored, episode, envelopes) else None

    return (await retry_on_conflict(attempt))[0]


async def register_patient(store: IntakeStore, by: Principal, details: Document, patient_id: str) -> str:
    """Register a patient (name, contact data: PII, kept here alone) under a new pseudonymous id."""
    await store.add_patient({"_id": patient_id, **details, "registered_at": utc_now()}, by)
    return patient_id


async def open_episode(
    store: IntakeStore, patient_id: str, program: Program, episode_id: str, track: Track | None = None
) -> Episode:
    if not await store.patient_exists(patient_id):
        raise EpisodeError("no_patient", "patient not found")
    return await store.open_episode(decide_on.open_episode(patient_id, program, utc_now(), episode_id, track))


async def record_assessment(
    store: IntakeStore, policy: PlacementPolicy, episode_id: str, request: AssessmentRequest
) -> Assessment:
    return await change_episode(store, episode_id, lambda episode, now: decide_on.assess(episode, request, policy, now))


async def record_drug_screen(
    store: IntakeStore,
    by: Principal,
    episode_id: str,
    collected_at: datetime,
    results: Sequence[ScreenResult],
    screen_id: str | None = None,
) -> DrugScreen:
    def decide(episode: Episode, now: datetime) -> Decision[DrugScreen]:
        return decide_on.record_drug_screen(episode, collected_at, results, by.who, now, screen_id)

    return await change_episode(store, episode_id, decide)


async def grant_consent(
    store: IntakeStore, by: Principal, episode_id: str, terms: ConsentTerms, consent_id: str | None = None
) -> Consent:
    await _audit_consent(store, by, "grant_consent", episode_id)

    def decide(episode: Episode, now: datetime) -> Decision[Consent]:
        return decide_on.grant_consent(episode, terms, now, consent_id, by.who)

    return await change_episode(store, episode_id, decide)


async def revoke_consent(store: IntakeStore, by: Principal, episode_id: str, consent_id: str) -> Consent:
    await _audit_consent(store, by, "revoke_consent", episode_id)

    def decide(episode: Episode, now: datetime) -> Decision[Consent]:
        return decide_on.revoke_consent(episode, consent_id, now, by.who)

    return await change_episode(store, episode_id, decide)


async def _audit_consent(store: IntakeStore, by: Principal, action: str, episode_id: str) -> None:
    """A consent names a support: changing it is an access to the patient's protected record."""
    stored = await store.get(episode_id)
    if stored is not None:
        await store.audit(by, action, stored.episode.patient_id, episode_id=episode_id)
