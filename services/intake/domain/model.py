"""What intake knows about an episode: the episode and its records. Plain data, no rules.

An episode is an aggregate: its assessments, drug screens and consents, and the events they cause, are
written together in one version-checked update (``changes.change_episode``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, PlainSerializer, model_validator

from services.common.utc import UtcDatetime
from stepwise_contract import (
    ALUMNI_GROUP,
    AlertLevel,
    CareLevel,
    ConsentRecipientKind,
    ConsentScope,
    DimensionRatings,
    InstrumentChange,
    InstrumentMeasure,
    InstrumentResult,
    PlacementDecision,
    Program,
    Reason,
    ScreenResult,
    Track,
)

Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 ().-]{5,19}$", description="E.164, e.g. +12025550123")]
"""A stored number (requests take ``services.common.phones.PhoneNumber``, which stores E.164)."""
CalendarDate = Annotated[date, PlainSerializer(date.isoformat, return_type=str)]
"""A day without a time: stored as ISO text (BSON has no date type)."""
EpisodeStatus = Literal["open", "closed"]
EpisodeEnd = Literal["graduated", "discharged"]

MOST_ASSESSMENTS = 200
MOST_DRUG_SCREENS = 500
MOST_CONSENTS = 100
MOST_MEASURES = 400
"""What one episode keeps at most, so its record stays far below MongoDB's 16 MB document limit: at their largest
about 5 KB an assessment, 1.5 KB a drug screen, 1 KB a consent, 2 KB a measure, under 3 MB in all (a unit test
builds the fullest episode). Weekly reassessments for nearly four years, or a screen every other day for nearly
three, fit; past a bound a new record is refused (409) and the patient's treatment goes on in a new episode."""


class SafetyAlert(BaseModel):
    alert_id: str
    level: AlertLevel
    reasons: list[str]


class Assessment(BaseModel):
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
    safety_alert: SafetyAlert | None = None


class RecordedAssessment(Assessment):
    """An assessment as intake keeps it: with who recorded it and the clinician's note (never in an event)."""

    recorded_by: str | None = None
    placement_note: str | None = None


class DrugScreen(BaseModel):
    screen_id: str
    episode_id: str
    collected_at: UtcDatetime
    recorded_at: UtcDatetime
    results: list[ScreenResult]
    unexpected_positive: bool


class RecordedDrugScreen(DrugScreen):
    recorded_by: str | None = None


MeasureChannel = Literal["api", "questionnaire_link"]
"""How a measure came in: staff or a system through the API, or the patient through a questionnaire link."""


class Measure(BaseModel):
    """Instruments scored between assessments (no dimensions, no placement), each against the episode's baseline."""

    measure_id: str
    episode_id: str
    recorded_at: UtcDatetime
    instruments: list[InstrumentResult]
    changes: list[InstrumentMeasure] = Field(description="Each instrument with a total against baseline and previous.")
    policy_version: str
    safety_alert: SafetyAlert | None = None


class RecordedMeasure(Measure):
    recorded_by: str | None = None
    channel: MeasureChannel = "api"


class Recipient(BaseModel):
    """A support a consent names (PII: stays in intake)."""

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


class Consent(BaseModel):
    consent_id: str
    episode_id: str
    recipient_kind: ConsentRecipientKind
    recipient: Recipient | None
    scopes: list[ConsentScope]
    expires_on: CalendarDate | None
    status: Literal["granted", "revoked"]
    granted_at: UtcDatetime
    revoked_at: UtcDatetime | None = None
    granted_by: str | None = None
    """Who recorded it: the person signed in at the identity provider, or a static token's fingerprint."""
    revoked_by: str | None = None

    def in_force(self, today: date) -> bool:
        return self.status == "granted" and (self.expires_on is None or self.expires_on >= today)

    @property
    def names_someone(self) -> bool:
        """A support named in the consent, or the alumni group (whose messages go to the graduate)."""
        return self.recipient is not None or self.recipient_kind == ALUMNI_GROUP


class Episode(BaseModel):
    episode_id: str
    patient_id: str
    program: Program
    track: Track | None = None
    """Morning or evening sessions; None: the clinic's default track (care_plan applies it)."""
    status: EpisodeStatus
    opened_at: UtcDatetime
    closed_at: UtcDatetime | None = None
    ended: EpisodeEnd | None = Field(default=None, description="How care_plan ended it (graduated, discharged).")
    assessments: list[RecordedAssessment] = []
    drug_screens: list[RecordedDrugScreen] = []
    consents: list[Consent] = []
    measures: list[RecordedMeasure] = []

    @property
    def latest_assessment(self) -> RecordedAssessment | None:
        return self.assessments[-1] if self.assessments else None

    def score_history(self) -> dict[str, list[int]]:
        """Every total recorded on each instrument, from assessments and measures, oldest first."""
        records = [(a.assessed_at, a.instruments) for a in self.assessments]
        records += [(m.recorded_at, m.instruments) for m in self.measures]
        history: dict[str, list[int]] = {}
        for _, results in sorted(records, key=lambda record: record[0]):
            for result in results:
                if result.total is not None:
                    history.setdefault(result.instrument, []).append(result.total)
        return history

    def consent(self, consent_id: str) -> Consent | None:
        return next((consent for consent in self.consents if consent.consent_id == consent_id), None)


class EpisodeError(Exception):
    """A request the episode cannot take; ``code`` is stable (the API maps it to a status), the message is
    for people. ``field`` names the request field at fault, if one is."""

    def __init__(self, code: str, message: str, field: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
