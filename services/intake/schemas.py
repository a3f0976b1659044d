"""Request and response bodies of intake's HTTP API (with the examples the OpenAPI document shows)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, EmailStr, Field, field_validator, model_validator

from services.common.utc import UtcDatetime, utc_now
from stepwise_contract import (
    CareLevel,
    DimensionRatings,
    InstrumentChange,
    InstrumentResult,
    OverrideReason,
    PlacementDecision,
    Reason,
    ScreenResult,
)

from .domain.instruments import InstrumentAnswers

Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 ().-]{5,19}$", description="E.164 preferred, e.g. +15550100")]
Program = Literal["adult", "adolescent"]
RecipientKind = Literal["family", "designated_support", "alumni_group"]
ConsentScope = Literal["appointments", "attendance", "level_of_care", "general_progress", "alumni_program"]


def _examples(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class EmergencyContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    phone: Phone
    relationship: str = Field(min_length=1, max_length=100, examples=["sister"])


class PatientIn(BaseModel):
    model_config = _examples(
        {
            "name": "Alex Example",
            "date_of_birth": "1990-04-01",
            "email": "alex@example.org",
            "phone": "+15550100",
            "emergency_contact": {"name": "Sam Example", "phone": "+15550101", "relationship": "sister"},
        }
    )

    name: str = Field(min_length=1, max_length=200)
    date_of_birth: date
    email: EmailStr
    phone: Phone
    emergency_contact: EmergencyContact | None = None

    @field_validator("date_of_birth")
    @classmethod
    def _in_the_past(cls, value: date) -> date:
        if value >= utc_now().date():
            raise ValueError("must be in the past")
        return value


class PatientUpdate(BaseModel):
    """Fields to change; those left out stay as they are."""

    model_config = _examples({"phone": "+15550199"})

    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: Phone | None = None
    emergency_contact: EmergencyContact | None = None

    @model_validator(mode="after")
    def _something(self) -> PatientUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class PatientOut(BaseModel):
    patient_id: str
    name: str
    date_of_birth: date
    email: str
    phone: str
    emergency_contact: EmergencyContact | None = None
    registered_at: UtcDatetime


class PatientCreated(BaseModel):
    patient_id: str


class EpisodeIn(BaseModel):
    model_config = _examples({"program": "adult"})

    program: Program


class EpisodeCreated(BaseModel):
    episode_id: str


class DimensionsIn(DimensionRatings):
    model_config = ConfigDict(extra="forbid")


class PlacementIn(BaseModel):
    """A clinician's chosen level where it differs from the recommendation (clinician role only)."""

    model_config = ConfigDict(extra="forbid")

    chosen_level: CareLevel
    reason_code: OverrideReason
    note: str | None = Field(default=None, max_length=2000, description="Stays in intake; never in an event.")


class AssessmentIn(BaseModel):
    model_config = _examples(
        {
            "dimensions": {
                "withdrawal": 1,
                "biomedical": 0,
                "emotional": 2,
                "readiness": 2,
                "relapse": 2,
                "environment": 1,
            },
            "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0], "gad7": [1, 1, 2, 1, 0, 1, 1]},
        },
        {
            "dimensions": {
                "withdrawal": 1,
                "biomedical": 0,
                "emotional": 2,
                "readiness": 2,
                "relapse": 2,
                "environment": 1,
            },
            "placement": {"chosen_level": "OP", "reason_code": "patient_declined_higher_level"},
        },
    )

    dimensions: DimensionsIn
    instruments: InstrumentAnswers = Field(default_factory=InstrumentAnswers)
    placement: PlacementIn | None = None


class SafetyAlertOut(BaseModel):
    alert_id: str
    level: Literal["immediate", "same_day"]
    reasons: list[str]


class AssessmentOut(BaseModel):
    assessment_id: str
    episode_id: str
    kind: Literal["intake", "reassessment"]
    assessed_at: UtcDatetime
    dimensions: DimensionRatings
    instruments: list[InstrumentResult]
    recommended_level: CareLevel
    refer_out: bool = Field(description="The recommended level is delivered elsewhere (residential, inpatient).")
    rationale: list[Reason]
    policy_version: str
    placement: PlacementDecision | None = None
    previous_assessment_id: str | None = None
    changes: list[InstrumentChange] = []
    safety_alert: SafetyAlertOut | None = None


class TrendPoint(BaseModel):
    assessment_id: str
    assessed_at: UtcDatetime
    total: int | None
    band: str


class InstrumentTrend(BaseModel):
    instrument: str
    points: list[TrendPoint]
    direction: Literal["improving", "worsening", "stable"] | None = Field(
        description="First to latest total (lower is better); null for instruments without a total."
    )


class AssessmentHistory(BaseModel):
    episode_id: str
    assessments: list[AssessmentOut]
    trends: list[InstrumentTrend]


class DrugScreenIn(BaseModel):
    model_config = _examples(
        {
            "collected_at": "2026-11-23T14:05:00Z",
            "results": [
                {"substance": "fentanyl", "result": "negative"},
                {"substance": "buprenorphine", "result": "positive", "expected": True},
            ],
        }
    )

    collected_at: AwareDatetime
    results: list[ScreenResult] = Field(min_length=1)

    @field_validator("collected_at")
    @classmethod
    def _not_in_the_future(cls, value: AwareDatetime) -> AwareDatetime:
        if value > utc_now():
            raise ValueError("must not be in the future")
        return value

    @field_validator("results")
    @classmethod
    def _one_result_per_substance(cls, value: list[ScreenResult]) -> list[ScreenResult]:
        substances = [result.substance for result in value]
        if len(set(substances)) != len(substances):
            raise ValueError("one result per substance")
        return value


class DrugScreenOut(BaseModel):
    screen_id: str
    episode_id: str
    collected_at: UtcDatetime
    recorded_at: UtcDatetime
    results: list[ScreenResult]
    unexpected_positive: bool


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    phone: Phone | None = None
    relationship: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _reachable(self) -> Recipient:
        if self.email is None and self.phone is None:
            raise ValueError("give an email or a phone number")
        return self


class ConsentIn(BaseModel):
    model_config = _examples(
        {
            "recipient_kind": "family",
            "recipient": {"name": "Sam Example", "email": "sam@example.org", "relationship": "sister"},
            "scopes": ["appointments", "attendance"],
            "expires_on": "2027-05-31",
        }
    )

    recipient_kind: RecipientKind
    recipient: Recipient | None = Field(default=None, description="Required for family and designated supports.")
    scopes: list[ConsentScope] = Field(min_length=1, description="What the recipient may be told.")
    expires_on: date | None = None

    @model_validator(mode="after")
    def _recipient_named(self) -> ConsentIn:
        if self.recipient_kind != "alumni_group" and self.recipient is None:
            raise ValueError("recipient is required for family and designated supports")
        return self

    @field_validator("expires_on")
    @classmethod
    def _in_the_future(cls, value: date | None) -> date | None:
        if value is not None and value <= utc_now().date():
            raise ValueError("must be in the future")
        return value


class ConsentOut(BaseModel):
    consent_id: str
    episode_id: str
    recipient_kind: RecipientKind
    recipient: Recipient | None
    scopes: list[ConsentScope]
    expires_on: date | None
    status: Literal["granted", "revoked"]
    granted_at: UtcDatetime
    revoked_at: UtcDatetime | None = None


class ContactOut(BaseModel):
    email: str | None
    phone: str | None


class AuditEntry(BaseModel):
    at: UtcDatetime
    role: str
    token_id: str
    action: str
    patient_id: str
    episode_id: str | None = None
