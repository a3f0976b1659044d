"""Data schemas of every event Stepwise publishes. Topic name = event type.

Ids are pseudonymous (random UUIDs). No event carries a name, contact data, birth date,
address, diagnosis text or free-text note: the fact that a person is a patient is protected.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from .envelope import EventData


class CareLevel(StrEnum):
    """Levels of care in neutral labels.

    Outpatient, intensive outpatient, partial hospitalization, residential, inpatient.
    """

    OP = "OP"
    IOP = "IOP"
    PHP = "PHP"
    RESIDENTIAL = "RESIDENTIAL"
    INPATIENT = "INPATIENT"


class Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class DimensionRatings(Part):
    """The six assessment dimensions, each rated 0 (no risk) to 4 (severe risk)."""

    withdrawal: int = Field(ge=0, le=4)
    biomedical: int = Field(ge=0, le=4)
    emotional: int = Field(ge=0, le=4)
    readiness: int = Field(ge=0, le=4)
    relapse: int = Field(ge=0, le=4)
    environment: int = Field(ge=0, le=4)


class InstrumentResult(Part):
    """A scored standard instrument: totals, band and flag codes, never the item answers."""

    instrument: str = Field(examples=["phq9"], description="phq9, gad7, audit, audit_c, dast10, cssrs or bam.")
    total: int | None = Field(description="Total score; null for instruments without one (C-SSRS, BAM).")
    band: str = Field(examples=["moderate"], description="Severity band or risk level of the published scoring.")
    flags: list[str] = Field(default_factory=list, examples=[["same_day_review"]])
    subscales: dict[str, int] = Field(default_factory=dict, description="Subscale scores (BAM: use, risk, protective).")


class Reason(Part):
    """One input that drove a decision: a stable code and a sentence a clinician reads."""

    code: str = Field(examples=["highest_dimension"])
    text: str = Field(examples=["Highest dimension rating is 3 (emotional): PHP."])


class AssessmentCompleted(EventData):
    """An assessment (intake or reassessment) was recorded, scored and given a recommended level of care."""

    event_type: ClassVar[str] = "iop.assessment.completed"

    assessment_id: str
    kind: Literal["intake", "reassessment"]
    program: Literal["adult", "adolescent"]
    assessed_at: AwareDatetime
    dimensions: DimensionRatings
    instruments: list[InstrumentResult] = Field(default_factory=list)
    recommended_level: CareLevel
    rationale: list[Reason]
    policy_version: str


class ScheduledSession(Part):
    session_id: str
    starts_at: AwareDatetime
    ends_at: AwareDatetime


class Schedule(Part):
    timezone: str = Field(examples=["America/New_York"])
    track: Literal["morning", "evening"]
    days_per_week: int
    hours_per_session: float
    weeks: int
    sessions: list[ScheduledSession]


class CareLevelAssigned(EventData):
    """An episode's care level was assigned from its intake assessment: a care plan started, or a referral out."""

    event_type: ClassVar[str] = "iop.care_level.assigned"

    level: CareLevel
    status: Literal["active", "referred_out"]
    assigned_at: AwareDatetime
    assessment_id: str
    schedule: Schedule | None = Field(description="The session calendar; null when the episode is referred out.")
    rationale: list[Reason]
    policy_version: str


class SessionMissed(EventData):
    """A scheduled session was missed (reported by staff or a system, or detected by no record)."""

    event_type: ClassVar[str] = "iop.session.missed"

    session_id: str
    starts_at: AwareDatetime
    detected: Literal["reported", "no_record"]
    recorded_at: AwareDatetime
    consecutive_misses: int = Field(ge=1)
    total_misses: int = Field(ge=1)


EVENT_TYPES: dict[str, type[EventData]] = {
    model.event_type: model for model in (AssessmentCompleted, CareLevelAssigned, SessionMissed)
}
"""Every event type Stepwise publishes, by type (= topic)."""
