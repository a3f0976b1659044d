"""Data schemas of every event Stepwise publishes. Topic name = event type.

Ids are pseudonymous UUIDs (random, or derived from what they name). No event carries a name, contact data, birth date,
address, diagnosis text or free-text note: the fact that a person is a patient is protected.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

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


class AttendanceReported(EventData):
    """A command from another clinic system (EHR, scheduling, front desk): attendance to record.

    Version 1 reports one episode's session: keyed by the episode. Version 2 is a group session's whole
    sheet (``group_id``, ``session_id``, ``attendance``): keyed by ``{group_id}/{session_id}`` (its
    ``ce_subject``), with no ``episode_id``. care_plan applies each line through the member's plan as the
    attendance API does; lines it cannot apply (no care plan, unknown session, not a member, recorded
    differently) are set aside with their reasons while the others are stored.
    """

    event_type: ClassVar[str] = "iop.attendance.reported"

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
