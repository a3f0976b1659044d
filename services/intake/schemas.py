"""Request and response bodies of intake's HTTP API (with the examples the OpenAPI document shows), and its
refusals (``ERRORS``)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Final, Literal, TypeVar, get_args
from zoneinfo import available_timezones

from fastapi import status
from fastapi.responses import JSONResponse
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from services.common.domain_errors import ErrorTable
from services.common.errors import invalid_input
from services.common.idempotency import KEY_REUSED, KeyReused
from services.common.phones import PhoneNumber
from services.common.schemas import (
    EmailAddress,
    ErrorOut,
    RequestBody,
    component,
    request_examples,
    response_example,
    union_examples,
)
from services.common.utc import IANA_ZONE_PATTERN, IsoDate, Rfc3339, UtcDatetime, utc_now
from stepwise_contract import (
    AlertLevel,
    CareLevel,
    ConsentRecipientKind,
    ConsentScope,
    DimensionRatings,
    InstrumentMeasure,
    InstrumentResult,
    OverrideReason,
    Program,
    Reason,
    ScreenResult,
    Substance,
    SupportKind,
    Track,
)

from .changes import PatientExists
from .domain.instruments import InstrumentAnswers
from .domain.model import Assessment, Consent, DrugScreen, EpisodeError, Measure, Phone, Recipient
from .domain.patient import search_terms

ZONES: Final[frozenset[str]] = frozenset(available_timezones())
"""The IANA time-zone names this installation knows (its tz database): what a patient's zone may be."""


def _known_zone(value: str) -> str:
    if value not in ZONES:
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as America/Chicago")
    return value


TimeZone = Annotated[
    str,
    Field(
        pattern=IANA_ZONE_PATTERN,
        examples=["America/Chicago"],
        json_schema_extra=component("TimeZoneName", {"enum": sorted(ZONES)}),
    ),
    AfterValidator(_known_zone),
]


CONSENT_SCOPES: Final[tuple[ConsentScope, ...]] = get_args(ConsentScope)
SUBSTANCES: Final[tuple[str, ...]] = get_args(Substance)


class EmergencyContact(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    phone: Phone
    relationship: str = Field(min_length=1, max_length=100, examples=["sister"])


class EmergencyContactIn(EmergencyContact):
    phone: PhoneNumber


class PatientIn(RequestBody):
    model_config = request_examples(
        {
            "name": "Alex Example",
            "date_of_birth": "1990-04-01",
            "email": "alex@example.org",
            "phone": "+12025550123",
            "emergency_contact": {"name": "Sam Example", "phone": "+1 202-555-0101", "relationship": "sister"},
        },
        {"name": "Jordan Example", "date_of_birth": "1985-09-12", "phone": "(202) 555-0147"},
        {"name": "Alex Example", "date_of_birth": "1990-04-01", "phone": "+12025550188", "confirm_new": True},
    )

    name: str = Field(min_length=1, max_length=200)
    date_of_birth: IsoDate
    email: EmailAddress | None = Field(default=None, description="Optional: many patients are reached by phone only.")
    phone: PhoneNumber | None = Field(default=None, description="A mobile number for texts (stored in E.164).")
    emergency_contact: EmergencyContactIn | None = None
    timezone: TimeZone | None = Field(default=None, description="The patient's zone, for quiet hours and times.")
    confirm_new: StrictBool = Field(
        default=False,
        description="Register another person although a patient with the same name and date of birth is "
        "registered (without it: 409 with that patient's id). Not stored.",
    )

    @field_validator("date_of_birth")
    @classmethod
    def _in_the_past(cls, value: date) -> date:
        if value >= utc_now().date():
            raise PydanticCustomError("not_in_the_past", "must be in the past")
        return value


class PatientUpdate(RequestBody):
    """Fields to change; those left out stay as they are."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"phone": "+12025550199"}], "minProperties": 1}
    )

    # Left out, the name stays (only the fields given are changed); null is no name, and a patient has one.
    name: str = Field(default=None, min_length=1, max_length=200)  # type: ignore[assignment]
    email: EmailAddress | None = None
    phone: PhoneNumber | None = None
    emergency_contact: EmergencyContactIn | None = None
    timezone: TimeZone | None = None

    @model_validator(mode="after")
    def _something(self) -> PatientUpdate:
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class PatientOut(BaseModel):
    model_config = response_example(
        {
            "patient_id": "0b6f6a52-3c1e-4d8e-9a0f-5e2d7c1b9a34",
            "name": "Alex Example",
            "date_of_birth": "1990-04-01",
            "email": "alex@example.org",
            "phone": "+12025550123",
            "emergency_contact": None,
            "registered_at": "2026-11-23T14:00:00Z",
        }
    )

    patient_id: str
    name: str
    date_of_birth: date
    email: str | None
    phone: str | None
    emergency_contact: EmergencyContact | None = None
    timezone: str | None = None
    registered_at: UtcDatetime


MAX_NAMES = 200
"""Episodes per names request: a day's groups, not the clinic's whole history."""
MAX_SEARCH = 50


class NamesIn(RequestBody):
    model_config = request_examples({"episode_ids": ["5d0c3f9e-8a41-4c38-9b0f-0a4c3f2d9e11"]})

    episode_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=MAX_NAMES, description=f"At most {MAX_NAMES} episodes."
    )


class EpisodeName(BaseModel):
    episode_id: str
    patient_id: str
    name: str
    date_of_birth: date


class NamesOut(BaseModel):
    model_config = response_example(
        {"names": [{"episode_id": "5d0c3f9e-8a41-4c38-9b0f-0a4c3f2d9e11", "patient_id": "0b6f6a52-3c1e-4d8e-9a0f-"
                    "5e2d7c1b9a34", "name": "Alex Example", "date_of_birth": "1990-04-01"}], "unknown": []}
    )  # fmt: skip

    names: list[EpisodeName]
    unknown: list[str] = Field(description="The episode ids asked for that intake does not know.")


class SearchIn(RequestBody):
    model_config = request_examples({"name": "alex exa"}, {"date_of_birth": "1990-04-01"},
                                    {"name": "Exa", "date_of_birth": "1990-04-01", "limit": 10})  # fmt: skip

    name: str | None = Field(
        default=None,
        max_length=200,
        description="Words the name starts with (case and accents aside), at least one of 3 letters or more; a "
        "shorter word matches a whole word of the name.",
    )
    date_of_birth: IsoDate | None = None
    limit: int = Field(default=20, ge=1, le=MAX_SEARCH)

    @field_validator("name")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and search_terms(value) is None:
            raise PydanticCustomError("name_too_short", "give at least 3 letters of a word of the name")
        return value

    @model_validator(mode="after")
    def _something(self) -> SearchIn:
        if self.name is None and self.date_of_birth is None:
            raise PydanticCustomError("nothing_to_search", "give a name, a date of birth or both")
        return self


class FoundEpisode(BaseModel):
    episode_id: str
    program: str
    status: str
    opened_at: UtcDatetime


class FoundPatient(BaseModel):
    patient_id: str
    name: str
    date_of_birth: date
    episodes: list[FoundEpisode]


class SearchOut(BaseModel):
    model_config = response_example(
        {"patients": [{"patient_id": "0b6f6a52-3c1e-4d8e-9a0f-5e2d7c1b9a34", "name": "Alex Example",
                       "date_of_birth": "1990-04-01",
                       "episodes": [{"episode_id": "5d0c3f9e-8a41-4c38-9b0f-0a4c3f2d9e11", "program": "adult",
                                     "status": "open", "opened_at": "2026-11-23T14:00:00Z"}]}], "more": False}
    )  # fmt: skip
    patients: list[FoundPatient] = Field(description="By name; at most `limit`.")
    more: bool = Field(description="More patients match: narrow the search (a fuller name, the birth date).")


class PatientCreated(BaseModel):
    model_config = response_example({"patient_id": "0b6f6a52-3c1e-4d8e-9a0f-5e2d7c1b9a34"})

    patient_id: str


class PatientExistsOut(ErrorOut):
    """A patient with this name and date of birth is registered already: their id (`confirm_new` registers
    another person all the same)."""

    model_config = response_example(
        {
            "detail": "a patient with this name and date of birth is registered already",
            "patient_id": "0b6f6a52-3c1e-4d8e-9a0f-5e2d7c1b9a34",
        }
    )

    detail: str = "a patient with this name and date of birth is registered already"
    patient_id: str


class EpisodeIn(RequestBody):
    model_config = request_examples({"program": "adult"}, {"program": "adult", "track": "evening"})

    program: Program
    track: Track | None = Field(
        default=None, description="Morning or evening sessions; null: the clinic's default track (care_plan's)."
    )


class EpisodeCreated(BaseModel):
    model_config = response_example({"episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42"})

    episode_id: str


Rating = Annotated[StrictInt, Field(ge=0, le=4)]
"""A dimension rating as a request gives it: a JSON integer 0-4 (``"2"``, ``2.0`` or ``true`` is a 422)."""


class DimensionsIn(DimensionRatings, RequestBody):
    """The six ratings (the contract's ``DimensionRatings``, refusing fields it does not declare), each a JSON
    integer."""

    withdrawal: Rating
    biomedical: Rating
    emotional: Rating
    readiness: Rating
    relapse: Rating
    environment: Rating


class PlacementIn(RequestBody):
    """A clinician's chosen level where it differs from the recommendation (clinician role only)."""

    chosen_level: CareLevel
    reason_code: OverrideReason
    note: str | None = Field(default=None, max_length=2000, description="Stays in intake; never in an event.")


class AssessmentAnswersIn(RequestBody):
    """An assessment's answers: the six ratings and the instruments' item answers (a preview's body)."""

    model_config = request_examples(
        {
            "dimensions": {
                "withdrawal": 1,
                "biomedical": 0,
                "emotional": 2,
                "readiness": 2,
                "relapse": 2,
                "environment": 1,
            },
            "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0], "cssrs": {"q1": False, "q2": False, "q6": False}},
        },
    )

    dimensions: DimensionsIn
    instruments: InstrumentAnswers = Field(default_factory=InstrumentAnswers)


class AssessmentIn(AssessmentAnswersIn):
    model_config = request_examples(
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

    placement: PlacementIn | None = None


ASSESSMENT_EXAMPLE: dict[str, Any] = {
    "assessment_id": "5a1d2f7e-8c3b-4e6a-b1d0-9f2e7c4a6b18",
    "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
    "kind": "intake",
    "assessed_at": "2026-11-23T14:10:00Z",
    "dimensions": {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1},
    "instruments": [{"instrument": "phq9", "total": 11, "band": "moderate", "flags": [], "subscales": {}}],
    "recommended_level": "IOP",
    "refer_out": False,
    "rationale": [
        {"code": "highest_dimension", "text": "Highest dimension rating is 2 (emotional, readiness, relapse): IOP."},
        {"code": "recommended_level", "text": "Recommended level of care: IOP."},
    ],
    "policy_version": "placement-default-2026.11",
    "placement": None,
    "previous_assessment_id": None,
    "changes": [],
    "safety_alert": None,
}


class AssessmentOut(Assessment):
    model_config = response_example(ASSESSMENT_EXAMPLE)


class SafetyConcernOut(BaseModel):
    level: AlertLevel
    reasons: list[str]


class AssessmentPreview(BaseModel):
    """What recording these answers would give the episode now; nothing is recorded, no alert is raised."""

    model_config = response_example(
        {
            "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "kind": "intake",
            "dimensions": ASSESSMENT_EXAMPLE["dimensions"],
            "instruments": ASSESSMENT_EXAMPLE["instruments"],
            "recommended_level": "IOP",
            "refer_out": False,
            "rationale": ASSESSMENT_EXAMPLE["rationale"],
            "policy_version": "placement-default-2026.11",
            "safety_alert": None,
        }
    )

    episode_id: str
    kind: Literal["intake", "reassessment"]
    dimensions: DimensionRatings
    instruments: list[InstrumentResult] = Field(description="The instruments scored from their item answers.")
    recommended_level: CareLevel
    refer_out: bool = Field(description="The recommended level is delivered elsewhere (residential, inpatient).")
    rationale: list[Reason]
    policy_version: str
    safety_alert: SafetyConcernOut | None = Field(
        description="The safety alert recording these answers would raise (its level and reason codes); null if none."
    )


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
    model_config = response_example(
        {
            "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "assessments": [ASSESSMENT_EXAMPLE],
            "trends": [
                {
                    "instrument": "phq9",
                    "points": [
                        {
                            "assessment_id": "5a1d2f7e-8c3b-4e6a-b1d0-9f2e7c4a6b18",
                            "assessed_at": "2026-11-23T14:10:00Z",
                            "total": 11,
                            "band": "moderate",
                        }
                    ],
                    "direction": "stable",
                }
            ],
        }
    )

    episode_id: str
    assessments: list[AssessmentOut]
    trends: list[InstrumentTrend]


class MeasureIn(RequestBody):
    """Instruments between assessments: the same instruments and validation as an assessment's, at least one."""

    model_config = request_examples(
        {"instruments": {"phq9": [1, 1, 1, 1, 0, 1, 1, 0, 0], "gad7": [1, 0, 1, 1, 0, 0, 1]}}
    )

    instruments: InstrumentAnswers

    @field_validator("instruments")
    @classmethod
    def _some(cls, value: InstrumentAnswers) -> InstrumentAnswers:
        if not value.score():
            raise PydanticCustomError("no_instruments", "give at least one instrument's answers")
        return value


MEASURE_EXAMPLE: dict[str, Any] = {
    "measure_id": "3f6c1a2b-7d4e-4f10-9a8b-1c2d3e4f5a6b",
    "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
    "recorded_at": "2026-12-01T14:10:00Z",
    "instruments": [{"instrument": "phq9", "total": 6, "band": "mild", "flags": [], "subscales": {}}],
    "changes": [{"instrument": "phq9", "score": 6, "band": "mild", "baseline_score": 16, "previous_score": 11,
                 "classification": "reliable_improvement", "recovered": True, "response": False}],
    "policy_version": "measures-default-2026.12",
    "safety_alert": None,
}  # fmt: skip


class MeasureOut(Measure):
    model_config = response_example(MEASURE_EXAMPLE)


class MeasurePoint(InstrumentMeasure):
    """One score in an instrument's series: where it came from, when, and how it compares (policy in force)."""

    record_id: str = Field(description="The measure's or the assessment's id.")
    source: Literal["measure", "assessment"]
    recorded_at: UtcDatetime


class MeasureSeries(BaseModel):
    instrument: str
    points: list[MeasurePoint]
    reliable_change: int | None = Field(
        default=None, description="The measures policy's reliable change in points (null: none set for it)."
    )
    caseness: int | None = Field(default=None, description="The policy's lowest score that counts as a case (or null).")


class EpisodeMeasures(BaseModel):
    """Every score of an episode per instrument, oldest first, from its assessments and measures."""

    model_config = response_example(
        {
            "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "policy_version": "measures-default-2026.12",
            "series": [{"instrument": "phq9", "points": [
                {"record_id": "5a1d2f7e-8c3b-4e6a-b1d0-9f2e7c4a6b18", "source": "assessment",
                 "recorded_at": "2026-11-23T14:10:00Z", "instrument": "phq9", "score": 16,
                 "band": "moderately_severe", "baseline_score": 16, "previous_score": None,
                 "classification": "baseline", "recovered": False, "response": False},
                {"record_id": "3f6c1a2b-7d4e-4f10-9a8b-1c2d3e4f5a6b", "source": "measure",
                 "recorded_at": "2026-12-01T14:10:00Z", **MEASURE_EXAMPLE["changes"][0]},
            ], "reliable_change": 6, "caseness": 10}],
        }
    )  # fmt: skip

    episode_id: str
    policy_version: str
    series: list[MeasureSeries]


class InstrumentOutcomeOut(BaseModel):
    instrument: str
    episodes: int | None = Field(description="Episodes with 2 or more scores; null when the group is suppressed.")
    suppressed: bool = Field(description="Fewer episodes than OUTCOMES_MIN_GROUP: nothing else is shown.")
    reliable_improvement: float | None = Field(description="Share (0-1) whose latest score is a reliable improvement.")
    reliable_deterioration: float | None
    recovered: float | None
    median_change: float | None = Field(description="Median of latest score minus baseline (negative: better).")


class OutcomesOut(BaseModel):
    """Outcomes across the episodes of a program opened in [from, to): no ids, no person."""

    model_config = response_example(
        {
            "program": "adult",
            "opened_from": "2026-01-01T00:00:00Z",
            "opened_to": "2027-01-01T00:00:00Z",
            "min_group": 5,
            "policy_version": "measures-default-2026.12",
            "instruments": [
                {"instrument": "gad7", "episodes": None, "suppressed": True, "reliable_improvement": None,
                 "reliable_deterioration": None, "recovered": None, "median_change": None},
                {"instrument": "phq9", "episodes": 42, "suppressed": False, "reliable_improvement": 0.571,
                 "reliable_deterioration": 0.048, "recovered": 0.429, "median_change": -6.0},
            ],
        }
    )  # fmt: skip

    program: Program | None
    opened_from: AwareDatetime | None
    opened_to: AwareDatetime | None
    min_group: int
    policy_version: str
    instruments: list[InstrumentOutcomeOut]


LinkInstrument = Literal["phq9", "gad7"]
"""The instruments the patient page shows (``domain.links.QUESTIONNAIRES``)."""


class QuestionnaireLinkIn(RequestBody):
    """The instruments the patient is asked (those due: care_plan knows which, and notifications passes them on)."""

    model_config = request_examples({"instruments": ["phq9", "gad7"]})

    instruments: list[LinkInstrument] = Field(
        default_factory=list,
        validate_default=True,
        max_length=2,
        description="At least one; an empty list is refused (intake does not know what is due: care_plan does).",
    )

    @field_validator("instruments")
    @classmethod
    def _some(cls, value: list[LinkInstrument]) -> list[LinkInstrument]:
        if not value:
            raise PydanticCustomError("no_instruments", "name the due instruments (intake does not know what is due)")
        if len(set(value)) != len(value):
            raise PydanticCustomError("instrument_twice", "name each instrument once")
        return value


class QuestionnaireLinkOut(BaseModel):
    """The link, given once: intake keeps only its token's hash. Never store, log or trace it."""

    model_config = response_example({"url": "https://forms.example.org/q/3q2-…", "expires_at": "2026-12-10T09:00:00Z"})

    url: str
    expires_at: UtcDatetime


class ScreenResultIn(ScreenResult, RequestBody):
    """One substance's result (the contract's ``ScreenResult``, refusing fields it does not declare)."""

    expected: StrictBool = Field(default=False, description="A positive explained by a prescribed medication.")


class DrugScreenIn(RequestBody):
    model_config = request_examples(
        {
            "collected_at": "2026-11-20T14:05:00Z",
            "results": [
                {"substance": "fentanyl", "result": "negative"},
                {"substance": "buprenorphine", "result": "positive", "expected": True},
            ],
        }
    )

    collected_at: Rfc3339
    results: list[ScreenResultIn] = Field(min_length=1, max_length=len(SUBSTANCES), description="One per substance.")

    @field_validator("collected_at")
    @classmethod
    def _not_in_the_future(cls, value: AwareDatetime) -> AwareDatetime:
        if value > utc_now():
            raise PydanticCustomError("in_the_future", "must not be in the future")
        return value

    @field_validator("results")
    @classmethod
    def _one_result_per_substance(cls, value: list[ScreenResult]) -> list[ScreenResult]:
        substances = [result.substance for result in value]
        if len(set(substances)) != len(substances):
            raise PydanticCustomError("substance_twice", "one result per substance")
        return value


class DrugScreenOut(DrugScreen):
    model_config = response_example(
        {
            "screen_id": "c2e9b7a4-1f3d-4a8e-9b6c-0d5f2e8a7c31",
            "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "collected_at": "2026-11-20T14:05:00Z",
            "recorded_at": "2026-11-23T15:00:00Z",
            "results": [{"substance": "fentanyl", "result": "negative", "expected": False}],
            "unexpected_positive": False,
        }
    )


class RecipientIn(Recipient):
    """A support a consent names: an email or a phone number (or both) to reach them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["email"], "properties": {"email": {"type": "string"}}},
                {"required": ["phone"], "properties": {"phone": {"type": "string"}}},
            ]
        },
    )

    email: EmailAddress | None = None
    phone: PhoneNumber | None = None


Scopes = Annotated[
    list[ConsentScope],
    Field(
        min_length=1,
        max_length=len(CONSENT_SCOPES),
        json_schema_extra={"uniqueItems": True},
        description="What the recipient may be told, each once.",
    ),
]


class ConsentTermsIn(RequestBody):
    """What every consent says: what may be told (each scope once) and until when (a day ahead of today)."""

    scopes: Scopes
    expires_on: IsoDate | None = Field(default=None, description="After today (`not_in_the_future` otherwise).")

    @field_validator("scopes")
    @classmethod
    def _each_once(cls, value: list[ConsentScope]) -> list[ConsentScope]:
        if len(set(value)) != len(value):
            raise ValueError("name each scope once")
        return value

    @field_validator("expires_on")
    @classmethod
    def _in_the_future(cls, value: date | None) -> date | None:
        if value is not None and value <= utc_now().date():
            raise PydanticCustomError("not_in_the_future", "must be in the future")
        return value


class SupportConsentIn(ConsentTermsIn):
    """A consent naming a family member or designated support: who they are and how to reach them."""

    recipient_kind: SupportKind
    recipient: RecipientIn


class AlumniGroupConsentIn(ConsentTermsIn):
    """A consent to hear from the alumni group: its messages go to the graduate's own contact points."""

    recipient_kind: Literal["alumni_group"]
    recipient: RecipientIn | None = None


class ConsentIn(RootModel[Annotated[SupportConsentIn | AlumniGroupConsentIn, Field(discriminator="recipient_kind")]]):
    """One of two shapes by ``recipient_kind``: a family member or designated support is named (``recipient``);
    the alumni group names no one."""

    model_config = union_examples(
        {
            "recipient_kind": "family",
            "recipient": {"name": "Sam Example", "email": "sam@example.org", "relationship": "sister"},
            "scopes": ["appointments", "attendance"],
            "expires_on": "2030-12-31",
        },
        {"recipient_kind": "alumni_group", "scopes": ["alumni_program"]},
    )


class ConsentOut(Consent):
    model_config = response_example(
        {
            "consent_id": "e4a7c1d9-2b5f-4e8a-a3c6-7f1d0b9e2a54",
            "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "recipient_kind": "family",
            "recipient": {"name": "Sam Example", "email": "sam@example.org", "relationship": "sister"},
            "scopes": ["appointments", "attendance"],
            "expires_on": "2030-12-31",
            "status": "granted",
            "granted_at": "2026-11-23T14:20:00Z",
            "revoked_at": None,
        }
    )


class RecipientContact(BaseModel):
    """A consented recipient (for the notifications service only). Listings carry no contact data; the
    contact of one consent carries the support's, or for the alumni group the graduate's own."""

    model_config = response_example({"consent_id": "e4a7c1d9-2b5f-4e8a-a3c6-7f1d0b9e2a54", "recipient_kind": "family",
                 "email": "sam@example.org", "phone": None})  # fmt: skip

    consent_id: str
    recipient_kind: ConsentRecipientKind
    email: str | None
    phone: str | None
    timezone: str | None = Field(default=None, description="The graduate's zone (alumni group only).")


class EpisodePatient(BaseModel):
    """Which (pseudonymous) patient an episode belongs to: lets notifications see a graduate return."""

    model_config = response_example(
        {
            "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "patient_id": "0b6e3f1a-9c2d-4e5f-8a7b-1c2d3e4f5a6b",
        }
    )

    episode_id: str
    patient_id: str


class EpisodeAudience(BaseModel):
    """Who may hear of an episode, in one answer: its (pseudonymous) patient and, per scope asked, the supports a
    consent in force allows to be told (without contact data). What notifications needs to plan an event's
    messages, instead of one request per question."""

    model_config = response_example(
        {
            "episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42",
            "patient_id": "0b6e3f1a-9c2d-4e5f-8a7b-1c2d3e4f5a6b",
            "recipients": {"appointments": [{"consent_id": "e4a7c1d9-2b5f-4e8a-a3c6-7f1d0b9e2a54",
                                             "recipient_kind": "family", "email": None, "phone": None}]},
        }
    )  # fmt: skip

    episode_id: str
    patient_id: str
    recipients: dict[ConsentScope, list[RecipientContact]]
    patient_channels: list[Literal["email", "sms"]] | None = Field(
        default=None,
        exclude_if=lambda channels: channels is None,
        description="Asked with `patient_channels=true`: the channels the patient has a contact point for (an "
        "empty list: the patient cannot be reached); never the addresses.",
    )
    patient_contact: ContactOut | None = Field(
        default=None,
        exclude_if=lambda contact: contact is None,
        description="Asked with `patient_contact=true` (a message to the patient is about to go, the welcome): the "
        "patient's contact points, as `GET /v1/episodes/{episode_id}/contact` answers them, audited the same way.",
    )
    earlier_episodes: bool | None = Field(
        default=None,
        exclude_if=lambda earlier: earlier is None,
        description="With `patient_channels=true` or `patient_contact=true`: whether another episode was opened for "
        "the patient before this one (a returning patient); absent when not known (a patient registered before "
        "intake counted episodes): ask as if it were true.",
    )


AUDIENCES_AT_ONCE: Final = 100
"""Episodes one ``POST /v1/audiences`` asks about at most (notifications asks for a consumer batch's at once)."""


class AudienceIn(RequestBody):
    """One episode's question, as ``GET /v1/episodes/{episode_id}/audience`` asks it in its query."""

    episode_id: str = Field(min_length=1, max_length=100)
    scope: list[ConsentScope] = Field(default_factory=list, max_length=len(CONSENT_SCOPES),
                                      description="The scopes to list the recipients of.")  # fmt: skip
    patient_channels: StrictBool = Field(default=False, description="As the query parameter of the one-episode lookup.")
    patient_contact: StrictBool = Field(default=False, description="As the query parameter of the one-episode lookup.")


class AudiencesIn(RequestBody):
    model_config = request_examples({"episodes": [
        {"episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42", "scope": ["appointments"], "patient_channels": True,
         "patient_contact": True}]})  # fmt: skip

    episodes: list[AudienceIn] = Field(min_length=1, max_length=AUDIENCES_AT_ONCE,
                                       description=f"At most {AUDIENCES_AT_ONCE} questions.")  # fmt: skip


class AudiencesOut(BaseModel):
    """An answer per question, in the order asked: what the one-episode lookup answers, or null for an episode
    intake does not know (where that lookup answers 404)."""

    model_config = response_example({"audiences": [
        {"episode_id": "7d0c1f3e-4b0a-4a57-9c1e-2b8f6a1d0e42", "patient_id": "0b6e3f1a-9c2d-4e5f-8a7b-1c2d3e4f5a6b",
         "recipients": {"appointments": []}, "patient_channels": ["email"],
         "patient_contact": {"email": "alex@example.org", "phone": None, "timezone": None}, "earlier_episodes": False},
        None]})  # fmt: skip

    audiences: list[EpisodeAudience | None]


class ContactOut(BaseModel):
    model_config = response_example({"email": "alex@example.org", "phone": "+12025550123", "timezone": None})

    email: str | None
    phone: str | None
    timezone: str | None = None


class AuditEntry(BaseModel):
    model_config = response_example(
        {
            "at": "2026-11-23T14:00:00Z",
            "role": "intake_staff",
            "token_id": "3f9a1c2b7d4e",
            "subject": "f2c1d0e4-7a8b-4c3d-9e1f-2a3b4c5d6e7f",
            "username": "j.rivera",
            "action": "read_patient",
            "patient_id": "0b6f6a52-3c1e-4d8e-9a0f-5e2d7c1b9a34",
            "episode_id": None,
        }
    )

    at: UtcDatetime
    role: str
    token_id: str
    subject: str | None = Field(default=None, description="The person, as the identity provider names them (sub).")
    username: str | None = Field(default=None, description="Their preferred username; null for a static token.")
    action: str
    patient_id: str
    episode_id: str | None = None


Out = TypeVar("Out", bound=BaseModel)


def shown(model: type[Out], record: BaseModel) -> Out:
    """A stored record as the API shows it (fields kept for intake alone are left out)."""
    return model.model_validate(record, from_attributes=True)


def _patient_exists(exists: PatientExists) -> JSONResponse:
    return JSONResponse(PatientExistsOut(patient_id=exists.patient_id).model_dump(), status_code=409)


def _key_reused(error: KeyReused) -> Exception:
    return invalid_input(("header", "Idempotency-Key"), str(error), KEY_REUSED)


ERRORS = ErrorTable(
    EpisodeError,  # one naming the request field at fault is a 422 naming it, with the code as its ``type``
    statuses={
        "no_patient": status.HTTP_404_NOT_FOUND,
        "no_episode": status.HTTP_404_NOT_FOUND,
        "unknown_consent": status.HTTP_404_NOT_FOUND,
        "episode_not_open": status.HTTP_409_CONFLICT,
        "episode_full": status.HTTP_409_CONFLICT,
        "consent_not_in_force": status.HTTP_410_GONE,
    },
    answers={PatientExists: _patient_exists, KeyReused: _key_reused},
)
"""intake's refusals as HTTP answers, registered by the common app (services/common/domain_errors.py)."""
