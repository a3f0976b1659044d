"""Applying an event to an episode's projection (pure): one projector per event type, in ``PROJECTORS``.

The events of an episode come on many topics (one per type), so they may arrive in any order across topics: an
acknowledgement before its alert, a decision before its recommendation. Each projector merges by the time the
event says and by what it means, so the projection is the same whatever the order (tests/unit/caseload):
- a value (level, status, calendar, clinician) keeps the one of the latest event (``Stamped``);
- an ended episode stays ended; a decided or superseded recommendation stays closed;
- an alert is open while raised and not acknowledged, whichever came first;
- a session's record is the latest recorded (a correction wins), a due measure is done once recorded in its window.
An event seen before (its ``source#id``) changes nothing. A type without a projector goes to the timeline only.
Treatment-plan reviews and authorizations have theirs in ``reviews.py``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import datetime
from typing import Any

from stepwise_contract import (
    EVENT_TYPES,
    AssessmentCompleted,
    AuthorizationChanged,
    AuthorizationExhausted,
    AuthorizationLevelMismatch,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    CareLevelAssigned,
    CareLevelChanged,
    CareTeamChanged,
    CertificationDue,
    CertificationRecorded,
    CloudEvent,
    EpisodeDischarged,
    EpisodeGraduated,
    GroupWaitlisted,
    MeasureDue,
    MeasureOverdue,
    MeasureRecorded,
    NotificationFailed,
    SafetyAlertAcknowledged,
    SafetyAlertEscalated,
    SafetyAlertRaised,
    Schedule,
    ScheduleChanged,
    ServiceDayCompleted,
    ServiceDelivered,
    ServiceUnauthorized,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewed,
    TreatmentPlanReviewOverdue,
    TreatmentPlanSigned,
)

from .model import (
    Alert,
    Attendance,
    DueMeasure,
    EpisodeView,
    FailedMessage,
    Movement,
    Recommendation,
    Recorded,
    Score,
    Stamped,
    TimelineEntry,
    stored_precision,
)
from .reviews import (
    delivered,
    item_key,
    on_authorization_changed,
    on_authorization_review_due,
    on_certification_due,
    on_certification_recorded,
    on_exhausted,
    on_level_mismatch,
    on_plan_review,
    on_plan_reviewed,
    on_plan_signed,
    on_unauthorized,
    on_units_low,
)
from .summaries import summary

ENDED = ("graduated", "discharged")

Projector = Callable[[EpisodeView, Any], None]
"""Changes the (copied) view by one event's data; ``Any``: the event's own data model."""


def apply(view: EpisodeView | None, event: CloudEvent[Any], *, in_place: bool = False) -> EpisodeView | None:
    """The view with ``event`` applied; None when it was applied before (nothing to store). ``in_place``: change
    ``view`` itself (its caller holds the only reference: a rebuild, or the store's view made for this event)
    instead of a copy."""
    current = view or EpisodeView(episode_id=event.subject)
    key = event.dedup_key
    if any(entry.key == key for entry in current.timeline):
        return None
    updated = current if in_place else current.model_copy(deep=True)
    entry = TimelineEntry(key=key, type=event.type, time=stored_precision(event.time), summary=summary(event.data))
    bisect.insort(updated.timeline, entry, key=timeline_order)
    projector = PROJECTORS.get(event.type)
    if projector is not None:
        projector(updated, event.data)
    return updated


SAME_MOMENT_ORDER = {event_type: rank for rank, event_type in enumerate(EVENT_TYPES)}
"""Events of the same millisecond (one write publishes an assessment and its measure) in the contract's order,
which follows the episode's flow: the assessment before what it gave rise to."""


def timeline_order(entry: TimelineEntry) -> tuple[datetime, int, str]:
    return entry.time, SAME_MOMENT_ORDER.get(entry.type, len(SAME_MOMENT_ORDER)), entry.key


def later(current: Stamped, value: Any, at: datetime) -> Stamped:
    """``value`` if its event is not older than the one that set ``current`` (to the millisecond)."""
    at = stored_precision(at)
    return Stamped(value=value, at=at) if current.at is None or at >= current.at else current


def _status(view: EpisodeView, status: str, at: datetime) -> None:
    """An ended episode stays ended: a late event of its active days does not reopen it."""
    if view.status.value not in ENDED:
        view.status = later(view.status, status, at)


def _calendar(view: EpisodeView, schedule: Schedule | None, at: datetime) -> None:
    sessions = [] if schedule is None else [session.model_dump(mode="json") for session in schedule.sessions]
    view.sessions = later(view.sessions, sessions, at)
    groups = [session.group_id for session in (schedule.sessions if schedule else []) if session.group_id]
    view.group_id = later(view.group_id, groups[-1] if groups else None, at)
    if schedule is not None:
        view.track = later(view.track, schedule.track, at)


def on_assessment(view: EpisodeView, data: AssessmentCompleted) -> None:
    view.program = later(view.program, data.program, data.assessed_at)
    if data.track is not None:
        view.track = later(view.track, data.track, data.assessed_at)
    if view.status.value is None:
        view.status = Stamped(value="assessed", at=None)  # any later fact replaces it


def on_assigned(view: EpisodeView, data: CareLevelAssigned) -> None:
    view.level = later(view.level, data.level, data.assigned_at)
    _status(view, data.status, data.assigned_at)
    _calendar(view, data.schedule, data.assigned_at)
    kind = "admission" if data.status == "active" else "referred_out"
    _move(view, Movement(kind=kind, at=data.assigned_at, level=data.level))


def on_level_changed(view: EpisodeView, data: CareLevelChanged) -> None:
    view.level = later(view.level, data.to_level, data.changed_at)
    _status(view, data.status, data.changed_at)
    _calendar(view, data.schedule, data.changed_at)
    _decided(view, data.recommendation_id)
    _move(view, Movement(kind=f"step_{data.direction}", at=data.changed_at, level=data.to_level))


def on_schedule_changed(view: EpisodeView, data: ScheduleChanged) -> None:
    view.level = later(view.level, data.level, data.changed_at)
    _calendar(view, data.schedule, data.changed_at)
    if data.reason == "joined_group":
        _status(view, "active", data.changed_at)


def on_waitlisted(view: EpisodeView, data: GroupWaitlisted) -> None:
    view.level = later(view.level, data.level, data.waitlisted_at)
    view.program = later(view.program, data.program, data.waitlisted_at)
    view.track = later(view.track, data.track, data.waitlisted_at)
    _status(view, "waitlisted", data.waitlisted_at)


def on_ended(view: EpisodeView, data: EpisodeGraduated | EpisodeDischarged) -> None:
    graduated = isinstance(data, EpisodeGraduated)
    at = data.graduated_at if isinstance(data, EpisodeGraduated) else data.discharged_at
    ended = "graduated" if graduated else "discharged"
    if view.status.value not in ENDED or view.status.at is None or at >= view.status.at:
        view.status = Stamped(value=ended, at=at)
    if view.recommendation is not None:
        _decided(view, view.recommendation.recommendation_id)
    _move(view, Movement(kind=ended, at=at, level=data.level))


def _move(view: EpisodeView, movement: Movement) -> None:
    view.movements = sorted([*view.movements, movement], key=lambda m: (m.at, m.kind))


def on_alert_raised(view: EpisodeView, data: SafetyAlertRaised) -> None:
    alert = view.alerts.get(data.alert_id) or Alert(alert_id=data.alert_id)
    view.alerts[data.alert_id] = alert.model_copy(
        update={"level": alert.level or data.level, "reasons": data.reasons, "raised_at": data.raised_at}
    )


def on_alert_acknowledged(view: EpisodeView, data: SafetyAlertAcknowledged) -> None:
    alert = view.alerts.get(data.alert_id) or Alert(alert_id=data.alert_id)
    view.alerts[data.alert_id] = alert.model_copy(update={"acknowledged_at": data.acknowledged_at})


def on_alert_escalated(view: EpisodeView, data: SafetyAlertEscalated) -> None:
    alert = view.alerts.get(data.alert_id) or Alert(alert_id=data.alert_id)
    view.alerts[data.alert_id] = alert.model_copy(update={"escalated_at": data.escalated_at, "level": data.level})


def on_recommended(view: EpisodeView, data: StepUpRecommended | StepDownRecommended) -> None:
    if data.supersedes:
        _decided(view, data.supersedes)
    if data.recommendation_id in view.decided:
        return
    current = view.recommendation
    if current is not None and current.recommended_at > data.recommended_at:
        _decided(view, data.recommendation_id)  # one newer is open: this one was superseded by it
        return
    if current is not None:
        view.decided = sorted({*view.decided, current.recommendation_id})
    direction = "up" if isinstance(data, StepUpRecommended) else "down"
    view.recommendation = Recommendation(
        recommendation_id=data.recommendation_id,
        direction=direction,
        from_level=data.from_level,
        to_level=data.to_level,
        recommended_at=data.recommended_at,
        refer_out=data.refer_out,
        supersedes=data.supersedes,
    )
    if view.status.value in ENDED:
        _decided(view, data.recommendation_id)


def _decided(view: EpisodeView, recommendation_id: str) -> None:
    view.decided = sorted({*view.decided, recommendation_id})
    if view.recommendation is not None and view.recommendation.recommendation_id == recommendation_id:
        view.recommendation = None


def _record(view: EpisodeView, record: Attendance) -> None:
    known = view.attendance.get(record.session_id)
    if known is None or (record.recorded_at, record.revision) >= (known.recorded_at, known.revision):
        view.attendance[record.session_id] = record


def on_missed(view: EpisodeView, data: SessionMissed) -> None:
    _record(
        view,
        Attendance(session_id=data.session_id, status="missed", starts_at=data.starts_at, recorded_at=data.recorded_at),
    )


def on_delivered(view: EpisodeView, data: ServiceDelivered) -> None:
    status = "missed" if data.status == "voided" else data.attendance
    starts = next((s.starts_at for s in view.calendar() if s.session_id == data.session_id), None)
    _record(
        view,
        Attendance(
            session_id=data.session_id,
            status=status,
            starts_at=starts,
            recorded_at=data.recorded_at,
            revision=data.revision,
        ),
    )
    delivered(view, item_key("service", data.service_id, data.service_date), data.revision)


def on_service_day(view: EpisodeView, data: ServiceDayCompleted) -> None:
    delivered(view, item_key("day", None, data.service_date), data.revision)


def on_measure_due(view: EpisodeView, data: MeasureDue | MeasureOverdue) -> None:
    known = view.measures.get(data.due_id)
    state = "overdue" if isinstance(data, MeasureOverdue) else "due"
    if known is not None and (known.state == "done" or (known.state == "overdue" and state == "due")):
        state = known.state
    due = DueMeasure(
        due_id=data.due_id,
        instruments=list(data.instruments),
        reason=data.reason,
        window_opens_at=data.window_opens_at,
        window_closes_at=data.window_closes_at,
        state=state,
    )
    view.measures[data.due_id] = _done_if_recorded(due, view.recorded)


def _done_if_recorded(due: DueMeasure, recorded: list[Recorded]) -> DueMeasure:
    answered: set[str] = set()
    for measure in recorded:
        if due.window_opens_at <= measure.recorded_at <= due.window_closes_at:
            answered.update(measure.instruments)
    return due.model_copy(update={"state": "done"}) if set(due.instruments) <= answered else due


def on_measure_recorded(view: EpisodeView, data: MeasureRecorded) -> None:
    measure = Recorded(recorded_at=data.recorded_at, instruments=sorted(i.instrument for i in data.instruments))
    view.recorded = sorted([*view.recorded, measure], key=lambda r: (r.recorded_at, r.instruments))
    for item in data.instruments:
        known = view.scores.get(item.instrument)
        if known is None or data.recorded_at >= known.recorded_at:
            view.scores[item.instrument] = Score(
                instrument=item.instrument,
                score=item.score,
                band=item.band,
                classification=item.classification,
                recorded_at=data.recorded_at,
            )
    view.measures = {due_id: _done_if_recorded(due, view.recorded) for due_id, due in view.measures.items()}


def on_notification_failed(view: EpisodeView, data: NotificationFailed) -> None:
    failed = FailedMessage(
        notification_id=data.notification_id,
        purpose=data.purpose,
        recipient_kind=data.recipient_kind,
        channel=data.channel,
        failed_at=data.failed_at,
        reason_code=data.reason_code,
    )
    view.failed_messages = sorted([*view.failed_messages, failed], key=lambda f: (f.failed_at, f.notification_id))


def on_care_team(view: EpisodeView, data: CareTeamChanged) -> None:
    view.primary_clinician = later(view.primary_clinician, data.primary_clinician, data.changed_at)


PROJECTORS: dict[str, Projector] = {
    AssessmentCompleted.event_type: on_assessment,
    CareLevelAssigned.event_type: on_assigned,
    CareLevelChanged.event_type: on_level_changed,
    ScheduleChanged.event_type: on_schedule_changed,
    GroupWaitlisted.event_type: on_waitlisted,
    EpisodeGraduated.event_type: on_ended,
    EpisodeDischarged.event_type: on_ended,
    SafetyAlertRaised.event_type: on_alert_raised,
    SafetyAlertAcknowledged.event_type: on_alert_acknowledged,
    SafetyAlertEscalated.event_type: on_alert_escalated,
    StepUpRecommended.event_type: on_recommended,
    StepDownRecommended.event_type: on_recommended,
    SessionMissed.event_type: on_missed,
    ServiceDelivered.event_type: on_delivered,
    MeasureDue.event_type: on_measure_due,
    MeasureOverdue.event_type: on_measure_due,
    MeasureRecorded.event_type: on_measure_recorded,
    NotificationFailed.event_type: on_notification_failed,
    CareTeamChanged.event_type: on_care_team,
    ServiceDayCompleted.event_type: on_service_day,
    TreatmentPlanSigned.event_type: on_plan_signed,
    TreatmentPlanReviewDue.event_type: on_plan_review,
    TreatmentPlanReviewOverdue.event_type: on_plan_review,
    AuthorizationChanged.event_type: on_authorization_changed,
    AuthorizationReviewDue.event_type: on_authorization_review_due,
    AuthorizationUnitsLow.event_type: on_units_low,
    AuthorizationExhausted.event_type: on_exhausted,
    ServiceUnauthorized.event_type: on_unauthorized,
    AuthorizationLevelMismatch.event_type: on_level_mismatch,
    CertificationDue.event_type: on_certification_due,
    TreatmentPlanReviewed.event_type: on_plan_reviewed,
    CertificationRecorded.event_type: on_certification_recorded,
}
"""What each event type changes beyond the timeline. Every other ``iop.*`` type (drug screens, consents, rule
firings, utilization, alumni, messages sent) is kept on the timeline only."""
