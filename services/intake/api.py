"""Intake's HTTP API: patients, episodes, assessments, and the contact lookup for notifications."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from services.common.auth import Principal, require_roles
from services.common.utc import utc_now
from stepwise_contract import AssessmentCompleted, CareLevel, DimensionRatings, InstrumentResult, Reason, new_event

from .domain.instruments import score_all
from .domain.placement import recommend_level
from .settings import SOURCE
from .store import IntakeStore

router = APIRouter(prefix="/v1", tags=["intake"])

Staff = Annotated[Principal, Depends(require_roles("intake_staff", "clinician"))]
NotificationsService = Annotated[Principal, Depends(require_roles("notifications"))]


def get_store(request: Request) -> IntakeStore:
    return request.app.state.store  # type: ignore[no-any-return]


Store = Annotated[IntakeStore, Depends(get_store)]


class PatientIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Alex Example",
                    "date_of_birth": "1990-04-01",
                    "email": "alex@example.org",
                    "phone": "+15550100",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    email: EmailStr
    phone: str = Field(pattern=r"^\+?[0-9][0-9 ().-]{5,19}$", description="E.164 preferred, e.g. +15550100")

    @field_validator("date_of_birth")
    @classmethod
    def _in_the_past(cls, value: date) -> date:
        if value >= utc_now().date():
            raise ValueError("must be in the past")
        return value


class PatientCreated(BaseModel):
    patient_id: str


class EpisodeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"program": "adult"}]})

    program: Literal["adult", "adolescent"]


class EpisodeCreated(BaseModel):
    episode_id: str


class DimensionsIn(DimensionRatings):
    model_config = ConfigDict(extra="forbid")


PHQ9Item = Annotated[int, Field(ge=0, le=3)]


class InstrumentsIn(BaseModel):
    """Item answers by instrument; an unknown instrument is rejected."""

    model_config = ConfigDict(extra="forbid")

    phq9: list[PHQ9Item] | None = Field(default=None, min_length=9, max_length=9, description="PHQ-9: 9 items, 0–3")
    gad7: list[PHQ9Item] | None = Field(default=None, min_length=7, max_length=7, description="GAD-7: 7 items, 0–3")

    def answered(self) -> dict[str, list[int]]:
        return {name: items for name, items in self.model_dump().items() if items is not None}


class AssessmentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "dimensions": {
                        "withdrawal": 1,
                        "biomedical": 0,
                        "emotional": 2,
                        "readiness": 2,
                        "relapse": 2,
                        "environment": 1,
                    },
                    "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0]},
                }
            ]
        },
    )

    dimensions: DimensionsIn
    instruments: InstrumentsIn = Field(default_factory=InstrumentsIn)


class AssessmentOut(BaseModel):
    assessment_id: str
    episode_id: str
    kind: Literal["intake", "reassessment"]
    assessed_at: datetime
    dimensions: DimensionRatings
    instruments: list[InstrumentResult]
    recommended_level: CareLevel
    rationale: list[Reason]
    policy_version: str


class ContactOut(BaseModel):
    email: str | None
    phone: str | None


@router.post("/patients", status_code=status.HTTP_201_CREATED, summary="Register a patient (PII stays in intake)")
async def register_patient(body: PatientIn, store: Store, by: Staff) -> PatientCreated:
    patient_id = str(uuid.uuid4())
    await store.add_patient({"_id": patient_id, **body.model_dump(mode="json"), "registered_at": utc_now()}, by)
    return PatientCreated(patient_id=patient_id)


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
        }
    )
    return EpisodeCreated(episode_id=episode_id)


@router.post(
    "/episodes/{episode_id}/assessments",
    status_code=status.HTTP_201_CREATED,
    summary="Record an assessment: scores, recommended level of care and its rationale",
)
async def record_assessment(episode_id: str, body: AssessmentIn, store: Store, _: Staff) -> AssessmentOut:
    for _attempt in range(5):
        episode = await store.episode(episode_id)
        if episode is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
        if episode["status"] != "open":
            raise HTTPException(status.HTTP_409_CONFLICT, f"episode is {episode['status']}")
        assessment = _assess(episode, body)
        event = new_event(AssessmentCompleted(**assessment.model_dump(), program=episode["program"]), source=SOURCE)
        if await store.add_assessment(episode, assessment.model_dump(mode="python"), event):
            return assessment
    raise HTTPException(status.HTTP_409_CONFLICT, "episode changed concurrently; retry")


def _assess(episode: dict[str, object], body: AssessmentIn) -> AssessmentOut:
    recommendation = recommend_level(body.dimensions)
    return AssessmentOut(
        assessment_id=str(uuid.uuid4()),
        episode_id=str(episode["_id"]),
        kind="reassessment" if episode.get("assessments") else "intake",
        assessed_at=utc_now(),
        dimensions=DimensionRatings(**body.dimensions.model_dump()),
        instruments=score_all(body.instruments.answered()),
        recommended_level=recommendation.level,
        rationale=recommendation.rationale,
        policy_version=recommendation.policy_version,
    )


@router.get(
    "/episodes/{episode_id}/contact",
    summary="Contact points of an episode's patient, for the notifications service only (audited)",
)
async def episode_contact(episode_id: str, store: Store, by: NotificationsService) -> ContactOut:
    contact = await store.contact_for_episode(episode_id, by)
    if contact is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "episode not found")
    return ContactOut(**contact)
