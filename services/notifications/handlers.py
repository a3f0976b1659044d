"""Events notifications consumes: what happens on each is one function, listed in ``EVENT_HANDLERS``.

Every event stores the messages the policy plans for it, once (``changes.notify``). Some also change what
is still wanted: a new calendar replaces the reminders of the old one, an ended episode ends its
reminders, a graduation (with a consent naming the alumni group) enrols the graduate, and a new episode or
the withdrawn consent it is under ends an alumni enrolment; a calendar that is not adopted (a later one
is current, or the episode ended) tells no patient or support. A safety alert is also kept until a clinician
acknowledges it.
"""

from __future__ import annotations

from services.common.consumer import EventHandlers, Subscription
from stepwise_contract import (
    AttendanceRuleTriggered,
    AuthorizationExhausted,
    AuthorizationReviewDue,
    AuthorizationUnitsLow,
    CareLevelAssigned,
    CareLevelChanged,
    CloudEvent,
    ConsentChanged,
    EpisodeDischarged,
    EpisodeGraduated,
    GroupWaitlisted,
    MeasureDue,
    MeasureRecorded,
    SafetyAlertRaised,
    ScheduleChanged,
    ServiceUnauthorized,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewOverdue,
)

from . import changes
from .changes import Messaging


async def on_care_level_assigned(event: CloudEvent[CareLevelAssigned], messaging: Messaging) -> None:
    calendar, reminders = await changes.adopt_calendar(messaging, event)
    await changes.end_enrolments_of_returning_patient(messaging, event)  # a referral out is a new episode too
    unreachable = await changes.notice_if_unreachable(messaging, event)
    await changes.notify(messaging, event, [*reminders, *unreachable], calendar)


async def on_care_level_changed(event: CloudEvent[CareLevelChanged], messaging: Messaging) -> None:
    calendar, reminders = await changes.adopt_calendar(messaging, event)
    await changes.notify(messaging, event, reminders, calendar)


async def on_schedule_changed(event: CloudEvent[ScheduleChanged], messaging: Messaging) -> None:
    calendar, reminders = await changes.adopt_calendar(messaging, event)
    await changes.notify(messaging, event, reminders, calendar)


async def on_session_missed(event: CloudEvent[SessionMissed], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_safety_alert_raised(event: CloudEvent[SafetyAlertRaised], messaging: Messaging) -> None:
    await changes.notify(messaging, event)
    await changes.keep_alert(messaging, event)


async def on_step_up_recommended(event: CloudEvent[StepUpRecommended], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_step_down_recommended(event: CloudEvent[StepDownRecommended], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_attendance_rule_triggered(event: CloudEvent[AttendanceRuleTriggered], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_group_waitlisted(event: CloudEvent[GroupWaitlisted], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_episode_graduated(event: CloudEvent[EpisodeGraduated], messaging: Messaging) -> None:
    await changes.end_episode(messaging, event.subject)
    await changes.notify(messaging, event, await changes.enrol_alumnus(messaging, event))


async def on_episode_discharged(event: CloudEvent[EpisodeDischarged], messaging: Messaging) -> None:
    await changes.end_episode(messaging, event.subject)
    await changes.notify(messaging, event)


async def on_measure_due(event: CloudEvent[MeasureDue], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_measure_recorded(event: CloudEvent[MeasureRecorded], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_review_due(event: CloudEvent[TreatmentPlanReviewDue], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_review_overdue(event: CloudEvent[TreatmentPlanReviewOverdue], messaging: Messaging) -> None:
    await changes.notify(messaging, event)


async def on_consent_changed(event: CloudEvent[ConsentChanged], messaging: Messaging) -> None:
    if event.data.status == "revoked":
        await changes.withdraw_consent(messaging, event.data)
    await changes.notify(messaging, event)


async def on_authorization_signal(
    event: CloudEvent[AuthorizationReviewDue | AuthorizationUnitsLow | AuthorizationExhausted | ServiceUnauthorized],
    messaging: Messaging,
) -> None:
    await changes.notify(messaging, event)


EVENT_HANDLERS: EventHandlers = {
    CareLevelAssigned: Subscription(
        on_care_level_assigned,
        "A started care plan: the patient's welcome (the care team's notice if the patient cannot be reached), "
        "supports' notice, session reminders.",
    ),
    CareLevelChanged: Subscription(
        on_care_level_changed, "A changed level: the patient hears of the new schedule; reminders follow it."
    ),
    ScheduleChanged: Subscription(
        on_schedule_changed,
        "A new calendar (custom, a group joined, an appointment): the patient hears of it, consented supports "
        "of a family session booked or cancelled; reminders follow it.",
    ),
    GroupWaitlisted: Subscription(on_group_waitlisted, "The care team hears that no group had room for a plan."),
    SessionMissed: Subscription(on_session_missed, "A missed session: outreach to the patient and consented supports."),
    SafetyAlertRaised: Subscription(
        on_safety_alert_raised,
        "A safety alert reaches the care team at once, day or night, and is kept until a clinician acknowledges it "
        "(else it goes to the on-call route).",
        urgent=True,
    ),
    StepUpRecommended: Subscription(on_step_up_recommended, "The care team hears of a step-up recommendation."),
    StepDownRecommended: Subscription(on_step_down_recommended, "The care team hears of a step-down recommendation."),
    AttendanceRuleTriggered: Subscription(
        on_attendance_rule_triggered, "The care team hears of a missed-session rule."
    ),
    EpisodeGraduated: Subscription(
        on_episode_graduated, "A graduation: congratulations, reminders end, alumni enrolment with consent."
    ),
    EpisodeDischarged: Subscription(on_episode_discharged, "A discharge: the care team reviews it; reminders end."),
    MeasureDue: Subscription(
        on_measure_due, "A due measure: the patient gets a questionnaire link, made by intake at send time."
    ),
    MeasureRecorded: Subscription(on_measure_recorded, "The care team hears of a reliable deterioration."),
    TreatmentPlanReviewDue: Subscription(on_review_due, "The care team hears a treatment plan's review is due."),
    TreatmentPlanReviewOverdue: Subscription(
        on_review_overdue, "The care team hears a treatment plan's review is overdue."
    ),
    ConsentChanged: Subscription(
        on_consent_changed,
        "A withdrawn consent cancels what waits for that recipient and ends the alumni enrolment under it.",
    ),
    AuthorizationReviewDue: Subscription(on_authorization_signal, "The UR mailbox hears that a review is due."),
    AuthorizationUnitsLow: Subscription(on_authorization_signal, "The UR mailbox hears that units run low."),
    AuthorizationExhausted: Subscription(on_authorization_signal, "The UR mailbox hears that units are used up."),
    ServiceUnauthorized: Subscription(
        on_authorization_signal, "The UR mailbox hears of a service or day no authorization covers."
    ),
}
