"""notifications in-process: each handler applying its event (the messages it plans, to whom), and a malformed
event set aside."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Literal

import httpx
import pytest

from services.common.utc import utc_now
from services.notifications.changes import Messaging
from services.notifications.domain.delivery import Notification
from services.notifications.handlers import EVENT_HANDLERS
from services.notifications.store import ALUMNI, SCHEDULES
from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevel,
    CareLevelChanged,
    ConsentChanged,
    ConsentRecipientKind,
    EpisodeDischarged,
    EventData,
    GroupWaitlisted,
    SafetyAlertRaised,
    Schedule,
    ScheduleChanged,
    ScheduledSession,
    StepDownRecommended,
    StepUpRecommended,
)
from tests.service.conftest import Events, queued, set_aside
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tests.service.notifications.helpers import (
    ALUMNI_MESSAGES,
    REASONS,
    SMS_PROVIDER,
    TEMPLATES,
    alumnus,
    assigned,
    calendar,
    care_plan_event,
    graduated,
    in_days,
    intake_event,
    log_of,
    session_missed,
    started,
    what,
)

# Events, as care_plan and intake publish them


def consent_changed(
    episode_id: str, consent_id: str, kind: ConsentRecipientKind, status: Literal["granted", "revoked"] = "revoked"
) -> ConsentChanged:
    return ConsentChanged(episode_id=episode_id, consent_id=consent_id, recipient_kind=kind, status=status,
                          changed_at=utc_now())  # fmt: skip


def step(model: type[StepUpRecommended] | type[StepDownRecommended], episode_id: str) -> EventData:
    levels = (CareLevel.IOP, CareLevel.PHP) if model is StepUpRecommended else (CareLevel.IOP, CareLevel.OP)
    return model(episode_id=episode_id, recommendation_id="r1", from_level=levels[0], to_level=levels[1],
                 rationale=REASONS, policy_version="test", recommended_at=utc_now())  # fmt: skip


def reminders(notifications: list[Notification]) -> list[Notification]:
    return [n for n in notifications if n.series_kind == "sessions"]


# Handlers


async def test_an_active_care_level_welcomes_the_patient_tells_supports_and_plans_reminders(
    events: Events, messaging: Messaging, intake: FakeIntake, wakes: list[str]
) -> None:
    episode_id = intake.episode()
    family = intake.consent(episode_id, "family", "appointments")
    intake.consent(episode_id, "alumni_group", "appointments")  # the alumni group hears of no episode's sessions
    sessions = (in_days(2), in_days(4))
    await events.deliver(care_plan_event(assigned(episode_id, calendar(*sessions))))
    log = await log_of(messaging, episode_id)
    told = [n for n in log if n.series_kind == ""]
    assert what(told) == [("support_schedule", "family", "email"), ("welcome", "patient", "email")]
    assert next(n for n in told if n.recipient_kind == "family").consent_id == family
    assert len(told[0].context["sessions"]) == 2 and {n.status for n in log} == {"pending"}
    planned = reminders(log)
    assert what(planned) == [("session_reminder", "patient", "sms")] * 4
    assert {n.not_before for n in planned} == {start - timedelta(hours=h) for start in sessions for h in (24, 2)}
    assert {n.expires_at for n in planned} == set(sessions)
    assert wakes == ["dispatcher"]


async def test_the_care_team_is_told_at_the_welcome_when_the_patient_cannot_be_reached(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    unreachable, phone_only = intake.episode(), intake.episode()
    intake.contacts[unreachable] = {"email": None, "phone": None, "timezone": None}
    intake.contacts[phone_only] = {"email": None, "phone": "+12025550100", "timezone": None}
    for episode_id in (unreachable, phone_only):
        event = care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4))))
        await events.deliver(event)
        await events.deliver(event)  # a redelivery tells nobody twice
    told = [n for n in await log_of(messaging, unreachable) if n.series_kind == ""]
    assert what(told) == [("patient_unreachable", "care_team", "email"), ("welcome", "patient", "email")]
    notice = next(n for n in told if n.purpose == "patient_unreachable")
    assert notice.context == {} and not notice.urgent  # the text names the episode only
    message = TEMPLATES.render(notice.purpose, "email", {"episode_id": unreachable})
    assert unreachable in message.subject and "no email address or mobile number" in message.body
    # A patient with a mobile number is reached by text (reminders, outreach): nobody needs telling.
    assert "patient_unreachable" not in {n.purpose for n in await log_of(messaging, phone_only)}


async def test_a_stop_reply_matches_every_way_the_number_is_written(
    http: httpx.AsyncClient, messaging: Messaging
) -> None:
    stop = await http.post("/v1/sms/inbound", json={"from": "+15557732000", "text": "STOP"}, headers=SMS_PROVIDER)
    assert stop.json() == {"action": "opted_out"}
    for written in ("555-773-2000", "(555) 773-2000", "1 555 773 2000", "+1 555.773.2000"):
        assert await messaging.opt_outs.has(messaging.opt_outs.number_key(written)), written
    assert not await messaging.opt_outs.has(messaging.opt_outs.number_key("555-773-2001"))
    start = await http.post("/v1/sms/inbound", json={"from": "555 773 2000", "text": "START"}, headers=SMS_PROVIDER)
    assert start.json() == {"action": "opted_in"}
    assert not await messaging.opt_outs.has(messaging.opt_outs.number_key("+15557732000"))


async def test_a_referral_out_tells_nobody(events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = intake.episode()
    intake.consent(episode_id, "family", "appointments")
    await events.deliver(care_plan_event(assigned(episode_id, None, status="referred_out")))
    assert await log_of(messaging, episode_id) == []


async def test_a_new_episode_of_a_graduate_ends_their_alumni_enrolment(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    patient_id = str(uuid.uuid4())
    earlier = await alumnus(events, messaging, intake, patient_id)
    await started(events, intake, patient_id)
    enrolment = await messaging.alumni.get(earlier)
    assert enrolment is not None and (enrolment.status, enrolment.left_reason) == ("left", "new_episode")
    assert [topic for topic, _ in await queued(database[ALUMNI])] == ["iop.alumni.enrolled", "iop.alumni.left"]
    alumni_messages = [n for n in await log_of(messaging, earlier) if n.series_kind == "alumni"]
    assert {(n.status, n.last_error) for n in alumni_messages} == {("cancelled", "alumni: new_episode")}


async def test_a_new_episode_of_a_graduate_ends_their_enrolment_with_an_intake_that_does_not_count_episodes(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    """An intake older than ``earlier_episodes`` (a rolling upgrade) says nothing: the enrolments are looked up."""
    intake.says_earlier_episodes = False
    patient_id = str(uuid.uuid4())
    earlier = await alumnus(events, messaging, intake, patient_id)
    database.calls.clear()
    await started(events, intake, patient_id)
    assert ("find", ALUMNI) in database.calls
    enrolment = await messaging.alumni.get(earlier)
    assert enrolment is not None and (enrolment.status, enrolment.left_reason) == ("left", "new_episode")


async def test_a_new_patients_first_episode_looks_up_no_alumni_enrolment(
    events: Events, intake: FakeIntake, database: MemoryDatabase
) -> None:
    database.calls.clear()
    await started(events, intake, str(uuid.uuid4()))
    assert ("find", ALUMNI) not in database.calls


async def test_a_graduate_referred_out_in_a_new_episode_leaves_the_alumni_group(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    patient_id = str(uuid.uuid4())
    earlier = await alumnus(events, messaging, intake, patient_id)
    referred = intake.episode(patient_id)
    await events.deliver(care_plan_event(assigned(referred, None, status="referred_out")))
    enrolment = await messaging.alumni.get(earlier)
    assert enrolment is not None and (enrolment.status, enrolment.left_reason) == ("left", "new_episode")
    assert [topic for topic, _ in await queued(database[ALUMNI])] == ["iop.alumni.enrolled", "iop.alumni.left"]
    alumni_messages = [n for n in await log_of(messaging, earlier) if n.series_kind == "alumni"]
    assert {(n.status, n.last_error) for n in alumni_messages} == {("cancelled", "alumni: new_episode")}
    assert await log_of(messaging, referred) == []  # a referral out still tells nobody


async def test_a_redelivered_event_adds_no_notification(
    events: Events, messaging: Messaging, intake: FakeIntake, wakes: list[str]
) -> None:
    episode_id = intake.episode()
    intake.consent(episode_id, "family", "appointments")
    event = care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4))))
    await events.deliver(event)
    first = await log_of(messaging, episode_id)
    await events.deliver(event)
    again = await log_of(messaging, episode_id)
    assert len(first) == 6 and sorted(n.notification_id for n in again) == sorted(n.notification_id for n in first)
    assert {n.status for n in again} == {"pending"}  # the redelivered calendar did not cancel its own reminders
    assert wakes == ["dispatcher"]  # nothing new: the dispatcher is not woken again


async def test_a_changed_care_level_replaces_the_session_reminders(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    old = {n.notification_id for n in reminders(await log_of(messaging, episode_id))}
    change = CareLevelChanged(episode_id=episode_id, from_level=CareLevel.IOP, to_level=CareLevel.PHP,
                              direction="up", recommendation_id="r1", changed_at=utc_now(), status="active",
                              schedule=calendar(in_days(3), in_days(5), in_days(6), first=101))  # fmt: skip
    await events.deliver(care_plan_event(change))
    log = await log_of(messaging, episode_id)
    replaced = [n for n in reminders(log) if n.notification_id in old]
    assert {(n.status, n.last_error) for n in replaced} == {("cancelled", "the session calendar changed")}
    current = [n for n in reminders(log) if n.notification_id not in old]
    assert len(current) == 6 and {n.status for n in current} == {"pending"}
    assert {n.context["starts_at"] for n in current} == {s.isoformat() for s in (in_days(3), in_days(5), in_days(6))}
    told = [n for n in log if n.cause_event_type == "iop.care_level.changed" and n.series_kind == ""]
    assert what(told) == [("schedule_change", "patient", "email"), ("schedule_change", "patient", "sms")]


async def test_a_changed_schedule_replaces_the_session_reminders_unless_a_later_one_is_current(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    old = {n.notification_id for n in reminders(await log_of(messaging, episode_id))}
    change = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now(),
                             schedule=calendar(in_days(2), in_days(3), in_days(4)))  # fmt: skip
    await events.deliver(care_plan_event(change))
    log = await log_of(messaging, episode_id)
    assert {n.status for n in reminders(log) if n.notification_id in old} == {"cancelled"}
    current = {n.notification_id for n in reminders(log) if n.status == "pending"}
    assert len(current) == 6
    assert what([n for n in log if n.purpose == "schedule_change"]) == [
        ("schedule_change", "patient", "email"),
        ("schedule_change", "patient", "sms"),
    ]
    older = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now() - timedelta(
        minutes=30), schedule=calendar(in_days(5)))  # fmt: skip
    await events.deliver(care_plan_event(older))  # an older calendar read late from another topic
    assert {n.notification_id for n in reminders(await log_of(messaging, episode_id)) if n.status == "pending"} == (
        current
    )


async def test_a_calendar_that_is_not_adopted_tells_nobody(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    intake.consent(episode_id, "family", "appointments")
    await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    current = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now(),
                              schedule=calendar(in_days(2), in_days(3)))  # fmt: skip
    await events.deliver(care_plan_event(current))
    logged = {n.notification_id for n in await log_of(messaging, episode_id)}
    with_family = with_own(calendar(in_days(2), in_days(3)), own_session("family", in_days(5)))
    older = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now() - timedelta(
        minutes=30), schedule=with_family, reason="appointment_booked")  # fmt: skip
    await events.deliver(care_plan_event(older))  # an older calendar read late from another topic
    level = CareLevelChanged(episode_id=episode_id, from_level=CareLevel.IOP, to_level=CareLevel.PHP, direction="up",
                             recommendation_id="r1", changed_at=utc_now() - timedelta(minutes=20),
                             status="active", schedule=with_family)  # fmt: skip
    await events.deliver(care_plan_event(level))  # older too
    assert {n.notification_id for n in await log_of(messaging, episode_id)} == logged

    discharge = EpisodeDischarged(episode_id=episode_id, discharged_at=utc_now(), level=CareLevel.IOP,
                                  reason_code="non_attendance")  # fmt: skip
    await events.deliver(care_plan_event(discharge))
    late = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now(),
                           schedule=with_family, reason="appointment_booked")  # fmt: skip
    await events.deliver(care_plan_event(late))  # a calendar after the end
    after_end = [n for n in await log_of(messaging, episode_id) if n.notification_id not in logged]
    assert what(after_end) == [("discharge_review", "care_team", "email")]


async def test_a_missed_session_reaches_the_patient_and_a_consented_support(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    family = intake.consent(episode_id, "family", "attendance")
    intake.consent(episode_id, "designated_support", "appointments")  # not allowed to hear of attendance
    await events.deliver(care_plan_event(session_missed(episode_id)))
    outreach = [n for n in await log_of(messaging, episode_id) if n.cause_event_type == "iop.session.missed"]
    assert what(outreach) == [
        ("missed_session_outreach", "patient", "email"),
        ("missed_session_outreach", "patient", "sms"),
        ("support_missed_session", "family", "email"),
    ]
    assert {n.consent_id for n in outreach if n.recipient_kind == "family"} == {family}
    assert outreach[0].context["consecutive_misses"] == 1


async def test_supports_hear_of_family_sessions_only(events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = intake.episode()
    family = intake.consent(episode_id, "family", "appointments")
    own = calendar(in_days(2), in_days(3), in_days(4))
    family_session = own.sessions[1].model_copy(update={"session_id": "family-1", "kind": "family"})
    with_family = own.model_copy(update={"sessions": [own.sessions[0], family_session, own.sessions[2]]})
    for schedule in (own, with_family):
        change = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now(),
                                 schedule=schedule, reason="appointment_booked")  # fmt: skip
        await events.deliver(care_plan_event(change))
    told = [n for n in await log_of(messaging, episode_id) if n.purpose == "support_family_session"]
    assert [(n.recipient_kind, n.consent_id) for n in told] == [("family", family)]  # the first calendar had none
    assert [s["starts_at"] for s in told[0].context["sessions"]] == [in_days(3).isoformat()]


def own_session(kind: str, starts_at: datetime) -> ScheduledSession:
    return ScheduledSession(session_id=f"{kind}-{starts_at:%Y%m%d-%H%M}", starts_at=starts_at,
                            ends_at=starts_at + timedelta(hours=1), kind=kind)  # fmt: skip


def with_own(schedule: Schedule, *appointments: ScheduledSession) -> Schedule:
    sessions = sorted([*schedule.sessions, *appointments], key=lambda session: session.starts_at)
    return schedule.model_copy(update={"sessions": sessions})


async def test_supports_hear_when_a_family_session_is_booked_and_when_it_is_cancelled_not_of_other_changes(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    family = intake.consent(episode_id, "family", "appointments")
    groups = calendar(in_days(2), in_days(4))
    await events.deliver(care_plan_event(assigned(episode_id, groups)))
    meeting, one_on_one = own_session("family", in_days(3)), own_session("individual", in_days(5))
    told: list[list[tuple[str, list[str]]]] = []
    seen = {n.notification_id for n in await log_of(messaging, episode_id)}
    for own, reason in (
        ([meeting], "appointment_booked"),
        ([meeting, one_on_one], "appointment_booked"),  # not a family session: supports hear nothing
        ([meeting, one_on_one], "custom_calendar"),  # the same sessions, a new calendar: nothing new
        ([one_on_one], "appointment_cancelled"),
    ):
        changed = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now(),
                                  schedule=with_own(groups, *own), reason=reason)  # fmt: skip
        event = care_plan_event(changed)
        for _ in range(2):  # and again, redelivered: told once
            await events.deliver(event)
        log = [n for n in await log_of(messaging, episode_id) if n.notification_id not in seen]
        seen |= {n.notification_id for n in log}
        supports = [n for n in log if n.recipient_kind != "patient"]
        assert {(n.recipient_kind, n.consent_id, n.channel) for n in supports} <= {("family", family, "email")}
        told.append(sorted((n.purpose, [s["starts_at"] for s in n.context["sessions"]]) for n in supports))
    assert told == [
        [("support_family_session", [in_days(3).isoformat()])],
        [],
        [],
        [("support_family_session_cancelled", [in_days(3).isoformat()])],
    ]


async def test_a_waitlisted_plan_reaches_the_care_team_only(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    intake.consent(episode_id, "family", "appointments")
    waiting = GroupWaitlisted(episode_id=episode_id, level=CareLevel.IOP, track="morning", program="adult",
                              group_ids=["iop-am"], position=2, waitlisted_at=utc_now())  # fmt: skip
    await events.deliver(care_plan_event(waiting))
    log = await log_of(messaging, episode_id)
    assert what(log) == [("group_waitlist", "care_team", "email")]
    assert log[0].context["position"] == 2 and log[0].context["group_ids"] == ["iop-am"]


async def test_a_safety_alert_reaches_the_care_team_at_once(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    alert = SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="immediate",
                              reasons=["cssrs_high_risk"], raised_at=utc_now())  # fmt: skip
    await events.deliver(intake_event(alert))
    log = await log_of(messaging, episode_id)
    assert what(log) == [("safety_alert", "care_team", "email"), ("safety_alert", "care_team", "webhook")]
    assert all(n.urgent and n.status == "pending" and n.context["level"] == "immediate" for n in log)


@pytest.mark.parametrize(
    ("model", "purpose"),
    [
        (StepUpRecommended, "step_recommendation"),
        (StepDownRecommended, "step_recommendation"),
        (AttendanceRuleTriggered, "attendance_escalation"),
    ],
)
async def test_a_clinical_judgement_reaches_the_care_team_only(
    events: Events, messaging: Messaging, intake: FakeIntake, model: type[EventData], purpose: str
) -> None:
    episode_id = intake.episode()
    for scope in ("appointments", "attendance", "level_of_care", "general_progress"):
        intake.consent(episode_id, "family", scope)
    if model is AttendanceRuleTriggered:
        data: EventData = AttendanceRuleTriggered(
            episode_id=episode_id, rule_code="two_consecutive", action="care_team_review", session_id="s002",
            consecutive_misses=2, misses_in_window=2, rationale=REASONS, policy_version="test",
            triggered_at=utc_now(),
        )  # fmt: skip
    else:
        data = step(model, episode_id)  # type: ignore[arg-type]
    await events.deliver(care_plan_event(data))
    log = await log_of(messaging, episode_id)
    assert what(log) == [(purpose, "care_team", "email")] and not log[0].urgent
    assert intake.asked == []  # no support is even looked up


async def test_a_graduation_ends_the_reminders_and_enrols_a_consented_graduate(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase, wakes: list[str]
) -> None:
    episode_id = await started(events, intake)
    consent_id = intake.consent(episode_id, "alumni_group", "alumni_program")
    event = care_plan_event(graduated(episode_id))
    await events.deliver(event)
    log = await log_of(messaging, episode_id)
    assert {(n.status, n.last_error) for n in reminders(log)} == {("cancelled", "the episode ended")}
    assert what([n for n in log if n.purpose == "graduation"]) == [("graduation", "patient", "email")]
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None and (enrolment.status, enrolment.consent_id) == ("enrolled", consent_id)
    assert enrolment.patient_id == intake.patients[episode_id]
    [(topic, data)] = await queued(database[ALUMNI])
    assert (topic, data["consent_id"], data["check_in_days"]) == ("iop.alumni.enrolled", consent_id, [7, 30, 60, 90])
    alumni = [n for n in log if n.series_kind == "alumni"]
    assert len(alumni) == ALUMNI_MESSAGES
    assert {(n.recipient_kind, n.consent_id, n.channel) for n in alumni} == {("alumni", consent_id, "email")}
    assert {n.purpose for n in alumni} == {"alumni_welcome", "alumni_check_in", "alumni_meeting"}
    assert "relay" in wakes and wakes.count("dispatcher") == 2  # the plan, then the graduation
    await events.deliver(event)  # redelivered: enrolled once, planned once
    assert len(await log_of(messaging, episode_id)) == len(log) and len(await queued(database[ALUMNI])) == 1


async def test_without_an_alumni_consent_a_graduate_is_not_enrolled(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = await started(events, intake)
    intake.consent(episode_id, "family", "alumni_program")  # a support is never enrolled
    await events.deliver(care_plan_event(graduated(episode_id)))
    assert await messaging.alumni.get(episode_id) is None and await queued(database[ALUMNI]) == []
    assert [n for n in await log_of(messaging, episode_id) if n.series_kind == "alumni"] == []


async def test_a_discharge_ends_the_reminders_and_asks_the_care_team_to_review(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    discharge = EpisodeDischarged(episode_id=episode_id, discharged_at=utc_now(), level=CareLevel.IOP,
                                  reason_code="non_attendance")  # fmt: skip
    await events.deliver(care_plan_event(discharge))
    log = await log_of(messaging, episode_id)
    assert {(n.status, n.last_error) for n in reminders(log)} == {("cancelled", "the episode ended")}
    assert what([n for n in log if n.cause_event_type == "iop.episode.discharged"]) == [
        ("discharge_review", "care_team", "email")
    ]
    late = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now(),
                           schedule=calendar(in_days(3)))  # fmt: skip
    await events.deliver(care_plan_event(late))  # a calendar after the end: no reminder
    assert [n for n in reminders(await log_of(messaging, episode_id)) if n.status == "pending"] == []


async def test_a_revoked_consent_cancels_what_waits_for_that_support(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    family = intake.consent(episode_id, "family", "attendance")
    other = intake.consent(episode_id, "designated_support", "attendance")
    await events.deliver(care_plan_event(session_missed(episode_id)))
    await events.deliver(intake_event(consent_changed(episode_id, family, "family", status="granted")))
    assert {n.status for n in await log_of(messaging, episode_id)} == {"pending"}  # a grant changes nothing
    intake.revoke(episode_id, family)
    await events.deliver(intake_event(consent_changed(episode_id, family, "family")))
    log = await log_of(messaging, episode_id)
    assert {(n.status, n.last_error) for n in log if n.consent_id == family} == {
        ("cancelled", "consent no longer in force")
    }
    assert {n.status for n in log if n.consent_id != family} == {"pending"}
    assert {n.consent_id for n in log if n.consent_id} == {family, other}


async def test_a_revoked_alumni_consent_ends_the_enrolment(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None
    intake.revoke(episode_id, enrolment.consent_id)
    await events.deliver(intake_event(consent_changed(episode_id, enrolment.consent_id, "alumni_group")))
    left = await messaging.alumni.get(episode_id)
    assert left is not None and (left.status, left.left_reason) == ("left", "consent_withdrawn")
    assert [topic for topic, _ in await queued(database[ALUMNI])] == ["iop.alumni.enrolled", "iop.alumni.left"]
    alumni = [n for n in await log_of(messaging, episode_id) if n.series_kind == "alumni"]
    assert {n.status for n in alumni} == {"cancelled"}


async def test_revoking_another_alumni_consent_leaves_the_enrolment(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    other = intake.consent(episode_id, "alumni_group", "alumni_program")  # not the one the graduate enrolled under
    intake.revoke(episode_id, other)
    await events.deliver(intake_event(consent_changed(episode_id, other, "alumni_group")))
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None and enrolment.status == "enrolled" and enrolment.consent_id != other
    assert [topic for topic, _ in await queued(database[ALUMNI])] == ["iop.alumni.enrolled"]
    alumni = [n for n in await log_of(messaging, episode_id) if n.series_kind == "alumni"]
    assert len(alumni) == ALUMNI_MESSAGES and {n.status for n in alumni} == {"pending"}


@pytest.mark.parametrize("topic", sorted(model.event_type for model in EVENT_HANDLERS))
async def test_a_malformed_event_is_set_aside_naming_the_field(
    events: Events, database: MemoryDatabase, topic: str
) -> None:
    await events.deliver_missing_data(topic)
    [shelved] = await set_aside(database)
    assert shelved["topic"] == topic and shelved["reason"].startswith("malformed:")


async def test_the_ur_mailbox_hears_of_reviews_due_units_low_exhaustion_and_unauthorized_services(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    from stepwise_contract import new_event
    from tests.unit.contract.test_contract import UR_SAMPLES

    episode_id = intake.episode()
    signals = ("iop.authorization.review_due", "iop.authorization.units_low", "iop.authorization.exhausted",
               "iop.service.unauthorized")  # fmt: skip
    for event_type in signals:
        await events.deliver(new_event(UR_SAMPLES[event_type](episode_id), source="/stepwise/authorizations"))
    log = await log_of(messaging, episode_id)
    assert what(log) == [("authorization_exhausted", "care_team", "email"),
                         ("authorization_review_due", "care_team", "email"),
                         ("authorization_units_low", "care_team", "email"),
                         ("service_unauthorized", "care_team", "email")]  # fmt: skip


async def test_a_new_episodes_calendar_is_stored_without_looking_for_one_first(
    events: Events, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = intake.episode()
    database.calls.clear()
    await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    assert [call for call in database.calls if call[1] == SCHEDULES] == [("insert", SCHEDULES)]
    changed = ScheduleChanged(episode_id=episode_id, level=CareLevel.IOP, changed_at=utc_now(),
                              schedule=calendar(in_days(3), in_days(5)))  # fmt: skip
    database.calls.clear()
    await events.deliver(care_plan_event(changed))  # a later calendar: looked up, then replaced
    assert [call for call in database.calls if call[1] == SCHEDULES] == [("find", SCHEDULES), ("update", SCHEDULES)]
