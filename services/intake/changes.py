"""Changing intake's records. Every change to an episode goes through ``change_episode``: load it, decide
(pure, in ``domain/episode.py``), and store the episode with its events in one version-checked write
(retried when another writer won). Patients change through the store, which audits every access first;
a consent change is audited once it happened (the consent itself says who changed it and when).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NoReturn, TypeVar

from services.common.auth import Principal
from services.common.change_path import ATTEMPTS, Record, change
from services.common.idempotency import (
    KEPT,
    IdempotencyKeys,
    RequestKey,
    kept_record_id,
    made_by,
    new_record_id,
    request_fields,
    with_key,
)
from services.common.mongo import Document
from services.common.outbox import ConcurrentChange
from services.common.utc import utc_now
from stepwise_contract import EventData, InstrumentResult, Program, ScreenResult, Track, new_event

from .domain import episode as decide_on
from .domain.episode import AssessmentRequest, ConsentTerms, Decision, MeasureRequest
from .domain.links import QuestionnaireLink, link_state, measure_id_of, new_link, token_hash
from .domain.measures import MeasuresPolicy
from .domain.model import Assessment, Consent, DrugScreen, Episode, EpisodeEnd, EpisodeError, RecordedMeasure
from .domain.patient import match_key, name_prefixes
from .domain.placement import PlacementPolicy
from .settings import SOURCE
from .store import EPISODES, EPISODES_COUNTED, PATIENTS, IntakeStore, StoredEpisode

T = TypeVar("T")


Decide = Callable[[Episode, datetime], Decision[T]]


async def change_episode(store: IntakeStore, episode_id: str, decide: Decide[T], *, while_closed: bool = False) -> T:
    """Apply ``decide`` to an open episode (or a closed one too, ``while_closed``); raises EpisodeError (no such
    episode, closed, the decision's, or the store's refusal)."""
    return (await _change(store, episode_id, decide, while_closed))[1]


async def _change(store: IntakeStore, episode_id: str, decide: Decide[T], while_closed: bool) -> tuple[Episode, T]:
    """``change_episode``, answering the episode as it is now with the decision's result."""

    def deciding(episode: Episode, now: datetime) -> tuple[Episode, list[EventData], tuple[Episode, T]]:
        if not while_closed:
            decide_on.refuse_if_closed(episode)
        decided, events, result = decide(episode, now)
        return decided, events, (decided, result)

    return await change(_episode_of(store, episode_id), deciding, _no_episode)


def _episode_of(store: IntakeStore, episode_id: str) -> Record[StoredEpisode, Episode]:
    async def save(stored: StoredEpisode, episode: Episode, events: Sequence[EventData], _: str | None) -> bool:
        return await store.save(stored, episode, [new_event(event, source=SOURCE) for event in events])

    return Record(load=lambda: store.get_to_change(episode_id), state=lambda stored: stored.episode, save=save)


def _no_episode() -> NoReturn:
    raise EpisodeError("no_episode", "episode not found")


class PatientExists(Exception):
    """A patient with the same name and date of birth is registered already."""

    def __init__(self, patient_id: str) -> None:
        super().__init__(patient_id)
        self.patient_id = patient_id


async def register_patient(
    store: IntakeStore,
    by: Principal,
    details: Document,
    patient_id: str,
    *,
    confirm_new: bool = False,
    key: RequestKey | None = None,
) -> str:
    """Register a patient (name, contact data: PII, kept here alone) under a new pseudonymous id, keeping the
    request's ``key``; answers the patient's id (a retried request's: the one it registered). Raises PatientExists
    when one with the same name and birth date is registered, unless ``confirm_new``; KeyReused for a key that came
    with another body. The match is the insert's own condition: no read first."""
    matching = match_key(details["name"], details["date_of_birth"])
    found_by = {"match_key": matching, "name_prefixes": name_prefixes(details["name"])}
    for _ in range(ATTEMPTS):
        now = utc_now()
        patient = {"_id": patient_id, **details, **found_by, "registered_at": now, **EPISODES_COUNTED,
                   **request_fields(key, patient_id, now)}  # fmt: skip
        if await store.register(patient, by, unless_matched=not confirm_new):
            return patient_id
        retried = await _registered_by(store, patient_id, key, now)
        if retried is not None:
            return retried
        if not confirm_new and (existing := await store.patient_matching(matching)) is not None:
            await store.audit(by, "match_patient", existing)  # the answer tells that this person is a patient here
            raise PatientExists(existing)
    raise ConcurrentChange("the patients kept changing; try again")


async def _registered_by(store: IntakeStore, patient_id: str, key: RequestKey | None, now: datetime) -> str | None:
    """The patient this request registered before (it is retried), if it did; frees its key if it is over 24 hours
    old (a new request, which registers again)."""
    mine = await store.patient_of_request(patient_id, key)
    if mine is None or mine["_id"] == patient_id or key is None:
        return None if mine is None else patient_id
    if made_by(mine, key, now):
        return str(mine["_id"])
    await store.free_request_key(PATIENTS, str(mine["_id"]), key.key_id)
    return None


async def open_episode(
    store: IntakeStore,
    patient_id: str,
    program: Program,
    episode_id: str,
    track: Track | None = None,
    key: RequestKey | None = None,
) -> Episode:
    """Open an episode keeping the request's ``key``: a retried request answers the episode it opened. Raises
    EpisodeError (no such patient), KeyReused (the key came with another body). The opening is counted in the
    patient's record first (``earlier_episodes``), which is also the look for the patient."""
    if not await store.count_episode(patient_id):
        raise EpisodeError("no_patient", "patient not found")
    for _ in range(ATTEMPTS):
        now = utc_now()
        opened = await store.open_keyed(decide_on.open_episode(patient_id, program, now, episode_id, track), key)
        if opened is not None:
            return opened
        held = None if key is None else await store.episode_of_request(key)
        if held is None or key is None:
            continue  # the key was freed meanwhile
        if made_by(held, key, now):
            stored = await store.get(str(held["_id"]))
            if stored is not None:
                return stored.episode
        else:
            await store.free_request_key(EPISODES, str(held["_id"]), key.key_id)
    raise ConcurrentChange("the episodes kept changing; try again")


@dataclass(frozen=True)
class Keyed:
    """A request's Idempotency-Key, kept in the episode it changes; ``keys`` holds it for an episode stored before
    keys were kept in episodes."""

    request: RequestKey
    keys: IdempotencyKeys


async def record_assessment(
    store: IntakeStore,
    policy: PlacementPolicy,
    measures: MeasuresPolicy,
    episode_id: str,
    request: AssessmentRequest,
    key: Keyed | None = None,
) -> Assessment:
    """Record an assessment; with ``key``, its id is the one the key fixed in the episode (a retry finds the
    assessment the first request recorded), kept by the assessment's own write."""

    def deciding(assessment_id: str) -> Decide[Assessment]:
        def decide(episode: Episode, now: datetime) -> Decision[Assessment]:
            return decide_on.assess(episode, replace(request, assessment_id=assessment_id), policy, now, measures)

        return decide

    if key is None:
        return await change_episode(store, episode_id, deciding(new_record_id()))
    return await _keyed_change(store, episode_id, key, deciding)


async def _keyed_change(store: IntakeStore, episode_id: str, key: Keyed, deciding: Callable[[str], Decide[T]]) -> T:
    """``change_episode`` of an open episode by a request with a key: the id of what it creates is the one the key
    fixed in the episode within 24 hours, else a new one, kept in the episode by the change's own write. (An episode
    stored before keys were kept in episodes asks ``idempotency_keys`` as before for a key it does not keep, for 24
    hours after its first keyed change: a request made before, retried, finds its record.)"""
    attempt: list[tuple[str, Document, int | None]] = []
    """This attempt's record id, the episode's keys with it, and (its first keyed change) until when keys of the
    requests before may be kept apart."""

    async def load() -> StoredEpisode | None:
        stored = await store.get_to_change(episode_id)
        if stored is not None:
            now = utc_now()
            kept = stored.keys or {}
            record_id = kept_record_id(kept, key.request, now)
            if record_id is None:
                record_id = await key.keys.kept_id(key.request) if stored.keys_apart(now) else new_record_id()
            apart_until = int((now + KEPT).timestamp() * 1_000_000) if stored.keys is None else None
            attempt[:] = [(record_id, with_key(kept, key.request, record_id, now), apart_until)]
        return stored

    async def save(stored: StoredEpisode, episode: Episode, events: Sequence[EventData], _: str | None) -> bool:
        keys, apart_until = attempt[0][1:]
        return await store.save(stored, episode, [new_event(e, source=SOURCE) for e in events], keys, apart_until)

    def decide(episode: Episode, now: datetime) -> Decision[T]:
        decide_on.refuse_if_closed(episode)
        return deciding(attempt[0][0])(episode, now)

    record = Record(load=load, state=lambda stored: stored.episode, save=save)
    return await change(record, decide, _no_episode)


async def record_measure(
    store: IntakeStore, policy: MeasuresPolicy, episode_id: str, request: MeasureRequest
) -> RecordedMeasure:
    """Record a measure, also on a closed episode (alumni follow-up)."""

    def decide(episode: Episode, now: datetime) -> Decision[RecordedMeasure]:
        return decide_on.record_measure(episode, request, policy, now)

    return await change_episode(store, episode_id, decide, while_closed=True)


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
    def decide(episode: Episode, now: datetime) -> Decision[Consent]:
        return decide_on.grant_consent(episode, terms, now, consent_id, by.who)

    episode, consent = await _change(store, episode_id, decide, while_closed=False)
    await _audit_consent(store, by, "grant_consent", episode)
    return consent


async def revoke_consent(store: IntakeStore, by: Principal, episode_id: str, consent_id: str) -> Consent:
    """Revoke a consent, also once the episode is closed: a patient may withdraw consent at any time."""

    def decide(episode: Episode, now: datetime) -> Decision[Consent]:
        return decide_on.revoke_consent(episode, consent_id, now, by.who)

    episode, consent = await _change(store, episode_id, decide, while_closed=True)
    await _audit_consent(store, by, "revoke_consent", episode)
    return consent


async def _audit_consent(store: IntakeStore, by: Principal, action: str, episode: Episode) -> None:
    """A consent names a support: changing it is an access to the patient's protected record. Audited once it
    happened: a refused change (no such episode or consent, a closed episode) is not one."""
    await store.audit(by, action, episode.patient_id, episode_id=episode.episode_id)


class LinkRefused(Exception):
    """A questionnaire link that is unknown, used or expired: the page says only that it cannot be used."""


async def make_link(
    store: IntakeStore, episode_id: str, instruments: Sequence[str], hours: int
) -> tuple[str, QuestionnaireLink]:
    """A new link for the episode's patient (also for a closed episode: alumni follow-up): the token, drawn at
    random and returned once, and the link as stored (its hash only)."""
    if await store.get(episode_id) is None:
        _no_episode()
    token = secrets.token_urlsafe(32)
    link = new_link(token, episode_id, instruments, utc_now(), hours)
    await store.add_link(link)
    return token, link


async def open_link(store: IntakeStore, token: str) -> QuestionnaireLink:
    """The link of ``token`` if it can still be answered; LinkRefused otherwise."""
    link = await store.link(token_hash(token))
    if link is None or link_state(link, utc_now()) != "open":
        raise LinkRefused()
    return link


async def answer_link(store: IntakeStore, policy: MeasuresPolicy, link: QuestionnaireLink,
                      results: list[InstrumentResult]) -> RecordedMeasure:  # fmt: skip
    """Record the patient's answers as a measure (the same change as the API's), then spend the link. The measure's
    id comes from the link, so a post repeated before the link is spent finds the same measure."""
    request = MeasureRequest(results=results, measure_id=measure_id_of(link), channel="questionnaire_link")
    measure = await record_measure(store, policy, link.episode_id, request)
    await store.use_link(link.token_hash, utc_now())
    return measure


async def close_episode(store: IntakeStore, episode_id: str, ended: EpisodeEnd, at: datetime) -> Episode:
    """care_plan graduated or discharged the episode: close it (again: nothing changes)."""
    return await change_episode(store, episode_id, lambda episode, _: decide_on.close(episode, ended, at),
                                while_closed=True)  # fmt: skip
