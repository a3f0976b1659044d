"""The caseload's projection of one episode: what the events said about it, merged by time and meaning (pure)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, PlainSerializer

from services.common.utc import assume_utc
from stepwise_contract import ScheduledSession

PROJECTION_VERSION = 4
"""Bump when what the projection keeps, or how an event is applied, changes: the service rebuilds it from the
topics at its next start (``services/caseload/rebuild.py``). 2: treatment-plan reviews and authorizations. 4: each
episode's period of care, which the census finds episodes by."""

Day = Annotated[date, PlainSerializer(lambda day: day.isoformat(), return_type=str)]
"""A day, kept as ISO text: BSON has no date without a time of day."""


def stored_precision(moment: datetime) -> datetime:
    """``moment`` to the millisecond, as MongoDB keeps a date: a projection applied live (read back from the store
    before each event) and one rebuilt in memory then compare and order times alike."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Stamped(BaseModel):
    """A value and the time of the event that set it: an older event arriving later does not overwrite it."""

    value: Any = None
    at: datetime | None = None


class Alert(BaseModel):
    alert_id: str
    level: str | None = None
    reasons: list[str] = []
    raised_at: datetime | None = None
    """None while only its acknowledgement arrived (the topics are apart: an acknowledgement may come first)."""
    acknowledged_at: datetime | None = None
    escalated_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.raised_at is not None and self.acknowledged_at is None


class Recommendation(BaseModel):
    recommendation_id: str
    direction: str
    from_level: str
    to_level: str
    recommended_at: datetime
    refer_out: bool = False
    supersedes: str | None = None


class Attendance(BaseModel):
    """A session's record, the latest by when it was recorded (a correction wins)."""

    session_id: str
    status: str
    starts_at: datetime | None = None
    recorded_at: datetime
    revision: int = 0


class DueMeasure(BaseModel):
    due_id: str
    instruments: list[str]
    reason: str
    window_opens_at: datetime
    window_closes_at: datetime
    state: str = "due"
    """due, overdue or done."""


class Score(BaseModel):
    instrument: str
    score: int
    band: str
    classification: str
    recorded_at: datetime


class Recorded(BaseModel):
    """A measure recorded: what it answers for (a due measure whose window holds it is done)."""

    recorded_at: datetime
    instruments: list[str]


class FailedMessage(BaseModel):
    notification_id: str
    purpose: str
    recipient_kind: str
    channel: str
    failed_at: datetime
    reason_code: str


class Movement(BaseModel):
    """An admission, a step up or down, a graduation or a discharge, for the census."""

    kind: str
    at: datetime
    level: str | None = None


class PlanReview(BaseModel):
    """A treatment-plan review care_plan holds the episode due for (``iop.treatment_plan.review_due``/``_overdue``)."""

    review_id: str
    reason: str
    trigger_id: str | None = None
    version: int
    """The signed version under review: signing a later version settles it."""
    due_on: Day
    overdue_at: datetime
    overdue: bool = False


class TreatmentPlanState(BaseModel):
    signed_version: int | None = None
    """The latest version signed (the plan in force)."""
    signed_at: datetime | None = None
    review_due_on: Day | None = None
    """The next periodic review's day, as the latest signing set it."""
    reviews: dict[str, PlanReview] = {}
    """Every review held, by id; which are still open is read from them all (``domain/reviews.py``)."""
    settled: list[str] = []
    """The reviews a recorded review settled (``iop.treatment_plan.reviewed``), seen held or not yet."""
    reviewed_at: datetime | None = None
    """The latest review recorded without a signing."""
    reviewed_due_on: Day | None = None
    """The next periodic review's day, as that review set it."""


class Terms(BaseModel):
    """An authorization as its latest ``iop.authorization.changed`` said it (never the payer's number)."""

    revision: int
    payer: str
    level: str
    status: str
    unit: str
    units_authorized: float | None
    units_used: float
    units_remaining: float | None
    start_date: Day
    end_date: Day
    projected_exhaustion_on: Day | None
    review_due_on: Day | None
    review_reason: str | None
    changed_at: datetime


class Said(BaseModel):
    """A signal the authorizations service says once per revision of an authorization (a review due, units low,
    exhausted): the day it is about and when it was said."""

    on: Day
    detected_at: datetime
    reason: str | None = None
    units_remaining: float | None = None
    units_scheduled: float | None = None


class AuthorizationState(BaseModel):
    authorization_id: str
    terms: Terms | None = None
    revision: int = 0
    """The highest revision seen: a person changed the authorization (a review, a decision) that many times."""
    revised_at: datetime | None = None
    """When that revision was first published: a signal said before it was said of an older revision."""
    review_due: Said | None = None
    units_low: Said | None = None
    exhausted: Said | None = None


class Unauthorized(BaseModel):
    """A service or a day no approved authorization covers (``iop.service.unauthorized``), its latest revision."""

    item: str
    service_id: str | None = None
    revision: int
    service_date: Day
    level: str
    code: str
    unit: str
    reason: str
    detected_at: datetime


class Mismatch(BaseModel):
    authorization_id: str
    clinical_level: str
    authorized_level: str
    detected_at: datetime


class Certification(BaseModel):
    """A physician's (re)certification a payer's rule asks for, as last said due (``iop.certification.due``)."""

    payer: str
    due_on: Day
    reason: str
    last_certified_on: Day | None = None
    detected_at: datetime


class Coverage(BaseModel):
    """What the authorizations service said of the episode; what of it needs the desk is read from it all."""

    authorizations: dict[str, AuthorizationState] = {}
    unauthorized: dict[str, Unauthorized] = {}
    """By item, its id or day, and unit."""
    delivered: dict[str, int] = {}
    """The highest revision of each service (``service|id``) and day (``day|date``) care_plan published: a later
    revision of an unauthorized one replaces it (said again if still not covered, not if voided)."""
    mismatch: Mismatch | None = None
    """The latest level mismatch said."""
    certifications: dict[str, Certification] = {}
    """By payer, the latest due date said."""
    certified: dict[str, Day] = {}
    """By payer, the latest next due date a recorded certification said (``iop.certification.recorded``): a
    certification due before it is settled."""


class TimelineEntry(BaseModel):
    key: str
    """The event's source#id: what makes it unique (a redelivery is recognised by it)."""
    type: str
    time: datetime
    summary: str


class EpisodeView(BaseModel):
    episode_id: str
    program: Stamped = Stamped()
    track: Stamped = Stamped()
    level: Stamped = Stamped()
    authorized_level: Stamped = Stamped()
    status: Stamped = Stamped()
    """assessed, active, waitlisted, referred_out, graduated, discharged."""
    primary_clinician: Stamped = Stamped()
    sessions: Stamped = Stamped(value=[])
    """The calendar (a list of ScheduledSession as JSON), from the latest event that carried one."""
    group_id: Stamped = Stamped()
    attendance: dict[str, Attendance] = {}
    alerts: dict[str, Alert] = {}
    recommendation: Recommendation | None = None
    decided: list[str] = []
    """Recommendations decided or superseded: one arriving late stays closed."""
    measures: dict[str, DueMeasure] = {}
    recorded: list[Recorded] = []
    scores: dict[str, Score] = {}
    failed_messages: list[FailedMessage] = []
    delivered_messages: list[str] = []
    """Notifications sent after all (a retry that succeeded): not failed any more."""
    treatment_plan: TreatmentPlanState = TreatmentPlanState()
    coverage: Coverage = Coverage()
    movements: list[Movement] = []
    timeline: list[TimelineEntry] = []

    def calendar(self) -> list[ScheduledSession]:
        return [ScheduledSession.model_validate(session) for session in self.sessions.value or []]

    def session_starts(self) -> list[datetime]:
        """When each session of the calendar begins: what every write of the projection reads (``session_days``),
        without making the sessions (they are kept as the event's JSON gave them, ``on_assigned``)."""
        return [assume_utc(session["starts_at"]) for session in self.sessions.value or []]

    @property
    def applied(self) -> set[str]:
        return {entry.key for entry in self.timeline}


def local_day(moment: datetime, zone: Any) -> date:
    return moment.astimezone(zone).date()
