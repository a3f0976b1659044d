"""Data schemas of every event Stepwise publishes. Topic name = event type.

Ids are pseudonymous UUIDs (random, or derived from what they name). No event carries a name, contact data, birth date,
address, diagnosis text or free-text note: the fact that a person is a patient is protected.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, model_validator

from .envelope import EventData
from .vocabulary import (
    AlertLevel,
    CareLevel,
    Channel,
    ConsentRecipientKind,
    MeasureClassification,
    MeasureReason,
    MeasureSource,
    Program,
    RecipientKind,
    SessionKind,
    Track,
)


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


class InstrumentChange(Part):
    """How an instrument moved since the previous assessment of the episode."""

    instrument: str
    previous_total: int | None
    total: int | None
    delta: int | None = Field(description="total - previous_total; null without totals.")
    previous_band: str
    band: str
    meaningful_change: Literal["improvement", "worsening"] | None = Field(
        default=None,
        description="Set where the instrument has a reliable-change threshold in intake's measures policy (defaults: "
        "PHQ-9 6 points, GAD-7 4, NHS Talking Therapies): the same threshold as `iop.measure.recorded`'s "
        "classification, here between this assessment and the previous one.",
    )


OverrideReason = Literal[
    "patient_declined_higher_level",
    "patient_preference",
    "not_authorized_by_payer",
    "level_not_available",
    "clinical_judgement",
    "other",
]


class PlacementDecision(Part):
    """A clinician's chosen level where it differs from the recommendation; both are kept."""

    chosen_level: CareLevel
    reason_code: OverrideReason


class AssessmentCompleted(EventData):
    """An assessment (intake or reassessment) was recorded, scored and given a recommended level of care."""

    event_type: ClassVar[str] = "iop.assessment.completed"

    assessment_id: str
    kind: Literal["intake", "reassessment"]
    program: Program
    assessed_at: AwareDatetime
    dimensions: DimensionRatings
    instruments: list[InstrumentResult] = Field(default_factory=list)
    recommended_level: CareLevel
    rationale: list[Reason]
    policy_version: str
    placement: PlacementDecision | None = Field(
        default=None, description="Set when a clinician chose a level other than the recommended one."
    )
    previous_assessment_id: str | None = Field(default=None, description="The episode's previous assessment.")
    changes: list[InstrumentChange] = Field(
        default_factory=list, description="Per instrument given both times, the change since the previous assessment."
    )
    track: Track | None = Field(
        default=None,
        description="The episode's track (morning or evening sessions) as intake recorded it; null: the clinic's "
        "default track, which care_plan applies. New with a default: readers of the first version go on.",
    )

    @property
    def level(self) -> CareLevel:
        """The level to act on: the clinician's choice, else the recommendation."""
        return self.placement.chosen_level if self.placement else self.recommended_level


class SafetyAlertRaised(EventData):
    """An assessment showed a safety risk; published on its own topic so a consumer can treat it first.

    Carries the alert level and reason codes, never the answers.
    """

    event_type: ClassVar[str] = "iop.safety.alert_raised"

    alert_id: str
    assessment_id: str = Field(description="The assessment, or the measure (`iop.measure.recorded`), that raised it.")
    level: AlertLevel = Field(
        description="immediate: act now (e.g. high C-SSRS risk); same_day: clinician review today."
    )
    reasons: list[str] = Field(examples=[["cssrs_high_risk", "phq9_item9_positive"]])
    raised_at: AwareDatetime


class InstrumentMeasure(Part):
    """One instrument's score in ``iop.measure.recorded``: against the episode's baseline, and the previous score.

    (Agreed as ``InstrumentChange``; that name is the assessment's change since the previous one, above.)"""

    instrument: str = Field(examples=["phq9"], description="The instrument's code as intake scores it (phq9, gad7 …).")
    score: int = Field(description="The total score.")
    band: str = Field(examples=["moderate"], description="The instrument's band, as `iop.assessment.completed` says.")
    baseline_score: int = Field(description="The episode's first score on this instrument (= score the first time).")
    previous_score: int | None = Field(description="The score before this one; null the first time.")
    classification: MeasureClassification = Field(description="Against the baseline; `baseline` the first time.")
    recovered: bool = Field(description="The baseline was at or above caseness and this score is below it.")
    response: bool = Field(description="This score is at least 50 % below the baseline.")


class MeasureRecorded(EventData):
    """Scored instruments were recorded, from a measure between assessments or from an assessment, each compared
    with the episode's baseline and previous score. Scores, bands and classification only, never the answers."""

    event_type: ClassVar[str] = "iop.measure.recorded"

    measure_id: str = Field(description="The measure's id, or the assessment's id when `source` is `assessment`.")
    source: MeasureSource
    recorded_at: AwareDatetime
    instruments: list[InstrumentMeasure] = Field(description="Every instrument with a total, in the order given.")


class SafetyAlertAcknowledged(EventData):
    """A clinician acknowledged a safety alert: a person has it. Says when, never who (the staff member is in
    notifications' store and audit log only)."""

    event_type: ClassVar[str] = "iop.safety.alert_acknowledged"

    alert_id: str
    acknowledged_at: AwareDatetime


class SafetyAlertEscalated(EventData):
    """A safety alert was not acknowledged by its deadline: it was sent again to the on-call route (once)."""

    event_type: ClassVar[str] = "iop.safety.alert_escalated"

    alert_id: str
    level: AlertLevel
    acknowledge_by: AwareDatetime = Field(description="The deadline that passed without an acknowledgement.")
    escalated_at: AwareDatetime


Substance = Literal[
    "alcohol",
    "amphetamines",
    "methamphetamine",
    "barbiturates",
    "benzodiazepines",
    "buprenorphine",
    "cannabinoids",
    "cocaine",
    "fentanyl",
    "methadone",
    "mdma",
    "opiates",
    "oxycodone",
    "pcp",
    "tramadol",
    "other",
]


class ScreenResult(Part):
    substance: Substance
    result: Literal["positive", "negative"]
    expected: bool = Field(default=False, description="A positive explained by a prescribed medication.")


class DrugScreenRecorded(EventData):
    """A drug screen was recorded. Results are in the data only (never in headers)."""

    event_type: ClassVar[str] = "iop.drug_screen.recorded"

    screen_id: str
    collected_at: AwareDatetime
    recorded_at: AwareDatetime
    results: list[ScreenResult]
    unexpected_positive: bool = Field(description="Any positive result not explained by a prescription.")


class ConsentChanged(EventData):
    """A consent to tell a recipient about the episode was granted or revoked (42 CFR Part 2).

    Says only the kind of recipient and the status; who the recipient is stays in intake.
    """

    event_type: ClassVar[str] = "iop.consent.changed"

    consent_id: str
    recipient_kind: ConsentRecipientKind
    status: Literal["granted", "revoked"]
    changed_at: AwareDatetime


class ScheduledSession(Part):
    session_id: str = Field(
        examples=["iop-am-20261207", "individual-20261208-1400"],
        description="Stable and the same in every member's calendar: a group session is its group id and local "
        "date; an own appointment is its kind, local date and start time.",
    )
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    kind: SessionKind = Field(default="group", description="group, individual, family, education or a clinic's own.")
    group_id: str | None = Field(default=None, description="The program group meeting; null for an own appointment.")


class Schedule(Part):
    timezone: str = Field(examples=["America/New_York"])
    track: Track
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


class StepRecommended(EventData):
    """Base of step-up / step-down recommendations; one open per episode, a newer one supersedes it."""

    recommendation_id: str
    from_level: CareLevel
    to_level: CareLevel
    rationale: list[Reason]
    policy_version: str
    recommended_at: AwareDatetime
    supersedes: str | None = Field(default=None, description="The open recommendation this one replaces.")
    refer_out: bool = Field(
        default=False,
        description="A referral: this program does not offer ``to_level`` (e.g. a reassessment recommends "
        "inpatient care). Accepting it discharges the episode with reason ``referred_out``.",
    )


class StepUpRecommended(StepRecommended):
    """A more intensive level is recommended (safety alert, worsening scores, repeated positive screens …)."""

    event_type: ClassVar[str] = "iop.care_level.step_up_recommended"


class StepDownRecommended(StepRecommended):
    """A less intensive level is recommended (sustained improvement, attendance, time in level …)."""

    event_type: ClassVar[str] = "iop.care_level.step_down_recommended"


ScheduleChangeReason = Literal[
    "custom_calendar", "joined_group", "track_changed", "appointment_booked", "appointment_cancelled"
]
"""Why a calendar changed at the same level: a custom calendar, a place in a group from the waitlist, a group of
the episode's new track, an own appointment booked or cancelled."""

SKIPPED_MEETINGS = (
    "Ids of the new group's (or custom calendar's) sessions left off because each overlaps a session the plan "
    "keeps, one of its own appointments: the appointment stays, the care team moves one of them if it must. "
    "New with a default: readers of the first version go on."
)


class CareLevelChanged(EventData):
    """A clinician accepted a recommendation: the episode moved to another level with a new calendar.

    (Accepting a referral out, ``refer_out``, discharges the episode instead: ``iop.episode.discharged``.)"""

    event_type: ClassVar[str] = "iop.care_level.changed"

    from_level: CareLevel
    to_level: CareLevel
    direction: Literal["up", "down"]
    recommendation_id: str
    changed_at: AwareDatetime
    status: Literal["active", "referred_out"]
    schedule: Schedule | None = Field(description="Sessions from now on; null when the new level is referred out.")
    skipped_meetings: list[str] = Field(default_factory=list, description=SKIPPED_MEETINGS)


class ScheduleChanged(EventData):
    """The calendar changed at the same level: a custom calendar, a place in a group from the waitlist, a
    group of another track, an appointment booked or cancelled. Sessions before then stay."""

    event_type: ClassVar[str] = "iop.schedule.changed"

    level: CareLevel
    changed_at: AwareDatetime
    schedule: Schedule = Field(description="The whole calendar: the sessions kept and the new ones.")
    reason: ScheduleChangeReason = Field(default="custom_calendar", description="What changed it.")
    skipped_meetings: list[str] = Field(default_factory=list, description=SKIPPED_MEETINGS)


class GroupWaitlisted(EventData):
    """No program group of the episode's level and track (that takes its program) had room: the plan waits for
    a place (the care team is told); ``iop.schedule.changed`` with reason ``joined_group`` follows when one frees
    up. With no ``group_ids``, the policy has no such group: the plan waits until one is added."""

    event_type: ClassVar[str] = "iop.group.waitlisted"

    level: CareLevel
    track: Track
    program: Program
    group_ids: list[str] = Field(description="The groups it waits for, all full; empty when there is none.")
    position: int = Field(ge=1, description="Its place on the waitlist when it joined it.")
    waitlisted_at: AwareDatetime


class ServiceDelivered(EventData):
    """A session was attended (or attended late): one billable service, coded by the clinic's policy.

    A correction of attendance publishes the same ``service_id`` again with the next ``revision``; a
    service whose attendance was corrected to a miss is published with status ``voided``. Readers keep
    the highest revision of each (episode, service_id)."""

    event_type: ClassVar[str] = "iop.service.delivered"

    service_id: str = Field(description="Stable per episode: the session id.")
    revision: int = Field(ge=1)
    status: Literal["delivered", "voided"]
    session_id: str
    kind: SessionKind
    group_id: str | None
    service_date: date = Field(description="The session's local date.")
    minutes: int = Field(ge=0)
    code: str | None = Field(examples=["90853"], description="The billing code; null when no code's minimum was met.")
    units: int = Field(ge=0)
    level: CareLevel = Field(description="The episode's level when the session took place.")
    attendance: Literal["attended", "late", "missed", "excused"]
    recorded_at: AwareDatetime


class ServiceDayCompleted(EventData):
    """Every session of an episode's day has a record: the day's services roll up (a per-diem claim).

    ``services`` counts the services delivered that day (payers such as Medicare tell days with 3 services
    from days with 4 or more). A correction publishes the same day again with the next ``revision``."""

    event_type: ClassVar[str] = "iop.service_day.completed"

    service_date: date
    revision: int = Field(ge=1)
    level: CareLevel
    services: int = Field(ge=0)
    minutes: int = Field(ge=0)
    service_ids: list[str]
    per_diem_code: str | None = Field(
        examples=["H0015"], description="The level's per-diem code; null when the day fell short of its minimum."
    )
    completed_at: AwareDatetime


class AttendanceRuleTriggered(EventData):
    """A missed-session rule of the clinic's policy fired (outreach, attendance contract, reviews)."""

    event_type: ClassVar[str] = "iop.attendance.rule_triggered"

    rule_code: str
    action: Literal["outreach", "attendance_contract", "care_team_review", "discharge_review"]
    session_id: str
    consecutive_misses: int
    misses_in_window: int
    rationale: list[Reason]
    policy_version: str
    triggered_at: AwareDatetime


class UtilizationBelowMinimum(EventData):
    """A week's attended hours fell below the level's minimum (pro-rated for partial weeks)."""

    event_type: ClassVar[str] = "iop.utilization.below_minimum"

    week_start: date
    level: CareLevel
    hours_attended: float
    minimum_hours: float
    hours_by_kind: dict[str, float] = Field(
        default_factory=dict,
        examples=[{"group": 6.0, "individual": 1.0}],
        description="Hours attended, by session kind.",
    )


class EpisodeGraduated(EventData):
    """The episode completed its plan (or a clinician graduated it): timers and calendar end."""

    event_type: ClassVar[str] = "iop.episode.graduated"

    graduated_at: AwareDatetime
    level: CareLevel
    by: Literal["completion", "clinician"]


DischargeReason = Literal["against_advice", "non_attendance", "transfer", "referred_out", "administrative", "other"]


class EpisodeDischarged(EventData):
    """The episode ended without graduation: timers and calendar end."""

    event_type: ClassVar[str] = "iop.episode.discharged"

    discharged_at: AwareDatetime
    level: CareLevel
    reason_code: DischargeReason


class MeasureWindow(EventData):
    """Base of a due measure's events: which instruments are due, why, and the window they are due in."""

    due_id: str = Field(description="uuid5 of the episode, the instrument set, the reason and the window start.")
    instruments: list[str] = Field(examples=[["phq9", "gad7"]], min_length=1)
    reason: MeasureReason
    window_opens_at: AwareDatetime
    window_closes_at: AwareDatetime


class MeasureDue(MeasureWindow):
    """A measure's window opened: the patient is asked to answer the instruments before it closes."""

    event_type: ClassVar[str] = "iop.measure.due"


class MeasureOverdue(MeasureWindow):
    """A due measure's window closed without the instruments recorded in it."""

    event_type: ClassVar[str] = "iop.measure.overdue"


class NotificationOutcome(EventData):
    """Base of delivery outcomes: which logical notification, to which kind of recipient, never the content."""

    notification_id: str
    purpose: str = Field(examples=["welcome", "missed_session_outreach"])
    recipient_kind: RecipientKind
    channel: Channel
    attempts: int = Field(ge=1)


class NotificationSent(NotificationOutcome):
    """A notification was accepted by its channel (the SMTP server, the SMS provider, the webhook)."""

    event_type: ClassVar[str] = "iop.notification.sent"

    sent_at: AwareDatetime


class NotificationFailed(NotificationOutcome):
    """A notification will not be delivered: a permanent refusal, or retries exhausted."""

    event_type: ClassVar[str] = "iop.notification.failed"

    failed_at: AwareDatetime
    reason_code: Literal["permanent", "retries_exhausted"]


class AlumniEnrolled(EventData):
    """A graduate joined the alumni group under a consent naming it: welcome, meetings and check-ins follow."""

    event_type: ClassVar[str] = "iop.alumni.enrolled"

    consent_id: str
    graduated_at: AwareDatetime
    enrolled_at: AwareDatetime
    check_in_days: list[int] = Field(examples=[[7, 30, 60, 90]], description="Check-ins, in days after graduation.")


class AlumniLeft(EventData):
    """A graduate's alumni enrolment ended: no further alumni messages."""

    event_type: ClassVar[str] = "iop.alumni.left"

    left_at: AwareDatetime
    reason_code: Literal["opted_out", "new_episode", "consent_withdrawn"]


class SheetEntry(Part):
    """One member's line on a group session's attendance sheet."""

    episode_id: str = Field(min_length=1)
    status: Literal["attended", "late", "missed", "excused"]
    notice_given_at: AwareDatetime | None = Field(
        default=None, description="For an excused absence: when the patient gave notice."
    )
    minutes: int | None = Field(default=None, ge=0, le=720, description="Minutes attended, when not the whole session.")


ATTENDANCE_V1: dict[str, JsonValue] = {
    "title": "version 1: one episode's session",
    "properties": {
        "schema_version": {"const": 1},
        "episode_id": {"type": "string", "minLength": 1},
        "status": {"type": "string"},
        "group_id": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 0}]},
        "attendance": {"type": "array", "maxItems": 0},
    },
    "required": ["episode_id", "status"],
}
ATTENDANCE_V2: dict[str, JsonValue] = {
    "title": "version 2: a group session's sheet",
    "properties": {
        "schema_version": {"const": 2},
        "episode_id": {"type": "string", "maxLength": 0},
        "status": {"type": "null"},
        "group_id": {"type": "string", "minLength": 1},
        "attendance": {"type": "array", "minItems": 1},
    },
    "required": ["schema_version", "group_id", "attendance"],
}


class AttendanceReported(EventData):
    """A command from another clinic system (EHR, scheduling, front desk): attendance to record.

    Version 1 reports one episode's session: keyed by the episode. Version 2 is a group session's whole
    sheet (``group_id``, ``session_id``, ``attendance``): keyed by ``{group_id}/{session_id}`` (its
    ``ce_subject``), with no ``episode_id``. care_plan applies each line through the member's plan as the
    attendance API does; lines it cannot apply (no care plan, unknown session, not a member, recorded
    differently) are set aside with their reasons while the others are stored.
    """

    event_type: ClassVar[str] = "iop.attendance.reported"
    # The rule of ``_one_shape`` below, as JSON Schema (one branch per version): a producer in another language
    # that validates against it sends nothing that is set aside for its shape (tests/contract, ajv).
    model_config = ConfigDict(json_schema_extra={"oneOf": [ATTENDANCE_V1, ATTENDANCE_V2]})

    schema_version: Literal[1, 2] = Field(  # type: ignore[assignment]
        default=1, description="1: one episode's session; 2: a group session's sheet."
    )
    episode_id: str = Field(default="", description="Version 1: the episode. Empty in a sheet (version 2).")
    session_id: str
    status: Literal["attended", "late", "missed", "excused"] | None = Field(default=None, description="Version 1.")
    notice_given_at: AwareDatetime | None = Field(
        default=None, description="Version 1, for an excused absence: when the patient gave notice."
    )
    minutes: int | None = Field(default=None, ge=0, le=720, description="Version 1: minutes attended, if not all.")
    group_id: str | None = Field(default=None, description="Version 2: the group whose session the sheet records.")
    attendance: list[SheetEntry] = Field(default_factory=list, description="Version 2: one line per member.")
    reported_at: AwareDatetime

    @model_validator(mode="after")
    def _one_shape(self) -> AttendanceReported:
        if self.schema_version == 1:
            if not self.episode_id or self.status is None:
                raise ValueError("version 1 needs episode_id and status")
            if self.group_id or self.attendance:
                raise ValueError("group_id and attendance belong to a sheet: set schema_version 2")
        elif not self.group_id or not self.attendance or self.episode_id or self.status is not None:
            raise ValueError("a sheet (version 2) needs group_id and attendance, and no episode_id or status")
        return self

    @property
    def subject(self) -> str:
        return self.episode_id if self.schema_version == 1 else f"{self.group_id}/{self.session_id}"


# --- issue 27: the care team (care_plan) -------------------------------------------------------------------------


class CareTeamChanged(EventData):
    """An episode's primary clinician was assigned or changed. Names the clinician by the identity provider's
    pseudonymous subject only (the display name stays in care_plan): a worklist's "my caseload" is the episodes
    whose primary clinician is the caller."""

    event_type: ClassVar[str] = "iop.care_team.changed"

    primary_clinician: str = Field(description="The staff member's subject (`sub`) at the clinic's identity provider.")
    changed_at: AwareDatetime


COMMAND_TYPES: dict[str, type[EventData]] = {AttendanceReported.event_type: AttendanceReported}
"""Commands other systems publish for Stepwise to apply, by type (= topic)."""

PUBLISHED_BY: dict[str, tuple[type[EventData], ...]] = {
    "intake": (AssessmentCompleted, SafetyAlertRaised, DrugScreenRecorded, ConsentChanged, MeasureRecorded),
    "care_plan": (
        CareLevelAssigned,
        SessionMissed,
        AttendanceRuleTriggered,
        UtilizationBelowMinimum,
        StepUpRecommended,
        StepDownRecommended,
        CareLevelChanged,
        ScheduleChanged,
        GroupWaitlisted,
        ServiceDelivered,
        ServiceDayCompleted,
        EpisodeGraduated,
        EpisodeDischarged,
        MeasureDue,
        MeasureOverdue,
        CareTeamChanged,
    ),
    "notifications": (
        NotificationSent,
        NotificationFailed,
        AlumniEnrolled,
        AlumniLeft,
        SafetyAlertAcknowledged,
        SafetyAlertEscalated,
    ),
}
"""Who publishes what: each event type is published by one service, named here as its broker names it."""

EVENT_TYPES: dict[str, type[EventData]] = {
    model.event_type: model for models in PUBLISHED_BY.values() for model in models
}
"""Every event type Stepwise publishes, by type (= topic)."""


# --- issue 25: the treatment plan (begin) -----------------------------------------------------------------------
# Ids, versions and dates only: the plan's text (problems, goals, objectives, interventions) never leaves care_plan.

PlanReviewReason = Literal["periodic", "level_change", "reliable_deterioration", "safety_alert", "planned_discharge"]
"""Why a treatment plan's review is due: the level's review interval passed, or, at once, a level change, a measure
showing a reliable deterioration, an immediate safety alert, or the planned discharge drawing near."""


class TreatmentPlanSigned(EventData):
    """A clinician signed a version of the episode's treatment plan: it is the plan in force (never who, nor any
    text); signing counts as a review, so the next one is due on ``review_due_on``."""

    event_type: ClassVar[str] = "iop.treatment_plan.signed"

    version: int = Field(ge=1)
    supersedes_version: int | None = Field(default=None, description="The version in force before, if one was.")
    signed_at: AwareDatetime
    review_due_on: date | None = Field(
        description="The clinic's local day the next periodic review is due; null when the level has no interval."
    )


class TreatmentPlanReview(EventData):
    """Base of a treatment plan's review events: which review, why, of which signed version, and by when."""

    review_id: str = Field(description="uuid5 of the episode, the reason and what set it off.")
    reason: PlanReviewReason
    trigger_id: str | None = Field(
        default=None, description="The measure_id or alert_id that set it off, when one did (an id, never content)."
    )
    version: int = Field(ge=1, description="The signed version under review.")
    due_on: date = Field(description="The clinic's local day it is due (moved off closures and closed weekdays).")
    overdue_at: AwareDatetime = Field(description="Still not reviewed at this moment: overdue.")


class TreatmentPlanReviewDue(TreatmentPlanReview):
    """A review of the treatment plan is due: the interval is near its end, or something set one off at once."""

    event_type: ClassVar[str] = "iop.treatment_plan.review_due"


class TreatmentPlanReviewOverdue(TreatmentPlanReview):
    """A due review of the treatment plan was not recorded by ``overdue_at``."""

    event_type: ClassVar[str] = "iop.treatment_plan.review_overdue"


TREATMENT_PLAN_EVENTS: tuple[type[EventData], ...] = (
    TreatmentPlanSigned,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewOverdue,
)
PUBLISHED_BY["care_plan"] = (*PUBLISHED_BY["care_plan"], *TREATMENT_PLAN_EVENTS)
EVENT_TYPES.update({model.event_type: model for model in TREATMENT_PLAN_EVENTS})
# --- issue 25: the treatment plan (end) -------------------------------------------------------------------------
# --- utilization review (issue 26): published by the authorizations service ------------------------------------
# Appended as a block, registered under "authorizations" in PUBLISHED_BY and in EVENT_TYPES below. None carries the
# payer's authorization number: it stays in the authorizations service's database.

AuthorizationUnit = Literal["day", "session", "hour"]
"""What a payer counts: days (a per-diem day, ``iop.service_day.completed``), sessions or hours
(``iop.service.delivered``)."""
AuthorizationStatus = Literal["requested", "pending", "approved", "partially_approved", "denied", "appealed", "expired"]
ReviewType = Literal["initial", "concurrent", "peer_to_peer", "appeal", "expedited_appeal"]
ReviewReason = Literal["next_review", "end_date", "last_covered_day", "exhaustion"]
"""Why a review is due: the date it is counted back from (the earliest of the four)."""
UnauthorizedReason = Literal["outside_dates", "wrong_level", "code_not_covered", "not_approved", "no_units_left"]
"""Why no approved authorization covers a service or a day: none of its dates, none of its level (a step-up), none
naming its code, none approved yet, or none with units left."""


class AuthorizationChanged(EventData):
    """An authorization was recorded or revised, or its draw-down or projection moved (never the payer's number)."""

    event_type: ClassVar[str] = "iop.authorization.changed"

    authorization_id: str
    revision: int = Field(ge=1, description="The authorization's revision: each change a person makes adds one.")
    payer: str = Field(examples=["medicare"], description="The payer's id in the clinic's payer policy.")
    level: CareLevel
    unit: AuthorizationUnit
    units_authorized: float | None = Field(description="Null: a migrated record without a count of units.")
    units_used: float
    units_remaining: float | None
    start_date: date
    end_date: date
    status: AuthorizationStatus
    review_type: ReviewType
    next_review_on: date | None
    last_covered_day: date | None
    projected_exhaustion_on: date | None = Field(description="The day the units run out if every session is attended.")
    review_due_on: date | None
    review_reason: ReviewReason | None
    changed_at: AwareDatetime


class AuthorizationReviewDue(EventData):
    """A concurrent review is due with the payer now: the earliest of the authorization's dates less the lead."""

    event_type: ClassVar[str] = "iop.authorization.review_due"

    authorization_id: str
    payer: str
    level: CareLevel
    review_due_on: date
    reason: ReviewReason
    deadline: date = Field(description="The date the review is counted back from (the one ``reason`` names).")
    units_remaining: float | None
    detected_at: AwareDatetime


class AuthorizationUnitsLow(EventData):
    """Fewer units remain than the calendar schedules in the next ``UNITS_LOW_DAYS`` days."""

    event_type: ClassVar[str] = "iop.authorization.units_low"

    authorization_id: str
    payer: str
    level: CareLevel
    unit: AuthorizationUnit
    units_remaining: float
    units_scheduled: float = Field(description="Units the calendar schedules in the next days.")
    days: int = Field(description="How many days ahead ``units_scheduled`` counts.")
    projected_exhaustion_on: date | None
    detected_at: AwareDatetime


class AuthorizationExhausted(EventData):
    """Every unit of an approved authorization is used."""

    event_type: ClassVar[str] = "iop.authorization.exhausted"

    authorization_id: str
    payer: str
    level: CareLevel
    unit: AuthorizationUnit
    units_authorized: float
    exhausted_on: date = Field(description="The date of the service or day that used the last unit.")
    detected_at: AwareDatetime


class ServiceUnauthorized(EventData):
    """A service or a day that no approved authorization covers, before anyone builds a claim for it."""

    event_type: ClassVar[str] = "iop.service.unauthorized"

    item: Literal["day", "service"]
    service_id: str | None = Field(description="The service's id; null for a day.")
    revision: int = Field(ge=1, description="The revision of the service or day that is not covered.")
    service_date: date
    level: CareLevel
    code: str
    unit: AuthorizationUnit
    reason: UnauthorizedReason
    detected_at: AwareDatetime


class AuthorizationLevelMismatch(EventData):
    """The episode's clinical level differs from the level its current authorization approves."""

    event_type: ClassVar[str] = "iop.authorization.level_mismatch"

    authorization_id: str
    clinical_level: CareLevel
    authorized_level: CareLevel
    detected_at: AwareDatetime


class CertificationDue(EventData):
    """A payer's rule asks for a physician's (re)certification of need, and the next is due (e.g. Medicare IOP:
    at least 9 hours a week, recertified at least every other month)."""

    event_type: ClassVar[str] = "iop.certification.due"

    payer: str
    due_on: date
    reason: Literal["initial", "recertification"]
    last_certified_on: date | None
    min_hours_per_week: float
    detected_at: AwareDatetime


PUBLISHED_BY["authorizations"] = (
    AuthorizationChanged,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    AuthorizationExhausted,
    ServiceUnauthorized,
    AuthorizationLevelMismatch,
    CertificationDue,
)
EVENT_TYPES.update({model.event_type: model for model in PUBLISHED_BY["authorizations"]})


# --- settling reviews and certifications (begin): a review recorded without a signing, a certification recorded --
# Ids, versions, dates and hours only: never who reviewed or certified, nor any text.

PlanReviewOutcome = Literal["continued", "revised"]
"""What a clinician's review of the plan in force found: the plan continues as it is, or it is to be revised."""


class TreatmentPlanReviewed(EventData):
    """A clinician recorded a review of the plan in force without signing a new version: the reviews it named are
    done, and the next periodic one is due on ``review_due_on`` (never who, nor any text)."""

    event_type: ClassVar[str] = "iop.treatment_plan.reviewed"

    settled_review_ids: list[str] = Field(
        description="The review_id of every review (review_due/review_overdue) this review settled; may be empty."
    )
    version: int = Field(ge=1, description="The signed version reviewed (the plan in force).")
    outcome: PlanReviewOutcome
    reviewed_at: AwareDatetime
    review_due_on: date | None = Field(
        description="The clinic's local day the next periodic review is due; null when the level has no interval."
    )


class CertificationRecorded(EventData):
    """A physician's certification of need was recorded, said for each payer of the episode whose rules ask for
    one, with when that payer's next is due (a certification of fewer hours than the payer asks leaves it due)."""

    event_type: ClassVar[str] = "iop.certification.recorded"

    certification_id: str
    payer: str
    certified_on: date
    hours_per_week: float
    min_hours_per_week: float = Field(description="The hours a week the payer's rule asks for.")
    next_due_on: date = Field(description="When the payer's next certification is due, this one counted.")
    recorded_at: AwareDatetime


PUBLISHED_BY["care_plan"] = (*PUBLISHED_BY["care_plan"], TreatmentPlanReviewed)
PUBLISHED_BY["authorizations"] = (*PUBLISHED_BY["authorizations"], CertificationRecorded)
EVENT_TYPES.update({model.event_type: model for model in (TreatmentPlanReviewed, CertificationRecorded)})
# --- settling reviews and certifications (end) ------------------------------------------------------------------
