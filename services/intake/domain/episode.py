"""Decisions on an episode (pure: no I/O). Each takes the episode and the moment, and returns the changed
episode, the events the change publishes, and what the caller is told."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal, TypeVar

from services.common.ids import derived_id
from stepwise_contract import (
    AssessmentCompleted,
    ConsentChanged,
    ConsentRecipientKind,
    ConsentScope,
    DimensionRatings,
    DrugScreenRecorded,
    EventData,
    InstrumentResult,
    MeasureRecorded,
    PlacementDecision,
    Program,
    SafetyAlertRaised,
    ScreenResult,
    Track,
)

from .measures import MeasuresPolicy, measure_all
from .model import (
    MOST_ASSESSMENTS,
    MOST_CONSENTS,
    MOST_DRUG_SCREENS,
    MOST_MEASURES,
    Assessment,
    Consent,
    Episode,
    EpisodeEnd,
    EpisodeError,
    MeasureChannel,
    Recipient,
    RecordedAssessment,
    RecordedDrugScreen,
    RecordedMeasure,
    SafetyAlert,
)
from .placement import PlacementPolicy, Recommendation, recommend_level
from .reassessment import compare
from .safety import SafetyConcern, safety_concern

T = TypeVar("T")
Decision = tuple[Episode, list[EventData], T]


EPISODE_RECORDS = uuid.UUID("07eea4aa-9e4c-4de2-8b4d-00791ec9982d")
"""The namespace of ids intake derives where the request fixed none (an Idempotency-Key fixes them in the API)."""


def _id_of(*identifying: object) -> str:
    """The id of what ``identifying`` names, e.g. (episode id, "consent", 2): the episode's third consent."""
    return derived_id(EPISODE_RECORDS, *identifying)


def open_episode(
    patient_id: str, program: Program, now: datetime, episode_id: str | None = None, track: Track | None = None
) -> Episode:
    episode_id = episode_id or _id_of(patient_id, "episode", now)
    return Episode(episode_id=episode_id, patient_id=patient_id, program=program, track=track,
                   status="open", opened_at=now)  # fmt: skip


def refuse_if_closed(episode: Episode) -> None:
    """A closed episode takes no new assessment, drug screen or consent (409, saying when and how it ended);
    it can still be read, and its consents revoked."""
    if episode.status == "open":
        return
    why = ""
    if episode.ended and episode.closed_at:
        why = f" ({episode.ended} on {episode.closed_at.date().isoformat()}): record it in a new episode"
    raise EpisodeError("episode_not_open", f"episode is {episode.status}{why}")


def close(episode: Episode, ended: EpisodeEnd, at: datetime) -> Decision[Episode]:
    """care_plan graduated or discharged the episode: it is closed (closing it again changes nothing)."""
    if episode.status == "closed":
        return episode, [], episode
    closed = episode.model_copy(update={"status": "closed", "closed_at": at, "ended": ended})
    return closed, [], closed


def _room_for(kept: Sequence[object], most: int, what: str) -> None:
    if len(kept) >= most:
        raise EpisodeError("episode_full", f"the episode holds {most} {what}, the most one episode keeps: "
                                           "record it in a new episode")  # fmt: skip


@dataclass(frozen=True)
class AssessmentRequest:
    """An assessment as staff gave it, scored: ratings, instrument results, and a clinician's chosen level."""

    dimensions: DimensionRatings
    results: list[InstrumentResult]
    placement: PlacementDecision | None = None
    placement_note: str | None = None
    recorded_by: str | None = None
    assessment_id: str | None = None
    """Fixed by the request's Idempotency-Key: a retried request finds the assessment the first one recorded."""


@dataclass(frozen=True)
class Appraisal:
    """What an assessment gives the episode, recorded or not: its kind, the recommended level (with its rationale
    and policy version) and the safety concern an answer raises."""

    kind: Literal["intake", "reassessment"]
    recommendation: Recommendation
    concern: SafetyConcern | None


def appraise(episode: Episode, request: AssessmentRequest, policy: PlacementPolicy) -> Appraisal:
    """The assessment's recommendation and safety concern for this episode: what recording it gives (``assess``)
    and what a preview shows before it is recorded."""
    return Appraisal(
        kind="reassessment" if episode.assessments else "intake",
        recommendation=recommend_level(request.dimensions, request.results, episode.program, policy),
        concern=safety_concern(request.results),
    )


def assess(
    episode: Episode, request: AssessmentRequest, policy: PlacementPolicy, now: datetime, measures: MeasuresPolicy
) -> Decision[Assessment]:
    """Recommend a level, compare with the previous assessment, raise a safety alert where an answer calls
    for one; publishes the assessment's events (``assessment_events``) and its instruments against the episode's
    baseline (``iop.measure.recorded``, source ``assessment``). Recorded already (a retry): itself."""
    recorded = next((a for a in episode.assessments if a.assessment_id == request.assessment_id), None)
    if recorded is not None:
        return episode, [], recorded
    _room_for(episode.assessments, MOST_ASSESSMENTS, "assessments")
    appraisal = appraise(episode, request, policy)
    recommendation = appraisal.recommendation
    if request.placement and request.placement.chosen_level == recommendation.level:
        field = ("body", "placement", "chosen_level")
        raise EpisodeError("placement_is_recommendation", "equals the recommended level; leave placement out", field)
    previous = episode.latest_assessment
    assessment_id = request.assessment_id or _id_of(episode.episode_id, "assessment", len(episode.assessments))
    assessment = RecordedAssessment(
        assessment_id=assessment_id,
        episode_id=episode.episode_id,
        kind=appraisal.kind,
        assessed_at=now,
        dimensions=request.dimensions,
        instruments=request.results,
        recommended_level=recommendation.level,
        refer_out=recommendation.refer_out,
        rationale=recommendation.rationale,
        policy_version=recommendation.policy_version,
        placement=request.placement,
        previous_assessment_id=previous.assessment_id if previous else None,
        changes=compare(previous.instruments if previous else [], request.results, measures),
        safety_alert=_safety_alert(assessment_id, appraisal.concern),
        recorded_by=request.recorded_by,
        placement_note=request.placement_note,
    )
    changed = episode.model_copy(update={"assessments": [*episode.assessments, assessment]})
    measured = measure_all(request.results, episode.score_history(), measures)
    scored = [MeasureRecorded(episode_id=episode.episode_id, measure_id=assessment_id, source="assessment",
                              recorded_at=now, instruments=measured)] if measured else []  # fmt: skip
    return changed, [*assessment_events(assessment, episode.program, episode.track), *scored], assessment


def _safety_alert(assessment_id: str, concern: SafetyConcern | None) -> SafetyAlert | None:
    """The alert an answer's concern calls for, if one does, named after its assessment (or measure)."""
    if concern is None:
        return None
    return SafetyAlert(alert_id=_id_of(assessment_id, "safety_alert"), level=concern.level, reasons=concern.reasons)


@dataclass(frozen=True)
class MeasureRequest:
    """Instruments scored between assessments, as staff, a system or the patient (a questionnaire link) gave them."""

    results: list[InstrumentResult]
    measure_id: str
    recorded_by: str | None = None
    channel: MeasureChannel = "api"


def record_measure(
    episode: Episode, request: MeasureRequest, policy: MeasuresPolicy, now: datetime
) -> Decision[RecordedMeasure]:
    """Score a measure against the episode's baseline and previous scores; a safety answer raises the alert as an
    assessment's does (``iop.safety.alert_raised`` first), then ``iop.measure.recorded``. Also on a closed episode
    (alumni follow-up). Recorded already (a retry): itself."""
    recorded = next((m for m in episode.measures if m.measure_id == request.measure_id), None)
    if recorded is not None:
        return episode, [], recorded
    _room_for(episode.measures, MOST_MEASURES, "measures")
    measure = RecordedMeasure(
        measure_id=request.measure_id,
        episode_id=episode.episode_id,
        recorded_at=now,
        instruments=request.results,
        changes=measure_all(request.results, episode.score_history(), policy),
        policy_version=policy.version,
        safety_alert=_safety_alert(request.measure_id, safety_concern(request.results)),
        recorded_by=request.recorded_by,
        channel=request.channel,
    )
    changed = episode.model_copy(update={"measures": [*episode.measures, measure]})
    return changed, measure_events(measure), measure


def measure_events(measure: RecordedMeasure) -> list[EventData]:
    """``iop.safety.alert_raised`` first when the measure raised one (its ``assessment_id`` is the measure's id),
    then ``iop.measure.recorded`` when an instrument has a total."""
    events: list[EventData] = []
    alert = measure.safety_alert
    if alert is not None:
        events.append(SafetyAlertRaised(episode_id=measure.episode_id, assessment_id=measure.measure_id,
                                        raised_at=measure.recorded_at, **alert.model_dump()))  # fmt: skip
    if measure.changes:
        events.append(MeasureRecorded(episode_id=measure.episode_id, measure_id=measure.measure_id, source="measure",
                                      recorded_at=measure.recorded_at, instruments=measure.changes))  # fmt: skip
    return events


def assessment_events(assessment: Assessment, program: Program, track: Track | None = None) -> list[EventData]:
    """``iop.assessment.completed`` (with the episode's program and track), preceded by ``iop.safety.alert_raised``
    when the assessment raised one: the alert goes first (and on its own topic), so a consumer can act on it
    before anything else."""
    completed = AssessmentCompleted(
        program=program, track=track, **assessment.model_dump(include=set(AssessmentCompleted.model_fields))
    )
    alert = assessment.safety_alert
    if alert is None:
        return [completed]
    raised = SafetyAlertRaised(episode_id=assessment.episode_id, assessment_id=assessment.assessment_id,
                               raised_at=assessment.assessed_at, **alert.model_dump())  # fmt: skip
    return [raised, completed]


def record_drug_screen(
    episode: Episode,
    collected_at: datetime,
    results: Sequence[ScreenResult],
    recorded_by: str,
    now: datetime,
    screen_id: str | None = None,
) -> Decision[RecordedDrugScreen]:
    recorded = next((s for s in episode.drug_screens if s.screen_id == screen_id), None)
    if recorded is not None:  # the same request retried
        return episode, [], recorded
    _room_for(episode.drug_screens, MOST_DRUG_SCREENS, "drug screens")
    screen = RecordedDrugScreen(
        screen_id=screen_id or _id_of(episode.episode_id, "drug_screen", len(episode.drug_screens)),
        episode_id=episode.episode_id,
        collected_at=collected_at,
        recorded_at=now,
        results=list(results),
        unexpected_positive=any(result.result == "positive" and not result.expected for result in results),
        recorded_by=recorded_by,
    )
    event = DrugScreenRecorded(**screen.model_dump(include=set(DrugScreenRecorded.model_fields)))
    return episode.model_copy(update={"drug_screens": [*episode.drug_screens, screen]}), [event], screen


@dataclass(frozen=True)
class ConsentTerms:
    """What a patient consents to: whom the clinic may tell (a support, or the alumni group), what, until when."""

    recipient_kind: ConsentRecipientKind
    recipient: Recipient | None
    scopes: list[ConsentScope]
    expires_on: date | None = None


def grant_consent(
    episode: Episode, terms: ConsentTerms, now: datetime, consent_id: str | None = None, by: str | None = None
) -> Decision[Consent]:
    granted = episode.consent(consent_id) if consent_id else None
    if granted is not None:  # the same request retried
        return episode, [], granted
    _room_for(episode.consents, MOST_CONSENTS, "consents")
    consent = Consent(
        consent_id=consent_id or _id_of(episode.episode_id, "consent", len(episode.consents)),
        episode_id=episode.episode_id,
        recipient_kind=terms.recipient_kind,
        recipient=terms.recipient,
        scopes=terms.scopes,
        expires_on=terms.expires_on,
        status="granted",
        granted_at=now,
        granted_by=by,
    )
    changed = episode.model_copy(update={"consents": [*episode.consents, consent]})
    return changed, [consent_changed(consent, now)], consent


def revoke_consent(episode: Episode, consent_id: str, now: datetime, by: str | None = None) -> Decision[Consent]:
    """Revoke a consent; revoking it again changes nothing."""
    target = _known_consent(episode, consent_id)
    if target.status == "revoked":
        return episode, [], target
    revoked = target.model_copy(update={"status": "revoked", "revoked_at": now, "revoked_by": by})
    consents = [revoked if consent is target else consent for consent in episode.consents]
    return episode.model_copy(update={"consents": consents}), [consent_changed(revoked, now)], revoked


def consent_changed(consent: Consent, at: datetime) -> ConsentChanged:
    return ConsentChanged(episode_id=consent.episode_id, consent_id=consent.consent_id,
                          recipient_kind=consent.recipient_kind, status=consent.status, changed_at=at)  # fmt: skip


def consents_allowing(episode: Episode, scope: ConsentScope, today: date) -> list[Consent]:
    """Consents in force today that allow ``scope`` and name someone to tell."""
    return [c for c in episode.consents if c.in_force(today) and scope in c.scopes and c.names_someone]


def consent_in_force(episode: Episode, consent_id: str, today: date) -> Consent:
    """The consent, if it still allows telling its recipient anything; raises EpisodeError otherwise."""
    consent = _known_consent(episode, consent_id)
    if not consent.in_force(today) or not consent.names_someone:
        raise EpisodeError("consent_not_in_force", "the consent is no longer in force")
    return consent


def _known_consent(episode: Episode, consent_id: str) -> Consent:
    consent = episode.consent(consent_id)
    if consent is None:
        raise EpisodeError("unknown_consent", "consent not found")
    return consent
