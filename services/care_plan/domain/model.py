"""The care plan's data: what care_plan knows about an episode. Plain data, no rules."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.utc import UtcDatetime
from stepwise_contract import (
    INSTRUMENTS,
    AlertLevel,
    CareLevel,
    InstrumentChange,
    InstrumentMeasure,
    InstrumentResult,
    MeasureReason,
    PlanReviewOutcome,
    PlanReviewReason,
    Program,
    Reason,
    Schedule,
    ScheduledSession,
    SessionKind,
    Track,
)

AttendanceStatus = Literal["attended", "late", "missed", "excused"]
PlanStatus = Literal["active", "referred_out", "graduated", "discharged"]


class AttendanceRecord(BaseModel):
    status: AttendanceStatus
    recorded_at: UtcDatetime
    notice_given_at: UtcDatetime | None = None
    """For an excused absence: when the patient gave notice (programs set how much notice excuses)."""
    detected: Literal["reported", "no_record"] = "reported"
    """no_record: nobody recorded the session by its end plus the grace period."""
    minutes: int | None = None
    """Minutes attended, when staff recorded fewer than the whole session."""


class CareInput(BaseModel):
    """Something care_plan learned about the episode that step-up / step-down rules read, in order."""

    kind: Literal["assessment", "safety_alert", "drug_screen", "measure"]
    at: UtcDatetime
    source_id: str = Field(description="assessment_id, alert_id, screen_id or measure_id")
    instruments: list[InstrumentResult] = []
    changes: list[InstrumentChange] = []
    alert_level: AlertLevel | None = None
    unexpected_positive: bool | None = None
    measured: list[InstrumentMeasure] = []
    """A measure's instruments (``iop.measure.recorded``): scores and their classification against the baseline."""
    recommended_level: CareLevel | None = None
    """An assessment's level: the clinician's choice, else intake's recommendation (None before it was kept)."""


class LevelPeriod(BaseModel):
    """One stretch of the episode at one clinical level."""

    level: CareLevel
    since: UtcDatetime
    reason: str = Field(examples=["assigned", "step_up", "step_down"])
    recommendation_id: str | None = None


class Authorization(BaseModel):
    """The payer-authorized level, kept apart from the clinical level."""

    level: CareLevel
    authorized_through: date
    reference: str = Field(max_length=100)


class CareTeam(BaseModel):
    """Who leads the episode's care: the primary clinician, by the identity provider's subject (pseudonymous), and
    the name staff know them by (kept here only, never in an event)."""

    primary_clinician: str = Field(min_length=1, max_length=200)
    display_name: str = Field(min_length=1, max_length=200)
    changed_at: UtcDatetime


class StepRecommendation(BaseModel):
    recommendation_id: str
    direction: Literal["up", "down"]
    from_level: CareLevel
    to_level: CareLevel
    rationale: list[Reason]
    policy_version: str
    created_at: UtcDatetime
    status: Literal["open", "accepted", "declined", "superseded"] = "open"
    decided_at: UtcDatetime | None = None
    decision_reason: str | None = None
    decided_by: str | None = None
    """The clinician who decided: the person signed in at the identity provider, or a static token's fingerprint."""
    refer_out: bool = False
    """``to_level`` is not offered here: accepting refers the patient out (the episode is discharged)."""


class RuleFiring(BaseModel):
    """A missed-session rule that fired, so it fires once for the same run of misses."""

    rule_code: str
    session_id: str
    at: UtcDatetime


class GroupPlace(BaseModel):
    """The program group the plan's calendar follows, since when."""

    group_id: str
    joined_at: UtcDatetime


class SkippedMeeting(BaseModel):
    """A session of the group (or custom calendar) the plan joined, left off its calendar: it overlaps
    ``clashes_with``, a session the plan kept (one of its own appointments). Cancelling that appointment puts
    the meeting back."""

    session: ScheduledSession
    clashes_with: str


class WaitlistPlace(BaseModel):
    """Waiting for a place in a group of this level and track: no group had room."""

    level: CareLevel
    track: Track
    group_ids: list[str]
    since: UtcDatetime


class DeliveredService(BaseModel):
    """The last published revision of a session's service (``iop.service.delivered``)."""

    revision: int
    status: Literal["delivered", "voided"]
    session_id: str
    kind: SessionKind
    group_id: str | None
    service_date: date
    minutes: int
    code: str | None
    units: int
    level: CareLevel
    attendance: AttendanceStatus
    recorded_at: UtcDatetime | None = None
    """When this revision was published; None for one published before it was kept (and for revision 0)."""


class ServiceDay(BaseModel):
    """The last published revision of a day's roll-up (``iop.service_day.completed``)."""

    revision: int
    level: CareLevel
    services: int
    minutes: int
    service_ids: list[str]
    per_diem_code: str | None


MeasureStatus = Literal["due", "overdue", "missed", "done", "cancelled"]


class DueMeasure(BaseModel):
    """Instruments the patient is asked to answer inside a window (``domain/measures.py``)."""

    due_id: str
    instruments: list[str]
    reason: MeasureReason
    due_on: date = Field(description="The clinic's local day the measure is due (moved off closures).")
    window_opens_at: UtcDatetime
    window_closes_at: UtcDatetime
    missed_at: UtcDatetime = Field(description="Still overdue at this moment: missed (the policy's days after).")
    status: MeasureStatus = "due"
    settled_at: UtcDatetime | None = None
    """When it became done, missed, or cancelled (the episode was discharged while it was open)."""


# --- the treatment plan (issue 25): its text stays here, never in an event or a log line -------------------------

MAX_TEXT = 500
"""A statement, a goal in the patient's words, a modality or a role: at most this many characters."""


class InstrumentTarget(BaseModel):
    """An objective measured by an instrument: its score below ``below`` on the last ``in_a_row`` measures."""

    model_config = ConfigDict(extra="forbid")

    instrument: str = Field(
        examples=["phq9"],
        max_length=20,
        description="An instrument intake scores.",
        json_schema_extra={"enum": list(INSTRUMENTS)},
    )
    below: int = Field(ge=1, le=100, examples=[10])
    in_a_row: int = Field(default=2, ge=1, le=10, description="On this many of the latest measures in a row.")

    @field_validator("instrument")
    @classmethod
    def _known(cls, instrument: str) -> str:
        if instrument not in INSTRUMENTS:
            raise ValueError(f"not an instrument intake scores ({', '.join(INSTRUMENTS)})")
        return instrument


class Intervention(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: str = Field(
        min_length=1, max_length=100, examples=["group"], description="A session kind, or another modality."
    )
    per_week: float = Field(gt=0, le=21, examples=[3])
    responsible_role: str = Field(min_length=1, max_length=100, examples=["counsellor"])


class Objective(BaseModel):
    """Measurable, achievable, time-specific (CARF 2.C), optionally tied to an instrument's score."""

    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=MAX_TEXT)
    target_date: date
    target: InstrumentTarget | None = None
    interventions: list[Intervention] = Field(default_factory=list, max_length=5)


class Goal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    in_own_words: str = Field(min_length=1, max_length=MAX_TEXT, description="The goal in the patient's own words.")
    objectives: list[Objective] = Field(min_length=1, max_length=5)


class Problem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    statement: str = Field(min_length=1, max_length=MAX_TEXT)
    goals: list[Goal] = Field(min_length=1, max_length=5)


AcknowledgedHow = Literal["signed_on_paper", "signed_electronically", "verbal"]


class Acknowledgement(BaseModel):
    """The patient's agreement to a signed version, as staff recorded it."""

    how: AcknowledgedHow
    agreed_at: UtcDatetime
    recorded_by: str
    recorded_at: UtcDatetime


class PlanVersion(BaseModel):
    """One version of the treatment plan: each PUT makes one; signing locks it (a change is a new version)."""

    version: int
    problems: list[Problem]
    put_at: UtcDatetime
    put_by: str
    signed_at: UtcDatetime | None = None
    signed_by: str | None = None
    acknowledgement: Acknowledgement | None = None


ReviewOutcome = PlanReviewOutcome


class PlanReview(BaseModel):
    """A review a clinician recorded (signing a new version counts as one too, without an entry here)."""

    at: UtcDatetime
    by: str
    outcome: ReviewOutcome
    version: int


ReviewStatus = Literal["due", "overdue", "done", "cancelled"]


class ReviewDue(BaseModel):
    """A review the plan is due for: periodic, or set off at once by a level change, a reliable deterioration, an
    immediate safety alert or the planned discharge (``domain/treatment_plan.py``)."""

    review_id: str
    reason: PlanReviewReason
    trigger_id: str | None = None
    version: int
    due_on: date
    overdue_at: UtcDatetime
    held_at: UtcDatetime
    status: ReviewStatus = "due"
    settled_at: UtcDatetime | None = None


class TreatmentPlan(BaseModel):
    """The episode's treatment plan: every version, the reviews recorded and the reviews due."""

    timezone: str
    """The clinic's zone when the plan was first put: review days are its local days."""
    versions: list[PlanVersion] = []
    reviews: list[PlanReview] = []
    reviews_due: list[ReviewDue] = []

    @property
    def in_force(self) -> PlanVersion | None:
        """The latest signed version."""
        return next((v for v in reversed(self.versions) if v.signed_at is not None), None)


class CarePlan(BaseModel):
    episode_id: str
    status: PlanStatus
    program: Program = "adult"
    level: CareLevel
    assessment_id: str
    assigned_at: UtcDatetime
    schedule: Schedule | None
    attendance: dict[str, AttendanceRecord] = {}
    rationale: list[Reason]
    policy_version: str
    level_history: list[LevelPeriod] = []
    authorization: Authorization | None = None
    care_team: CareTeam | None = None
    inputs: list[CareInput] = []
    recommendations: list[StepRecommendation] = []
    rule_firings: list[RuleFiring] = []
    utilization_flagged_weeks: list[date] = []
    group: GroupPlace | None = None
    waitlist: WaitlistPlace | None = None
    appointments: list[ScheduledSession] = []
    """The plan's own sessions (individual, family ...), also in ``schedule``: a new calendar keeps them."""
    skipped_meetings: list[SkippedMeeting] = []
    """Of the calendar the plan last joined, the sessions left off because they overlap one it kept."""
    services: dict[str, DeliveredService] = {}
    service_days: dict[date, ServiceDay] = {}
    services_tracked: bool = True
    """False for a plan stored before services were reported: its first review takes its history as reported."""
    measures: list[DueMeasure] = []
    """The measures whose window opened, oldest first, with what became of each."""
    follow_up_at: UtcDatetime | None = None
    """A graduate's timer: when its next alumni follow-up measure moves (its window opens or closes, it turns
    missed); None for none. The episode's own timer (``next_check_at``) ends with the episode."""
    admission_scored: list[str] = []
    """The instruments the intake assessment scored: it is the admission measure of those."""
    measures_from: UtcDatetime | None = None
    """When the plan began holding measures: none whose window closed before is asked for."""
    ended_at: UtcDatetime | None = None
    end_reason: str | None = None
    ended_by: str | None = None
    """The clinician who graduated or discharged the episode; None when it ended by completion."""
    end_note: str | None = None
    """The clinician's reason for graduating (required below the level's minimum attended sessions): kept here,
    never in an event."""
    treatment: TreatmentPlan | None = Field(default=None, exclude=True)
    """The treatment plan: clinical narrative, read only through its own audited endpoint, so left out of the care
    plan's answers (``exclude``); the store writes it explicitly."""

    @property
    def open_recommendation(self) -> StepRecommendation | None:
        return next((r for r in reversed(self.recommendations) if r.status == "open"), None)


class CarePlanError(Exception):
    """A request the care plan cannot take; ``code`` is stable, the message is for people. ``field`` names the
    request field at fault, if one is."""

    def __init__(self, code: str, message: str, field: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
