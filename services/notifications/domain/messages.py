"""From care events to the notifications they cause, by the clinic's policy (pure: no I/O).

A notification's id is derived from what causes it (the event's source + id, or the alumni enrolment)
and what is sent to whom on which channel, so a redelivered event maps onto the notification that
exists already.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from services.common.ids import derived_id
from stepwise_contract import (
    ALUMNI,
    ALUMNI_GROUP,
    INSTRUMENTS,
    WEEKDAYS,
    AttendanceRuleTriggered,
    AuthorizationExhausted,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    CareLevelAssigned,
    CareLevelChanged,
    Channel,
    CloudEvent,
    ConsentRecipientKind,
    EpisodeDischarged,
    EpisodeGraduated,
    EventData,
    GroupWaitlisted,
    MeasureDue,
    MeasureRecorded,
    RecipientKind,
    SafetyAlertRaised,
    Schedule,
    ScheduleChanged,
    ServiceUnauthorized,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewOverdue,
)

from .policy import CHANNELS_FOR, AlumniProgram, Audience, MessageRule, NotificationPolicy, SessionReminders

NAMESPACE = uuid.UUID("6f1c2b0e-5d1a-4c8e-9a57-2f3d0c9e4b11")

SeriesKind = Literal["", "sessions", "alumni"]
Reachable = Mapping[Audience, frozenset[Channel]]
"""The channels the clinic configured, per audience (no SMS provider: no SMS)."""


def reachable(*, sms: bool, care_team_email: bool, care_team_webhook: bool) -> Reachable:
    """The channels each audience can be reached on, from what the clinic configured (known at start-up)."""
    people: frozenset[Channel] = CHANNELS_FOR["patient"] if sms else frozenset({"email"})
    configured: dict[Channel, bool] = {"email": care_team_email, "webhook": care_team_webhook}
    care_team = frozenset(channel for channel, on in configured.items() if on)
    return {"patient": people, "supports": people, "care_team": care_team, "ur_team": CHANNELS_FOR["ur_team"]}


@dataclass(frozen=True)
class Support:
    """A family member or designated support under a consent in force (from intake: no contact data)."""

    consent_id: str
    kind: ConsentRecipientKind


@dataclass(frozen=True)
class PlannedNotification:
    notification_id: str
    episode_id: str
    purpose: str
    """Also the template name."""
    recipient_kind: RecipientKind
    channel: Channel
    context: dict[str, Any] = field(default_factory=dict)
    """What the template needs: times and counts, never contact data."""
    urgent: bool = False
    """Safety messages to staff: never delayed or suppressed."""
    consent_id: str | None = None
    """For supports and alumni: the consent that allows the message (checked again at send time)."""
    not_before: datetime | None = None
    """Scheduled messages: not sent before this moment (None: at once)."""
    expires_at: datetime | None = None
    """Not worth sending from this moment (a reminder once its session has begun)."""
    series_kind: SeriesKind = ""
    series: str = ""
    """Scheduled messages that end together: the reminders of one schedule, or one graduate's alumni messages."""


def notification_id(*parts: object) -> str:
    return derived_id(NAMESPACE, *parts)


# What each event tells its templates. Events about a clinical judgement go to the care team only.
Context = Callable[[Any], dict[str, Any] | None]


def _schedule(schedule: Schedule | None, after: datetime | None = None) -> dict[str, Any] | None:
    """The calendar for a template: the sessions starting after ``after`` (a change keeps the past ones)."""
    if schedule is None:
        return None  # referred out: the care team's conversation, not an automatic message
    sessions = [
        {"starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(), "kind": s.kind}
        for s in schedule.sessions
        if after is None or s.starts_at > after
    ]
    return {"timezone": schedule.timezone, "sessions": sessions}


def _step(data: StepUpRecommended | StepDownRecommended) -> dict[str, Any]:
    return {
        "direction": "up" if isinstance(data, StepUpRecommended) else "down",
        "from_level": data.from_level.value,
        "to_level": data.to_level.value,
        "reasons": [reason.text for reason in data.rationale],
        "recommendation_id": data.recommendation_id,
        "policy_version": data.policy_version,
        "refer_out": data.refer_out,
    }


LINK_INSTRUMENTS = "link_instruments"
"""A message whose context names instruments here carries a questionnaire link for them, made by intake when the
message is sent (``dispatcher``): the link itself is never stored, logged or planned."""


def _measure_due(data: MeasureDue) -> dict[str, Any]:
    return {LINK_INSTRUMENTS: list(data.instruments), "due_id": data.due_id,
            "window_closes_at": data.window_closes_at.isoformat()}  # fmt: skip


def _deteriorated(data: MeasureRecorded) -> dict[str, Any] | None:
    """The care team's notice of a reliable deterioration (None: no instrument deteriorated reliably)."""
    worse = [
        {"instrument": s.instrument, "label": INSTRUMENTS[s.instrument].label if s.instrument in INSTRUMENTS
         else s.instrument.upper(), "score": s.score, "band": s.band, "baseline_score": s.baseline_score}
        for s in data.instruments
        if s.classification == "reliable_deterioration"
    ]  # fmt: skip
    if not worse:
        return None
    return {"measure_id": data.measure_id, "source": data.source, "recorded_at": data.recorded_at.isoformat(),
            "deteriorated": worse}  # fmt: skip


def _review(data: TreatmentPlanReviewDue | TreatmentPlanReviewOverdue) -> dict[str, Any]:
    """A treatment plan's review, due or overdue: ids, the reason code, the version and dates (never plan text)."""
    return {"review_id": data.review_id, "reason": data.reason, "trigger_id": data.trigger_id,
            "version": data.version, "due_on": data.due_on.isoformat(),
            "overdue_at": data.overdue_at.isoformat()}  # fmt: skip


CALENDAR_TOLD: dict[type[EventData], Callable[[Any], bool]] = {
    CareLevelAssigned: lambda d: d.status == "active" and d.schedule is not None,
    CareLevelChanged: lambda d: d.status == "active" and d.schedule is not None,
    ScheduleChanged: lambda d: d.schedule is not None,
}
"""Whether an event with a calendar tells anyone of it (has a context), asked without building that context: a
calendar is dozens of sessions, and planning asks this several times (``tells_anyone``)."""

PEOPLE_MAY_HEAR: dict[type[EventData], Context] = {
    MeasureDue: _measure_due,
    CareLevelAssigned: lambda d: _schedule(d.schedule) if CALENDAR_TOLD[CareLevelAssigned](d) else None,
    CareLevelChanged: lambda d: _schedule(d.schedule, d.changed_at) if CALENDAR_TOLD[CareLevelChanged](d) else None,
    ScheduleChanged: lambda d: _schedule(d.schedule, d.changed_at) if CALENDAR_TOLD[ScheduleChanged](d) else None,
    SessionMissed: lambda d: {"starts_at": d.starts_at.isoformat(), "consecutive_misses": d.consecutive_misses},
    EpisodeGraduated: lambda d: {"graduated_at": d.graduated_at.isoformat()},
}
"""Events patients and supports may hear of; their context holds no level, score or reason."""

CARE_TEAM_ONLY: dict[type[EventData], Context] = {
    SafetyAlertRaised: lambda d: {
        "alert_id": d.alert_id,
        "level": d.level,
        "reasons": d.reasons,
        "raised_at": d.raised_at.isoformat(),
        "assessment_id": d.assessment_id,
    },
    StepUpRecommended: _step,
    StepDownRecommended: _step,
    MeasureRecorded: _deteriorated,
    TreatmentPlanReviewDue: _review,
    TreatmentPlanReviewOverdue: _review,
    AttendanceRuleTriggered: lambda d: {
        "action": d.action,
        "rule_code": d.rule_code,
        "session_id": d.session_id,
        "reasons": [reason.text for reason in d.rationale],
    },
    EpisodeDischarged: lambda d: {
        "discharged_at": d.discharged_at.isoformat(),
        "level": d.level.value,
        "reason_code": d.reason_code,
    },
    GroupWaitlisted: lambda d: {
        "level": d.level.value,
        "track": d.track,
        "program": d.program,
        "group_ids": d.group_ids,
        "position": d.position,
        "waitlisted_at": d.waitlisted_at.isoformat(),
    },
}
"""Events about clinical judgements: the care team hears of them, nobody else."""

AT_ONCE_FOR_CARE_TEAM: dict[type[EventData], Callable[[Any], bool]] = {
    StepUpRecommended: lambda d: d.refer_out,
    StepDownRecommended: lambda d: d.refer_out,
}
"""Events whose messages to the care team go at once, as urgent ones do, whatever the rule says: a referral out
(a reassessment calls for a level this program does not offer) is not left to wait for the morning."""


EXPIRES: dict[type[EventData], Callable[[Any], datetime]] = {MeasureDue: lambda d: d.window_closes_at}
"""Events whose messages are not worth sending from a moment on: a due measure's once its window closed."""


def _codes(data: StepUpRecommended | StepDownRecommended | AttendanceRuleTriggered) -> list[str]:
    return [reason.code for reason in data.rationale]


def _step_on_webhook(data: StepUpRecommended | StepDownRecommended) -> dict[str, Any]:
    step = _step(data)
    kept = ("recommendation_id", "direction", "from_level", "to_level", "refer_out")
    return {**{key: step[key] for key in kept}, "reasons": _codes(data)}


ON_THE_WEBHOOK: dict[type[EventData], Context] = {
    SafetyAlertRaised: CARE_TEAM_ONLY[SafetyAlertRaised],
    StepUpRecommended: _step_on_webhook,
    StepDownRecommended: _step_on_webhook,
    AttendanceRuleTriggered: lambda d: {"rule_code": d.rule_code, "action": d.action, "session_id": d.session_id,
                                        "reasons": _codes(d)},
    EpisodeDischarged: lambda d: {"level": d.level.value, "reason_code": d.reason_code},
    GroupWaitlisted: lambda d: {"level": d.level.value, "group_ids": d.group_ids, "position": d.position},
    SessionMissed: lambda d: {"session_id": d.session_id},
    TreatmentPlanReviewDue: _review,
    TreatmentPlanReviewOverdue: _review,
    MeasureRecorded: lambda d: {"measure_id": d.measure_id, "classification": "reliable_deterioration",
                                "instruments": [s.instrument for s in d.instruments
                                                if s.classification == "reliable_deterioration"]},
}  # fmt: skip
"""What a message to the care team's webhook carries besides its purpose and episode id: ids, levels and reason
codes, never a reason's text or a time table (a webhook lands in another system; docs/api.md, "Verifying a Stepwise
webhook"). An event not listed here sends its purpose and episode id only."""

UR_TEAM_ONLY: dict[type[EventData], Context] = {
    AuthorizationReviewDue: lambda d: {
        "authorization_id": d.authorization_id, "payer": d.payer, "level": d.level.value,
        "review_due_on": d.review_due_on.isoformat(), "reason": d.reason, "deadline": d.deadline.isoformat(),
        "units_remaining": d.units_remaining,
    },
    AuthorizationUnitsLow: lambda d: {
        "authorization_id": d.authorization_id, "payer": d.payer, "level": d.level.value, "unit": d.unit,
        "units_remaining": d.units_remaining, "units_scheduled": d.units_scheduled, "days": d.days,
        "projected_exhaustion_on": d.projected_exhaustion_on.isoformat() if d.projected_exhaustion_on else None,
    },
    AuthorizationExhausted: lambda d: {
        "authorization_id": d.authorization_id, "payer": d.payer, "level": d.level.value, "unit": d.unit,
        "units_authorized": d.units_authorized, "exhausted_on": d.exhausted_on.isoformat(),
    },
    ServiceUnauthorized: lambda d: {
        "item": d.item, "service_id": d.service_id, "service_date": d.service_date.isoformat(),
        "level": d.level.value, "code": d.code, "unit": d.unit, "reason": d.reason,
    },
}  # fmt: skip
"""Events about payers' authorizations (issue 26): the utilization-review desk hears of them (never the payer's
authorization number: no event carries it), the care team may, nobody else."""

STAFF_ONLY: dict[type[EventData], Context] = {**CARE_TEAM_ONLY, **UR_TEAM_ONLY}
STAFF: frozenset[str] = frozenset({"care_team", "ur_team"})

CONTEXTS: dict[type[EventData], Context] = {**PEOPLE_MAY_HEAR, **STAFF_ONLY}
MESSAGE_EVENTS: dict[str, type[EventData]] = {model.event_type: model for model in CONTEXTS}


def check_audiences(policy: NotificationPolicy) -> list[str]:
    """Rules that would tell patients or supports of a clinical judgement (each a field path and why)."""
    problems = []
    for event_type, rules in policy.events.items():
        model = MESSAGE_EVENTS.get(event_type)
        for n, rule in enumerate(rules):
            if model in CARE_TEAM_ONLY and rule.to != "care_team":
                problems.append(f"events.{event_type}[{n}].to: only the care team hears of {event_type}")
            elif model in UR_TEAM_ONLY and rule.to not in STAFF:
                problems.append(f"events.{event_type}[{n}].to: only staff (ur_team, care_team) hear of {event_type}")
    return problems


def context_of(data: EventData) -> dict[str, Any] | None:
    context = CONTEXTS.get(type(data))
    return context(data) if context else None


def tells_anyone(data: EventData) -> bool:
    """``context_of(data) is not None``, without building a calendar's context."""
    told = CALENDAR_TOLD.get(type(data))
    return told(data) if told is not None else context_of(data) is not None


def webhook_context(data: EventData) -> dict[str, Any]:
    context = ON_THE_WEBHOOK.get(type(data))
    return (context(data) or {}) if context else {}


def care_team_channels(wanted: Sequence[Channel], reachable: Reachable) -> list[Channel]:
    """The channels a message to the care team goes on: those of ``wanted`` the clinic configured for it; with
    none of them, every route the care team has (a care team with only a webhook hears of everything there)."""
    routes = reachable.get("care_team", frozenset())
    return [channel for channel in wanted if channel in routes] or sorted(routes)


def support_scopes(event: CloudEvent[EventData], policy: NotificationPolicy) -> set[str]:
    """What consents must allow for the supports this event may be told of (asked of intake)."""
    if not tells_anyone(event.data):
        return set()
    return {rule.consent_scope for rule in policy.rules_for(event.type) if rule.consent_scope}


KnownSession = dict[str, str]
"""A session of an episode's current calendar as notifications keeps it: session_id, starts_at, ends_at, kind."""


def sessions_ahead(schedule: Schedule | None, as_of: datetime) -> list[KnownSession]:
    """The calendar's sessions after ``as_of``: what the next calendar is compared with."""
    if schedule is None:
        return []
    return [
        {"session_id": s.session_id, "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(),
         "kind": s.kind}
        for s in schedule.sessions
        if s.starts_at > as_of
    ]  # fmt: skip


@dataclass(frozen=True)
class CalendarChange:
    """What a calendar event (a started plan, a changed level or schedule) changed, by the calendar it replaced."""

    adopted: bool
    """False: a later calendar is current, or the episode ended; nobody is told of this one."""
    booked: tuple[KnownSession, ...] = ()
    """Its sessions ahead that the calendar it replaced did not have (all of them for an episode's first)."""
    cancelled: tuple[KnownSession, ...] = ()
    """The sessions the replaced calendar had after this one's moment that this one no longer has."""
    first_at: float | None = None
    """The episode's first calendar here: when it was made current (the process's monotonic clock); then no recipient
    of the episode had opted out (see ``store.Adopted.first``). None: not the first."""


NOT_ADOPTED = CalendarChange(adopted=False)


def calendar_change(ahead: Sequence[KnownSession], replaced: Sequence[KnownSession], as_of: datetime) -> CalendarChange:
    """Compare an adopted calendar's sessions after ``as_of`` with those of the calendar it replaced (none for an
    episode's first calendar). A session is the same only with the same id and start."""

    def key(session: KnownSession) -> tuple[str, str]:
        return session["session_id"], session["starts_at"]

    before = {key(s) for s in replaced}
    after = {key(s) for s in ahead}
    booked = tuple(s for s in ahead if key(s) not in before)
    gone = (s for s in replaced if key(s) not in after)
    return CalendarChange(True, booked, tuple(s for s in gone if datetime.fromisoformat(s["starts_at"]) > as_of))


def plan_notifications(
    event: CloudEvent[EventData],
    policy: NotificationPolicy,
    reachable: Reachable,
    supports: Mapping[str, Sequence[Support]] | None = None,
    calendar: CalendarChange | None = None,
) -> list[PlannedNotification]:
    """The messages an event causes. ``supports``: by consent scope, those whose consent allows it now;
    nobody else is ever planned for. ``calendar``: for an event with a calendar, what it changed; one that was
    not adopted tells no patient or support of its calendar."""
    context = context_of(event.data)
    if context is None:
        return []
    planned: list[PlannedNotification] = []
    at_once = AT_ONCE_FOR_CARE_TEAM.get(type(event.data), lambda _: False)(event.data)
    for rule in policy.rules_for(event.type):
        if calendar is not None and not calendar.adopted and rule.to != "care_team":
            continue
        told = _told(context, rule, calendar)
        if told is not None:
            consented = (supports or {}).get(rule.consent_scope or "", ())
            urgent = rule.urgent or (at_once and rule.to == "care_team")
            planned.extend(_by_rule(event, rule, told, _recipients(rule, consented), reachable, urgent))
    return planned


def _by_rule(
    event: CloudEvent[EventData],
    rule: MessageRule,
    told: dict[str, Any],
    recipients: list[tuple[RecipientKind, str | None]],
    reachable: Reachable,
    urgent: bool,
) -> list[PlannedNotification]:
    """The rule's message to each recipient on each channel of the rule the clinic can reach them on."""
    if rule.to == "care_team":
        channels = care_team_channels(rule.channels, reachable)
    else:
        channels = [c for c in rule.channels if c in reachable.get(rule.to, frozenset())]
    return [
        PlannedNotification(
            notification_id=notification_id(event.dedup_key, rule.purpose, _recipient(kind, consent_id), channel),
            episode_id=event.subject,
            purpose=rule.purpose,
            recipient_kind=kind,
            channel=channel,
            context=webhook_context(event.data) if channel == "webhook" else told,
            urgent=urgent,
            consent_id=consent_id,
            expires_at=expiry(event.data),
        )
        for channel in channels
        for kind, consent_id in recipients
    ]


def expiry(data: EventData) -> datetime | None:
    moment = EXPIRES.get(type(data))
    return moment(data) if moment else None


def _recipient(kind: RecipientKind, consent_id: str | None) -> str:
    return f"{kind}:{consent_id}" if consent_id else kind


UNREACHABLE = "patient_unreachable"
"""The care team's notice that a patient has no contact point the clinic can send to (also its template)."""


def welcomes_the_patient(event: CloudEvent[Any], policy: NotificationPolicy) -> bool:
    """A care plan started (not referred out) and the policy tells the patient of it: the welcome."""
    started = isinstance(event.data, CareLevelAssigned) and tells_anyone(event.data)
    return started and any(rule.to == "patient" for rule in policy.rules_for(event.type))


def plan_unreachable_notice(
    event: CloudEvent[CareLevelAssigned], patient_channels: Collection[Channel], reachable: Reachable
) -> list[PlannedNotification]:
    """Tell the care team (by email, or on the routes it has without a mailbox) when none of the channels the
    patient has an address for (``patient_channels``) is one the clinic sends to patients on: the welcome, and
    every later message, would reach nobody."""
    if set(patient_channels) & reachable.get("patient", frozenset()):
        return []
    return [
        PlannedNotification(
            notification_id=notification_id(event.dedup_key, UNREACHABLE, "care_team", channel),
            episode_id=event.subject,
            purpose=UNREACHABLE,
            recipient_kind="care_team",
            channel=channel,
        )
        for channel in care_team_channels(["email"], reachable)
    ]


def _told(context: dict[str, Any], rule: MessageRule, calendar: CalendarChange | None) -> dict[str, Any] | None:
    """What ``rule``'s message says: the context, or for a rule naming session kinds, the sessions of those kinds
    the calendar booked or cancelled (None: there is none, so there is no message)."""
    if rule.session_kinds is None:
        return context
    if calendar is None:  # nothing known of the calendar before: every session ahead is news
        changed = context.get("sessions", ()) if rule.session_change == "booked" else ()
    else:
        changed = calendar.booked if rule.session_change == "booked" else calendar.cancelled
    sessions = [
        {"starts_at": s["starts_at"], "ends_at": s["ends_at"], "kind": s["kind"]}
        for s in changed
        if s["kind"] in rule.session_kinds
    ]
    return {**context, "sessions": sessions} if sessions else None


def _recipients(rule: MessageRule, supports: Sequence[Support]) -> list[tuple[RecipientKind, str | None]]:
    if rule.to == "supports":
        return [(s.kind, s.consent_id) for s in supports if s.kind != ALUMNI_GROUP]
    if rule.to == "ur_team":  # staff, as the care team; the dispatcher routes it to the UR mailbox by its purpose
        return [("care_team", None)]
    return [(rule.to, None)]


def schedule_series(as_of: datetime) -> str:
    """Names the reminders of the schedule made at ``as_of``; a later schedule replaces them."""
    return f"sessions@{as_of.isoformat()}"


def plan_session_reminders(
    event: CloudEvent[CareLevelAssigned] | CloudEvent[CareLevelChanged] | CloudEvent[ScheduleChanged],
    schedule: Schedule,
    as_of: datetime,
    reminders: SessionReminders,
    reachable: Reachable,
) -> list[PlannedNotification]:
    """A reminder per session, hour offset and channel; none whose time had passed when the schedule was made."""
    channels = [channel for channel in reminders.channels if channel in reachable.get("patient", frozenset())]
    if not channels:  # none the clinic can send by: no session to go through
        return []
    return [
        PlannedNotification(
            notification_id=notification_id(event.dedup_key, reminders.purpose, session.session_id, hours, channel),
            episode_id=event.subject,
            purpose=reminders.purpose,
            recipient_kind="patient",
            channel=channel,
            context={
                "timezone": schedule.timezone,
                "starts_at": session.starts_at.isoformat(),
                "ends_at": session.ends_at.isoformat(),
            },
            not_before=session.starts_at - timedelta(hours=hours),
            expires_at=session.starts_at,
            series_kind="sessions",
            series=schedule_series(as_of),
        )
        for session in schedule.sessions
        for hours in reminders.hours_before
        if session.starts_at - timedelta(hours=hours) > as_of
        for channel in channels
    ]


AlumniMessage = tuple[str, int, datetime | None, datetime | None, dict[str, Any]]
"""Purpose, number in its kind, not before, expires at, and what the template needs."""


def plan_alumni(
    episode_id: str,
    consent_id: str,
    graduated_at: datetime,
    program: AlumniProgram,
    reachable: Reachable,
    clinic_zone: str,
) -> list[PlannedNotification]:
    """Everything an enrolment sends: a welcome now, check-ins, and reminders of the weekly meeting."""
    messages = _alumni_messages(graduated_at, program, clinic_zone)
    channels = [channel for channel in program.channels if channel in reachable.get("patient", frozenset())]
    return [
        PlannedNotification(
            notification_id=notification_id(ALUMNI, episode_id, purpose, n, channel),
            episode_id=episode_id,
            purpose=purpose,
            recipient_kind=ALUMNI,
            channel=channel,
            context=context,
            consent_id=consent_id,
            not_before=not_before,
            expires_at=expires_at,
            series_kind="alumni",
            series=f"alumni@{episode_id}",
        )
        for purpose, n, not_before, expires_at, context in messages
        for channel in channels
    ]


def _alumni_messages(graduated_at: datetime, program: AlumniProgram, clinic_zone: str) -> list[AlumniMessage]:
    zone = ZoneInfo(clinic_zone)
    messages: list[AlumniMessage] = []
    if program.welcome:
        messages.append(("alumni_welcome", 0, None, None, {}))
    graduation_day = graduated_at.astimezone(zone).date()
    for days in program.check_in_days:
        at = _local(graduation_day + timedelta(days=days), program.check_in_time, zone)
        messages.append(("alumni_check_in", days, at, None, {"days_since_graduation": days}))
    if program.meetings:
        meeting_zone = ZoneInfo(program.meetings.timezone or clinic_zone)
        lead = timedelta(hours=program.meetings.remind_hours_before)
        for week, starts in enumerate(_weekly(graduated_at + lead, program, meeting_zone)):
            context = {"meeting_at": starts.isoformat(), "timezone": str(meeting_zone)}
            # In UTC: an aware datetime's own arithmetic is wall-clock, an hour off across a DST change.
            messages.append(("alumni_meeting", week, starts.astimezone(UTC) - lead, starts, context))
    return messages


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone)


def _weekly(after: datetime, program: AlumniProgram, zone: ZoneInfo) -> list[datetime]:
    """The next ``weeks`` meetings starting after ``after``, at their local wall-clock time."""
    assert program.meetings is not None
    meetings = program.meetings
    day = after.astimezone(zone).date()
    day += timedelta(days=(WEEKDAYS.index(meetings.weekday) - day.weekday()) % 7)
    if _local(day, meetings.starts_at, zone) <= after:
        day += timedelta(days=7)
    return [_local(day + timedelta(weeks=week), meetings.starts_at, zone) for week in range(meetings.weeks)]
