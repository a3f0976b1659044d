"""The caseload's projection of one episode: what the events said about it, merged by time and meaning (pure)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel

from stepwise_contract import ScheduledSession

PROJECTION_VERSION = 1
"""Bump when what the projection keeps, or how an event is applied, changes: the service rebuilds it from the
topics at its next start (``services/caseload/rebuild.py``)."""


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
    plan_review: dict[str, Any] | None = None
    """Treatment-plan review due (issue 25's events add their projector)."""
    authorization: dict[str, Any] | None = None
    """Authorization state and review due (issue 26's events add their projector)."""
    movements: list[Movement] = []
    timeline: list[TimelineEntry] = []

    def calendar(self) -> list[ScheduledSession]:
        return [ScheduledSession.model_validate(session) for session in self.sessions.value or []]

    @property
    def applied(self) -> set[str]:
        return {entry.key for entry in self.timeline}


def local_day(moment: datetime, zone: Any) -> date:
    return moment.astimezone(zone).date()
