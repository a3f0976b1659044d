"""What notifications does about events and requests: plan messages by the policy and store them once,
and keep what waits in step with what changed (a new calendar, an ended episode, a withdrawn consent, an
opt-out, an alumni enrolment). Handlers (Kafka) and the API (HTTP) both call these; neither calls the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from services.common.auth import Principal
from services.common.change_path import Record, change
from services.common.dependencies import DependencyDown
from services.common.utc import utc_now
from stepwise_contract import (
    ALUMNI,
    ALUMNI_GROUP,
    AlumniLeft,
    CareLevelAssigned,
    CareLevelChanged,
    Channel,
    CloudEvent,
    ConsentChanged,
    EpisodeGraduated,
    EventData,
    RecipientKind,
    SafetyAlertAcknowledged,
    SafetyAlertEscalated,
    SafetyAlertRaised,
    ScheduleChanged,
)

from .channels import Audience, IntakeContacts
from .domain import alumni, safety
from .domain.alumni import Enrolment, LeaveReason
from .domain.delivery import Notification
from .domain.messages import (
    NOT_ADOPTED,
    CalendarChange,
    PlannedNotification,
    Reachable,
    Support,
    calendar_change,
    plan_alumni,
    plan_notifications,
    plan_session_reminders,
    plan_unreachable_notice,
    schedule_series,
    sessions_ahead,
    support_scopes,
    welcomes_the_patient,
)
from .domain.opt_outs import RECIPIENT_PREFIX, OptOut, reply_action, staff_opt_out
from .domain.policy import NotificationPolicy
from .domain.safety import Deadlines, SafetyAlert
from .settings import SOURCE
from .store import (
    AlumniEnrolments,
    AuditLog,
    EpisodeSchedules,
    NotificationStore,
    OptOuts,
    SafetyAlerts,
    StoredAlert,
    StoredEnrolment,
)


@dataclass(frozen=True)
class SafetyDesk:
    """What keeping safety alerts works with: their store and audit log, the deadlines, the on-call route."""

    alerts: SafetyAlerts
    audit: AuditLog
    deadlines: Deadlines
    on_call: frozenset[Channel]
    """The channels pages to the on-call route are planned on."""
    console_base_url: str | None


class SendingNow(Protocol):
    """What sends a message due as it is stored, at once: this instance's dispatcher (``Dispatcher``)."""

    def lease_for_new(self) -> timedelta | None:
        """The lease to store such a message with; None: leave it to a pass."""

    def hand_over(self, notifications: Sequence[Notification]) -> None:
        """Send these, stored leased to this instance."""


class NotSendingNow:
    """Where no dispatcher runs: every message waits for a pass."""

    def lease_for_new(self) -> timedelta | None:
        return None

    def hand_over(self, notifications: Sequence[Notification]) -> None:
        """Nothing is leased here."""


@dataclass(frozen=True)
class Messaging:
    """What the changes work with: one per service instance (in the broker's context and app.state)."""

    policy: NotificationPolicy
    store: NotificationStore
    schedules: EpisodeSchedules
    alumni: AlumniEnrolments
    opt_outs: OptOuts
    contacts: IntakeContacts
    reachable: Reachable
    """The channels the clinic configured, per audience: known once, at start-up."""
    clinic_zone: str
    wake_dispatcher: Callable[[bool], None]
    """Called with True when urgent messages were stored for a pass to send, with False for routine ones."""
    safety: SafetyDesk
    sending_now: SendingNow = field(default_factory=NotSendingNow)
    """Sends what is due as it is stored (without it, every message waits for the dispatcher's pass)."""


async def notify(
    messaging: Messaging,
    event: CloudEvent[Any],
    more: Sequence[PlannedNotification] = (),
    calendar: CalendarChange | None = None,
) -> int:
    """Store the messages the policy plans for ``event`` (and ``more``); a redelivered event adds none.
    ``calendar``: for an event with a calendar, what adopting it changed."""
    planned = [*await _by_policy(messaging, event, calendar), *more]
    cause = {"event_id": event.id, "event_source": event.source, "event_type": event.type}
    return await _send(messaging, planned, cause, calendar.first_at if calendar else None)


async def _send(
    messaging: Messaging,
    planned: Sequence[PlannedNotification],
    cause: dict[str, str],
    none_opted_out_at: float | None = None,
) -> int:
    """Store ``planned`` once; what is due now is stored leased to this instance and sent at once, the dispatcher's
    lane is woken for the rest. How many were new. ``none_opted_out_at``: when no recipient of the episode had
    opted out (its first calendar here), for what is sent at once to go without a look at the opt-outs."""
    added = await messaging.store.add_leasing(planned, cause, messaging.sending_now.lease_for_new())
    leased = added.leased
    if none_opted_out_at is not None:
        leased = [replace(notification, none_opted_out_at=none_opted_out_at) for notification in leased]
    messaging.sending_now.hand_over(leased)
    for urgent in added.urgent_waiting:
        messaging.wake_dispatcher(urgent)
    return added.count


async def _by_policy(
    messaging: Messaging, event: CloudEvent[EventData], calendar: CalendarChange | None
) -> list[PlannedNotification]:
    scopes = support_scopes(event, messaging.policy)
    if not scopes:  # nobody to look up
        return plan_notifications(event, messaging.policy, messaging.reachable, {}, calendar)
    audience = await _audience(messaging, event)
    supports = {scope: [Support(consent_id, kind) for consent_id, kind in audience.supports(scope)] for scope in scopes}
    return plan_notifications(event, messaging.policy, messaging.reachable, supports, calendar)


async def _audience(messaging: Messaging, event: CloudEvent[Any], *more_scopes: str) -> Audience:
    """Who may hear of the event's episode: one request to intake for everything planning it asks (at the
    welcome, also whether the patient can be reached)."""
    scopes = frozenset([*support_scopes(event, messaging.policy), *more_scopes])
    return await messaging.contacts.audience(event.subject, scopes, welcomes_the_patient(event, messaging.policy))


# Safety alerts: kept with their deadline, acknowledged by a clinician, escalated to the on-call route once.


async def keep_alert(messaging: Messaging, event: CloudEvent[SafetyAlertRaised]) -> bool:
    """Keep the alert, open until a clinician acknowledges it, due at its deadline (False: kept already)."""
    alert = safety.track(event.data, messaging.safety.deadlines)
    cause = {"event_id": event.id, "event_source": event.source, "event_type": event.type}
    return await messaging.safety.alerts.add(alert, cause)


async def acknowledge_alert(messaging: Messaging, alert_id: str, by: Principal) -> tuple[SafetyAlert, bool] | None:
    """Record who acknowledged the alert and when, with ``iop.safety.alert_acknowledged`` and an audit entry; its
    pages to the on-call route that still wait are cancelled. (alert, False) when it was acknowledged already (the
    first acknowledgement stands); None for an unknown alert."""
    desk = messaging.safety

    def decide(alert: SafetyAlert, now: datetime) -> tuple[SafetyAlert, list[EventData], tuple[SafetyAlert, bool]]:
        decided = safety.acknowledge(alert, by.who, by.role.value, now)
        return _alert_decision(alert, decided)

    alert, acknowledged = await change(_alert_of(desk, alert_id), decide, _no_alert)
    if alert is None:
        return None
    if acknowledged:
        await desk.audit.record(by, "acknowledge_safety_alert", alert_id=alert_id, episode_id=alert.episode_id)
        await messaging.store.cancel(safety.page_ids(alert_id), "the safety alert was acknowledged")
    return alert, acknowledged


async def escalate_alert(messaging: Messaging, alert_id: str) -> bool:
    """A claimed alert whose deadline passed: record the escalation with ``iop.safety.alert_escalated``, then store
    its pages to the on-call route (after a crash in between, the next claim stores them). True if this call
    escalated it; an alert acknowledged meanwhile is left alone."""
    desk = messaging.safety

    def decide(alert: SafetyAlert, now: datetime) -> tuple[SafetyAlert, list[EventData], tuple[SafetyAlert, bool]]:
        return _alert_decision(alert, safety.escalate(alert, now))

    alert, escalated = await change(_alert_of(desk, alert_id), decide, _no_alert)
    if alert is not None and alert.status == "open":
        if alert.escalated_at is None:
            return False  # not due by this clock after all: claimed again once the lease ends
        cause = {"event_id": alert_id, "event_source": SOURCE, "event_type": SafetyAlertEscalated.event_type}
        await _send(messaging, safety.pages(alert, desk.on_call, desk.console_base_url), cause)
    await desk.alerts.settle(alert_id)  # its pages are stored, or it needs none
    return escalated


def _alert_of(desk: SafetyDesk, alert_id: str) -> Record[StoredAlert, SafetyAlert]:
    async def save(stored: StoredAlert, alert: SafetyAlert, events: Sequence[EventData], _: str | None) -> bool:
        (event,) = events
        assert isinstance(event, SafetyAlertAcknowledged | SafetyAlertEscalated)
        return await desk.alerts.save(stored, alert, event)

    return Record(load=lambda: desk.alerts.get_stored(alert_id), state=lambda stored: stored.alert, save=save)


def _alert_decision(
    alert: SafetyAlert, decided: tuple[SafetyAlert, EventData] | None
) -> tuple[SafetyAlert, list[EventData], tuple[SafetyAlert, bool]]:
    """The alert as decided with its event, and whether this decision changed it (None: it stays as it is)."""
    if decided is None:
        return alert, [], (alert, False)
    changed, event = decided
    return changed, [event], (changed, True)


def _no_alert() -> tuple[SafetyAlert | None, bool]:
    return None, False


Calendar = CloudEvent[CareLevelAssigned] | CloudEvent[CareLevelChanged] | CloudEvent[ScheduleChanged]


async def adopt_calendar(messaging: Messaging, event: Calendar) -> tuple[CalendarChange, list[PlannedNotification]]:
    """Adopt the event's calendar unless a later one is current: what it booked and cancelled, and its reminders,
    which replace the old ones."""
    data = event.data
    as_of = data.assigned_at if isinstance(data, CareLevelAssigned) else data.changed_at
    active = isinstance(data, ScheduleChanged) or data.status == "active"
    series = schedule_series(as_of)
    ahead = sessions_ahead(data.schedule, as_of)
    adopted = await messaging.schedules.adopt(event.subject, series, as_of, ahead,
                                              likely_first=isinstance(data, CareLevelAssigned))  # fmt: skip
    if adopted is None:
        return NOT_ADOPTED, []  # an older calendar arriving late (the topics are read in parallel), or after the end
    if not adopted.first:  # the episode's first calendar here has no reminders to replace
        await messaging.store.cancel_session_reminders(event.subject, "the session calendar changed",
                                                       keep_series=series)  # fmt: skip
    change = calendar_change(ahead, adopted.replaced, as_of)
    if adopted.first:
        change = replace(change, first_at=time.monotonic())
    reminders = messaging.policy.session_reminders
    if not active or data.schedule is None or reminders is None:
        return change, []
    return change, plan_session_reminders(event, data.schedule, as_of, reminders, messaging.reachable)


async def notice_if_unreachable(
    messaging: Messaging, event: CloudEvent[CareLevelAssigned]
) -> list[PlannedNotification]:
    """At the welcome, the care team hears of a patient for whom intake holds no email address or mobile number
    the clinic can send to (the text names the episode only; intake says which channels, never the addresses)."""
    if not welcomes_the_patient(event, messaging.policy):
        return []
    channels = (await _audience(messaging, event)).patient_channels
    return [] if channels is None else plan_unreachable_notice(event, channels, messaging.reachable)


async def end_episode(messaging: Messaging, episode_id: str) -> None:
    """A graduation or discharge: no calendar is current any more, and no session reminder goes out."""
    await messaging.schedules.end(episode_id)
    await messaging.store.cancel_session_reminders(episode_id, "the episode ended")


async def enrol_alumnus(messaging: Messaging, event: CloudEvent[EpisodeGraduated]) -> list[PlannedNotification]:
    """With a consent in force naming the alumni group, the graduate joins it: its messages are planned."""
    program = messaging.policy.alumni
    if program is None:
        return []
    audience = await _audience(messaging, event, program.consent_scope)
    consents = audience.supports(program.consent_scope)
    consent_id = next((consent for consent, kind in consents if kind == ALUMNI_GROUP), None)
    if consent_id is None:
        return []  # no consent naming the alumni group: a graduate is not told of it, nor anyone of them
    patient_id = audience.patient_id or ""
    graduated_at = event.data.graduated_at
    enrolment, enrolled = alumni.enrol(event.subject, patient_id, consent_id, graduated_at, program.check_in_days,
                                       utc_now())  # fmt: skip
    if not await messaging.alumni.add(enrolment, enrolled):
        existing = await messaging.alumni.get(event.subject)  # a redelivery: plan again only if still enrolled
        if existing is None or existing.status != "enrolled":
            return []
    return plan_alumni(event.subject, consent_id, graduated_at, program, messaging.reachable, messaging.clinic_zone)


async def end_enrolments_of_returning_patient(messaging: Messaging, event: CloudEvent[CareLevelAssigned]) -> None:
    """A new episode of a graduate, started here or referred out, ends the alumni enrolment of their earlier one.
    Looked up unless intake says the patient had no episode before (the usual case: nothing to look up)."""
    audience = await _audience(messaging, event)
    patient_id = audience.patient_id
    if not patient_id or audience.earlier_episodes is False:
        return
    for enrolment in await messaging.alumni.enrolled(patient_id=patient_id):
        if enrolment.episode_id != event.subject:
            await end_alumni_enrolment(messaging, enrolment.episode_id, "new_episode")


async def withdraw_consent(messaging: Messaging, data: ConsentChanged) -> None:
    """A revoked consent: nothing waits for its recipient any more; the alumni enrolment under it ends."""
    await messaging.store.cancel_for_consent(data.consent_id, "consent no longer in force")
    if data.recipient_kind != ALUMNI_GROUP:
        return
    enrolment = await messaging.alumni.get(data.episode_id)  # its consent never changes: no version to check
    if enrolment is not None and alumni.ended_by_revoking(enrolment, data.consent_id):
        await end_alumni_enrolment(messaging, data.episode_id, "consent_withdrawn")


async def end_alumni_enrolment(messaging: Messaging, episode_id: str, reason: LeaveReason) -> bool:
    """End a graduate's enrolment (publishing iop.alumni.left) and cancel what it still had to send."""

    def decide(enrolment: Enrolment, now: datetime) -> tuple[Enrolment, list[EventData], bool]:
        decided = alumni.leave(enrolment, reason, now)
        if decided is None:
            return enrolment, [], False  # ended already
        ended, event = decided
        return ended, [event], True

    left = await change(_enrolment_of(messaging.alumni, episode_id), decide, lambda: False)  # not enrolled: False
    await messaging.store.cancel_alumni_messages(episode_id, f"alumni: {reason}")
    return left


def _enrolment_of(enrolments: AlumniEnrolments, episode_id: str) -> Record[StoredEnrolment, Enrolment]:
    async def save(stored: StoredEnrolment, enrolment: Enrolment, events: Sequence[EventData], _: str | None) -> bool:
        (event,) = events
        assert isinstance(event, AlumniLeft)
        return await enrolments.save(stored, enrolment, event)

    return Record(load=lambda: enrolments.get_stored(episode_id), state=lambda stored: stored.enrolment, save=save)


async def opt_out(
    messaging: Messaging, episode_id: str, recipient_kind: RecipientKind, consent_id: str | None
) -> tuple[OptOut, bool]:
    """Record a recipient's opt-out (False: on record already); what waits for them is cancelled, and an
    alumnus leaves the alumni group. The episode's calendar record is made first, if it has none: a first calendar
    adopted after it does not stand for "nobody opted out" (``store.Adopted.first``)."""
    await messaging.schedules.before_opt_out(episode_id)
    recorded, added = await messaging.opt_outs.add(staff_opt_out(episode_id, recipient_kind, consent_id, utc_now()))
    await messaging.store.cancel_for_recipient(episode_id, recipient_kind, consent_id, "the recipient opted out")
    if recipient_kind == ALUMNI:
        await end_alumni_enrolment(messaging, episode_id, "opted_out")
    return recorded, added


# Opt-outs asked for through the API: by staff for a recipient, or by a number's reply to the clinic's texts.


class NotificationsError(Exception):
    """A request notifications cannot take; ``code`` is stable (the API answers it with a status), the message is
    for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field: tuple[str, ...] = ()


async def record_opt_out(
    messaging: Messaging, episode_id: str, recipient_kind: RecipientKind, consent_id: str | None
) -> tuple[OptOut, bool]:
    """Staff record an opt-out for a recipient of an episode intake has (asked there); see ``opt_out``."""
    try:
        known = await messaging.contacts.episode_known(episode_id)
    except DependencyDown as error:
        raise NotificationsError("intake_unavailable", f"cannot ask intake for the episode: {error}") from None
    if not known:
        raise NotificationsError("unknown_episode", "no such episode at intake")
    return await opt_out(messaging, episode_id, recipient_kind, consent_id)


async def withdraw_opt_out(messaging: Messaging, opt_out_id: str) -> None:
    """The recipient wants messages again (from now on; an ended alumni enrolment stays ended). Only a recipient's
    opt-out is withdrawn here: a number's ends with its START reply."""
    if not opt_out_id.startswith(RECIPIENT_PREFIX) or not await messaging.opt_outs.remove(opt_out_id):
        raise NotificationsError("unknown_opt_out", "no such opt-out")


SmsReply = Literal["opted_out", "opted_in", "ignored"]


async def reply_by_sms(messaging: Messaging, sender: str, text: str) -> SmsReply:
    """A text to the clinic's number: STOP (and the usual synonyms) opts the number out, START in. Free text is not
    read here: staff are not watching this number."""
    key = messaging.opt_outs.number_key(sender)
    action = reply_action(text)
    if action == "opt_out":
        await messaging.opt_outs.add(OptOut(key, "sms_reply", utc_now()))
        return "opted_out"
    if action == "opt_in":
        await messaging.opt_outs.remove(key)
        return "opted_in"
    return "ignored"
