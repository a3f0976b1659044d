"""What intake's API reads beyond one stored record: an episode's assessments with their trends, and whom the
episode's consents allow to be told (each read of a protected record audited with the person). Reads only:
changes go through ``changes.py``."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from services.common.auth import Principal
from services.common.mongo import Document
from services.common.utc import utc_now
from stepwise_contract import ConsentScope, Program

from .domain import episode as decide_on
from .domain.episode import AssessmentRequest, consent_in_force, consents_allowing
from .domain.measures import MeasuresPolicy
from .domain.model import Consent, Episode
from .domain.outcomes import SeriesPoint, outcomes, series
from .domain.placement import PlacementPolicy
from .domain.reassessment import trend
from .schemas import (
    AssessmentHistory,
    AssessmentOut,
    AssessmentPreview,
    AudienceIn,
    ContactOut,
    EpisodeAudience,
    EpisodeMeasures,
    InstrumentOutcomeOut,
    InstrumentTrend,
    MeasurePoint,
    MeasureSeries,
    OutcomesOut,
    RecipientContact,
    SafetyConcernOut,
    TrendPoint,
    shown,
)
from .store import CONTACT, IntakeStore, channels_of, earlier_episodes


async def measure_series(
    store: IntakeStore, by: Principal, episode: Episode, policy: MeasuresPolicy
) -> EpisodeMeasures:
    """Every score of the episode per instrument, each against its baseline and previous score (audited)."""
    await store.audit(by, "read_measures", episode.patient_id, episode_id=episode.episode_id)
    found = [_series(instrument, points, policy) for instrument, points in series(episode, policy).items()]
    return EpisodeMeasures(episode_id=episode.episode_id, policy_version=policy.version, series=found)


def _series(instrument: str, points: Sequence[SeriesPoint], policy: MeasuresPolicy) -> MeasureSeries:
    """An instrument's scores with the policy's thresholds for it (a chart draws its band and cut-off by them)."""
    thresholds = policy.instruments.get(instrument)
    return MeasureSeries(instrument=instrument, points=[_point(point) for point in points],
                         reliable_change=thresholds.points if thresholds else None,
                         caseness=thresholds.caseness if thresholds else None)  # fmt: skip


def _point(point: SeriesPoint) -> MeasurePoint:
    return MeasurePoint(record_id=point.record_id, source=point.source, recorded_at=point.recorded_at,
                        **point.measured.model_dump())  # fmt: skip


Window = tuple[datetime | None, datetime | None]


async def outcomes_across(
    store: IntakeStore, policy: MeasuresPolicy, program: Program | None, window: Window, min_group: int
) -> OutcomesOut:
    """Outcomes per instrument across the episodes opened in ``window``: no ids, no person, small groups suppressed
    (so not an access to anyone's record)."""
    episodes = await store.opened(program, *window)
    found = [InstrumentOutcomeOut(**vars(outcome)) for outcome in outcomes(episodes, policy, min_group)]
    return OutcomesOut(program=program, opened_from=window[0], opened_to=window[1], min_group=min_group,
                       policy_version=policy.version, instruments=found)  # fmt: skip


async def assessment_history(store: IntakeStore, by: Principal, episode: Episode) -> AssessmentHistory:
    await store.audit(by, "read_assessments", episode.patient_id, episode_id=episode.episode_id)
    assessments = [shown(AssessmentOut, assessment) for assessment in episode.assessments]
    return AssessmentHistory(episode_id=episode.episode_id, assessments=assessments, trends=trends(assessments))


def trends(assessments: Sequence[AssessmentOut]) -> list[InstrumentTrend]:
    """Per instrument, its results from the first assessment to the latest, and which way they went."""
    points: dict[str, list[TrendPoint]] = {}
    for assessment in assessments:
        for result in assessment.instruments:
            points.setdefault(result.instrument, []).append(
                TrendPoint(
                    assessment_id=assessment.assessment_id,
                    assessed_at=assessment.assessed_at,
                    total=result.total,
                    band=result.band,
                )
            )
    return [
        InstrumentTrend(
            instrument=instrument,
            points=series,
            direction=None if series[0].total is None else trend([p.total for p in series if p.total is not None]),
        )
        for instrument, series in points.items()
    ]


async def recipients(
    store: IntakeStore, by: Principal, episode: Episode, scope: ConsentScope
) -> list[RecipientContact]:
    """The supports a consent in force allows to be told of ``scope``, without contact data."""
    current = consents_allowing(episode, scope, utc_now().date())
    if current:
        await store.audit(by, "read_recipients", episode.patient_id, episode_id=episode.episode_id)
    return [listed(consent) for consent in current]


async def audience(
    store: IntakeStore,
    by: Principal,
    episode: Episode,
    scopes: Sequence[ConsentScope],
    patient_channels: bool,
    patient_contact: bool = False,
) -> EpisodeAudience:
    """The episode's patient and, per scope asked, whom a consent allows to be told (and, if asked, the patient's
    channels, and their contact: an audited read, with the channels from the same read)."""
    question = AudienceIn(episode_id=episode.episode_id, scope=list(scopes), patient_channels=patient_channels,
                          patient_contact=patient_contact)  # fmt: skip
    [answer] = await _answers(store, by, [(question, episode)])
    return answer


async def audiences(store: IntakeStore, by: Principal, asked: Sequence[AudienceIn]) -> list[EpisodeAudience | None]:
    """``audience`` for each question, in order (None: no such episode): the episodes read at once, and the patients
    whose channels or contact are asked (their contact reads audited first, one by one)."""
    stored = await store.get_many([question.episode_id for question in asked])
    episodes = [stored[q.episode_id].episode if q.episode_id in stored else None for q in asked]
    known = [(question, episode) for question, episode in zip(asked, episodes, strict=True) if episode is not None]
    answers = iter(await _answers(store, by, known))
    return [next(answers) if episode is not None else None for episode in episodes]


async def _answers(
    store: IntakeStore, by: Principal, asked: Sequence[tuple[AudienceIn, Episode]]
) -> list[EpisodeAudience]:
    """The answers to questions about known episodes, their patients read at once (those whose contact is read
    audited first)."""
    contacts = [(episode.patient_id, episode.episode_id) for question, episode in asked if question.patient_contact]
    channels = [episode.patient_id for question, episode in asked if question.patient_channels]
    patients = await store.audience_reads(contacts, channels, by)
    found = await asyncio.gather(*(_recipients(store, by, episode, question.scope) for question, episode in asked))
    return [
        _asked_of(question, episode, recipients, patients.get(episode.patient_id))
        for (question, episode), recipients in zip(asked, found, strict=True)
    ]


def _asked_of(
    question: AudienceIn, episode: Episode, recipients: Recipients, patient: Document | None
) -> EpisodeAudience:
    """The answer to ``question`` from the patient's record as ``IntakeStore.audience_reads`` read it."""
    if not (question.patient_contact or question.patient_channels):
        return _audience(episode, recipients, None, None, None)
    record = patient or {}
    contact = {field: record.get(field) for field in CONTACT} if question.patient_contact and patient else None
    channels = channels_of(record) if question.patient_channels else None
    return _audience(episode, recipients, channels, contact, earlier_episodes(patient) if patient else None)


Recipients = dict[ConsentScope, list[RecipientContact]]


async def _recipients(
    store: IntakeStore, by: Principal, episode: Episode, scopes: Sequence[ConsentScope]
) -> Recipients:
    """Per scope, the supports a consent in force allows to be told (audited when it lists any)."""
    today = utc_now().date()
    found = {asked: [listed(consent) for consent in consents_allowing(episode, asked, today)] for asked in scopes}
    if any(found.values()):
        await store.audit(by, "read_recipients", episode.patient_id, episode_id=episode.episode_id)
    return found


def _audience(
    episode: Episode,
    recipients: Recipients,
    channels: list[Literal["email", "sms"]] | None,
    contact: Document | None,
    earlier: bool | None,
) -> EpisodeAudience:
    return EpisodeAudience(
        episode_id=episode.episode_id,
        patient_id=episode.patient_id,
        recipients=recipients,
        patient_channels=channels,
        patient_contact=ContactOut(**contact) if contact else None,
        earlier_episodes=earlier,
    )


async def consented_contact(
    store: IntakeStore, by: Principal, episode: Episode, consent_id: str
) -> RecipientContact | None:
    """The contact of a consent in force: the support's, or for the alumni group the graduate's own (None when the
    graduate's record is gone). Raises EpisodeError for a consent not found or no longer in force."""
    consent = consent_in_force(episode, consent_id, utc_now().date())
    if consent.recipient is None:  # the alumni group: the graduate is reached at their own contact points
        patient = await store.contact_for_episode(episode.episode_id, by)
        if patient is None:
            return None
        return listed(consent).model_copy(update={key: patient[key] for key in ("email", "phone", "timezone")})
    await store.audit(by, "read_recipient", episode.patient_id, episode_id=episode.episode_id)
    return listed(consent).model_copy(update={"email": consent.recipient.email, "phone": consent.recipient.phone})


def listed(consent: Consent) -> RecipientContact:
    """A consented recipient without contact data (listing them is not reading their contact)."""
    return RecipientContact(
        consent_id=consent.consent_id, recipient_kind=consent.recipient_kind, email=None, phone=None
    )


def assessment_preview(episode: Episode, request: AssessmentRequest, policy: PlacementPolicy) -> AssessmentPreview:
    """What recording ``request`` on the episode would give now (``appraise``: the very rules recording applies):
    stores nothing, raises nothing. A closed episode takes no assessment: refused as recording it would be."""
    decide_on.refuse_if_closed(episode)
    appraisal = decide_on.appraise(episode, request, policy)
    recommendation, concern = appraisal.recommendation, appraisal.concern
    return AssessmentPreview(
        episode_id=episode.episode_id,
        kind=appraisal.kind,
        dimensions=request.dimensions,
        instruments=request.results,
        recommended_level=recommendation.level,
        refer_out=recommendation.refer_out,
        rationale=recommendation.rationale,
        policy_version=recommendation.policy_version,
        safety_alert=SafetyConcernOut(level=concern.level, reasons=concern.reasons) if concern else None,
    )
