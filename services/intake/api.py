"""Intake's HTTP API: patients, episodes, assessments, drug screens, consents, contact lookup, audit."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError

from services.common.auth import Principal, require_roles
from services.common.mongo import Document
from services.common.outbox import retry_on_conflict
from services.common.utc import utc_now
from stepwise_contract import (
    AssessmentCompleted,
    CloudEvent,
    ConsentChanged,
    DimensionRatings,
    DrugScreenRecorded,
    InstrumentResult,
    PlacementDecision,
    SafetyAlertRaised,
    new_event,
)

from .domain.placement import PlacementPolicy, recommend_level
from .domain.reassessment import compare, trend
from .domain.safety import safety_concern
from .schemas import (
    AssessmentHistory,
    AssessmentIn,
    AssessmentOut,
    AuditEntry,
    ConsentIn,
    ConsentOut,
    ConsentScope,
    ContactOut,
    DrugScreenIn,
    DrugScreenOut,
    EpisodeCreated,
    EpisodeIn,
    EpisodePatient,
    InstrumentTrend,
    PatientCreated,
    PatientIn,
    PatientOut,
    PatientUpdate,
    RecipientContact,
    SafetyAlertOut,
    TrendPoint,
)
from .settings import SOURCE
from .store import IntakeStore

router = APIRouter(prefix="/v1", tags=["intake"])

Staff = Annotated[Principal, Depends(require_roles("intake_staff", "clinician"))]
Clinical = Annotated[Principal, Depends(require_roles("intake_staff", "clinician", "integration"))]
NotificationsService = Annotated[Principal, Depends(require_roles("notifications"))]
Admin = Annotated[Principal, Depends(require_roles("admin"))]

EpisodeChange = tuple[Document, list[CloudEvent[Any]], Any]
"""What a decision on an episode produces: field changes, events to publish, the response."""


def get_store(request: Request) -> IntakeStore:
    return request.app.state.store  # type: ignore[no-any-return]


def get_policy(request: Request) -> PlacementPolicy:
    return request.app.state.placement_policy  # type: ignore[no-any-return]


Store = Annotated[IntakeStore, Depends(get_store)]
Policy = Annotated[PlacementPolicy, Depends(get_policy)]


async def change_open_episode(store: IntakeStore, episode_id: str, decide: Callable[[Document], EpisodeChange]) -> Any:
    """Load the episode, decide on it, and write the decision with its events atomically (retrying races)."""

    async def attempt() -> Any:
        episode = await store.episode(episode_id)
        if episode is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
        if episode["status"] != "open":
            raise HTTPException(status.HTTP_409_CONFLICT, f"episode is {episode['status']}")
        changes, events, response = decide(episode)
        return response if await store.change_episode(episode, changes, events) else None

    return await retry_on_conflict(attempt)


# Patients


@router.post("/patients", status_code=status.HTTP_201_CREATED, summary="Register a patient (PII stays in intake)")
async def register_patient(body: PatientIn, store: Store, by: Staff) -> PatientCreated:
    patient_id = str(uuid.uuid4())
    await store.add_patient({"_id": patient_id, **body.model_dump(mode="json"), "registered_at": utc_now()}, by)
    return PatientCreated(patient_id=patient_id)


@router.get("/patients/{patient_id}", summary="A patient's record (audited)")
async def read_patient(patient_id: str, store: Store, by: Staff) -> PatientOut:
    patient = await store.read_patient(patient_id, by)
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "patient not found")
    return PatientOut(patient_id=patient.pop("_id"), **patient)


@router.patch("/patients/{patient_id}", summary="Change a patient's name or contact data (audited)")
async def update_patient(patient_id: str, body: PatientUpdate, store: Store, by: Staff) -> PatientOut:
    changes = body.model_dump(mode="json", exclude_unset=True)
    patient = await store.update_patient(patient_id, changes, by)
    if patient is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "patient not found")
    return PatientOut(patient_id=patient.pop("_id"), **patient)


@router.post("/patients/{patient_id}/episodes", status_code=status.HTTP_201_CREATED, summary="Open a treatment episode")
async def open_episode(patient_id: str, body: EpisodeIn, store: Store, _: Staff) -> EpisodeCreated:
    if not await store.patient_exists(patient_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "patient not found")
    episode_id = str(uuid.uuid4())
    await store.open_episode(
        {
            "_id": episode_id,
            "patient_id": patient_id,
            "program": body.program,
            "status": "open",
            "opened_at": utc_now(),
            "assessments": [],
            "drug_screens": [],
            "consents": [],
        }
    )
    return EpisodeCreated(episode_id=episode_id)


# Assessments


@router.post(
    "/episodes/{episode_id}/assessments",
    status_code=status.HTTP_201_CREATED,
    summary="Record an assessment or reassessment: scores, recommended level, rationale, safety alert",
    description=(
        "Scores the instruments from their item answers, recommends a level of care under the placement "
        "policy, and publishes `iop.assessment.completed` (with changes since the previous assessment) and, "
        "when an answer calls for it, `iop.safety.alert_raised` first. A clinician may record a chosen level "
        "that differs from the recommendation (`placement`, clinician role only)."
    ),
)
async def record_assessment(
    episode_id: str, body: AssessmentIn, store: Store, policy: Policy, by: Staff
) -> AssessmentOut:
    if body.placement and by.role != "clinician":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only a clinician may choose a level (placement)")
    results = body.instruments.score()
    dimensions = DimensionRatings(**body.dimensions.model_dump())

    def decide(episode: Document) -> EpisodeChange:
        recommendation = recommend_level(dimensions, results, episode["program"], policy)
        if body.placement and body.placement.chosen_level == recommendation.level:
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "placement", "chosen_level"),
                        "msg": "equals the recommended level; leave placement out",
                        "type": "value_error",
                    }
                ]
            )
        previous = episode["assessments"][-1] if episode["assessments"] else None
        previous_results = [InstrumentResult(**r) for r in previous["instruments"]] if previous else []
        now = utc_now()
        assessment = AssessmentOut(
            assessment_id=str(uuid.uuid4()),
            episode_id=episode_id,
            kind="reassessment" if previous else "intake",
            assessed_at=now,
            dimensions=dimensions,
            instruments=results,
            recommended_level=recommendation.level,
            refer_out=recommendation.refer_out,
            rationale=recommendation.rationale,
            policy_version=recommendation.policy_version,
            placement=PlacementDecision(**body.placement.model_dump(exclude={"note"})) if body.placement else None,
            previous_assessment_id=previous["assessment_id"] if previous else None,
            changes=compare(previous_results, results),
        )
        events: list[CloudEvent[Any]] = []
        concern = safety_concern(results)
        if concern:
            alert = SafetyAlertOut(alert_id=str(uuid.uuid4()), level=concern.level, reasons=concern.reasons)
            assessment.safety_alert = alert
            alert_data = SafetyAlertRaised(episode_id=episode_id, assessment_id=assessment.assessment_id,
                                           raised_at=now, **alert.model_dump())  # fmt: skip
            events.append(new_event(alert_data, source=SOURCE))  # first, so a consumer can act on it first
        completed = AssessmentCompleted(
            program=episode["program"], **assessment.model_dump(exclude={"refer_out", "safety_alert"})
        )
        events.append(new_event(completed, source=SOURCE))
        stored = assessment.model_dump(mode="python") | {
            "recorded_by": by.token_id,
            "placement_note": body.placement.note if body.placement else None,
        }
        return {"assessments": [*episode["assessments"], stored]}, events, assessment

    return await change_open_episode(store, episode_id, decide)  # type: ignore[no-any-return]


@router.get("/episodes/{episode_id}/assessments", summary="The episode's assessments with scores and trends")
async def assessment_history(episode_id: str, store: Store, _: Clinical) -> AssessmentHistory:
    episode = await store.episode(episode_id)
    if episode is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    assessments = [AssessmentOut.model_validate(stored) for stored in episode["assessments"]]
    return AssessmentHistory(episode_id=episode_id, assessments=assessments, trends=_trends(assessments))


def _trends(assessments: list[AssessmentOut]) -> list[InstrumentTrend]:
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


# Drug screens


@router.post(
    "/episodes/{episode_id}/drug-screens",
    status_code=status.HTTP_201_CREATED,
    summary="Record a drug screen; publishes iop.drug_screen.recorded",
)
async def record_drug_screen(episode_id: str, body: DrugScreenIn, store: Store, by: Clinical) -> DrugScreenOut:
    def decide(episode: Document) -> EpisodeChange:
        screen = DrugScreenOut(
            screen_id=str(uuid.uuid4()),
            episode_id=episode_id,
            collected_at=body.collected_at,
            recorded_at=utc_now(),
            results=body.results,
            unexpected_positive=any(r.result == "positive" and not r.expected for r in body.results),
        )
        event = new_event(DrugScreenRecorded(**screen.model_dump()), source=SOURCE)
        stored = screen.model_dump(mode="python") | {"recorded_by": by.token_id}
        return {"drug_screens": [*episode["drug_screens"], stored]}, [event], screen

    return await change_open_episode(store, episode_id, decide)  # type: ignore[no-any-return]


# Consents (42 CFR Part 2): who may be told what, per recipient, revocable


@router.post(
    "/episodes/{episode_id}/consents",
    status_code=status.HTTP_201_CREATED,
    summary="Record a patient's consent to tell a recipient about the episode; publishes iop.consent.changed",
)
async def grant_consent(episode_id: str, body: ConsentIn, store: Store, by: Staff) -> ConsentOut:
    def decide(episode: Document) -> EpisodeChange:
        consent = ConsentOut(
            consent_id=str(uuid.uuid4()),
            episode_id=episode_id,
            status="granted",
            granted_at=utc_now(),
            **body.model_dump(),
        )
        event = _consent_event(consent, consent.granted_at)
        return {"consents": [*episode["consents"], consent.model_dump(mode="python")]}, [event], consent

    await _audit_episode(store, by, "grant_consent", episode_id)
    return await change_open_episode(store, episode_id, decide)  # type: ignore[no-any-return]


@router.post(
    "/episodes/{episode_id}/consents/{consent_id}/revoke",
    summary="Revoke a consent; pending messages to that recipient stop",
)
async def revoke_consent(episode_id: str, consent_id: str, store: Store, by: Staff) -> ConsentOut:
    def decide(episode: Document) -> EpisodeChange:
        consents = [ConsentOut.model_validate(c) for c in episode["consents"]]
        target = next((c for c in consents if c.consent_id == consent_id), None)
        if target is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "consent not found")
        if target.status == "revoked":
            return {}, [], target  # revoking twice changes nothing
        target.status, target.revoked_at = "revoked", utc_now()
        event = _consent_event(target, target.revoked_at)
        return {"consents": [c.model_dump(mode="python") for c in consents]}, [event], target

    await _audit_episode(store, by, "revoke_consent", episode_id)
    return await change_open_episode(store, episode_id, decide)  # type: ignore[no-any-return]


@router.get("/episodes/{episode_id}/consents", summary="The episode's consents and their recipients (audited)")
async def list_consents(episode_id: str, store: Store, by: Staff) -> list[ConsentOut]:
    episode = await store.episode(episode_id)
    if episode is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    await store.audit(by, "read_consents", episode["patient_id"], episode_id=episode_id)
    return [ConsentOut.model_validate(consent) for consent in episode["consents"]]


def _consent_event(consent: ConsentOut, at: datetime) -> CloudEvent[ConsentChanged]:
    data = ConsentChanged(
        episode_id=consent.episode_id,
        consent_id=consent.consent_id,
        recipient_kind=consent.recipient_kind,
        status=consent.status,
        changed_at=at,
    )
    return new_event(data, source=SOURCE)


async def _audit_episode(store: IntakeStore, by: Principal, action: str, episode_id: str) -> None:
    episode = await store.episode(episode_id)
    if episode is not None:
        await store.audit(by, action, episode["patient_id"], episode_id=episode_id)


# For the notifications service, and for admins


@router.get(
    "/episodes/{episode_id}/contact",
    summary="Contact points of an episode's patient, for the notifications service only (audited)",
)
async def episode_contact(episode_id: str, store: Store, by: NotificationsService) -> ContactOut:
    contact = await store.contact_for_episode(episode_id, by)
    if contact is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    return ContactOut(**contact)


@router.get(
    "/episodes/{episode_id}/recipients",
    summary="Supports who may be told about ``scope`` under a current consent (notifications only, audited)",
)
async def consented_recipients(
    episode_id: str, scope: ConsentScope, store: Store, by: NotificationsService
) -> list[RecipientContact]:
    episode = await store.episode(episode_id)
    if episode is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    today = utc_now().date()
    current = [
        consent
        for consent in (ConsentOut.model_validate(c) for c in episode["consents"])
        if _in_force(consent, today) and scope in consent.scopes and _names_someone(consent)
    ]
    if current:
        await store.audit(by, "read_recipients", episode["patient_id"], episode_id=episode_id)
    return [_listed(consent) for consent in current]


@router.get(
    "/episodes/{episode_id}/consents/{consent_id}/contact",
    summary="A support's contact if the consent is still in force (notifications only, audited); 410 otherwise",
)
async def consented_contact(
    episode_id: str, consent_id: str, store: Store, by: NotificationsService
) -> RecipientContact:
    episode = await store.episode(episode_id)
    consent = next(
        (ConsentOut.model_validate(c) for c in (episode or {}).get("consents", []) if c["consent_id"] == consent_id),
        None,
    )
    if episode is None or consent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "consent not found")
    if not _in_force(consent, utc_now().date()) or not _names_someone(consent):
        raise HTTPException(status.HTTP_410_GONE, "the consent is no longer in force")
    if consent.recipient is None:  # the alumni group: the graduate is reached at their own contact points
        patient = await store.contact_for_episode(episode_id, by)
        if patient is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "consent not found")
        return _listed(consent).model_copy(update={key: patient[key] for key in ("email", "phone", "timezone")})
    await store.audit(by, "read_recipient", episode["patient_id"], episode_id=episode_id)
    return _listed(consent).model_copy(update={"email": consent.recipient.email, "phone": consent.recipient.phone})


@router.get(
    "/episodes/{episode_id}/patient",
    summary="The pseudonymous id of an episode's patient, to link episodes (notifications only; no PII)",
)
async def episode_patient(episode_id: str, store: Store, _: NotificationsService) -> EpisodePatient:
    episode = await store.episode(episode_id)
    if episode is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    return EpisodePatient(episode_id=episode_id, patient_id=episode["patient_id"])


def _in_force(consent: ConsentOut, today: date) -> bool:
    return consent.status == "granted" and (consent.expires_on is None or consent.expires_on >= today)


def _names_someone(consent: ConsentOut) -> bool:
    """A support named in the consent, or the alumni group (whose messages go to the graduate)."""
    return consent.recipient is not None or consent.recipient_kind == "alumni_group"


def _listed(consent: ConsentOut) -> RecipientContact:
    """A consented recipient without contact data (listing them is not reading their contact)."""
    return RecipientContact(
        consent_id=consent.consent_id, recipient_kind=consent.recipient_kind, email=None, phone=None
    )


@router.get("/audit", summary="Who read or changed which patient's PII, and when (admin only)")
async def audit_log(
    store: Store,
    _: Admin,
    patient_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntry]:
    entries = await store.audit_entries(patient_id=patient_id, action=action, since=since, until=until, limit=limit)
    return [AuditEntry.model_validate(entry) for entry in entries]
