"""notifications in-process: each handler applying its event, each endpoint's success and main error.

Intake is a fake behind ``httpx.MockTransport`` (``fake_intake.py``, checked against intake's own app): the
consents, the patient of each episode and contact data are what a test gives it. The dispatcher is built but
never run: nothing is sent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr
from pymongo.errors import AutoReconnect, DocumentTooLarge, ServerSelectionTimeoutError

from services.common.auth import Principal, Role
from services.common.consumer import HANDLER_CONTEXT
from services.common.dependencies import Dependencies, DependencyDown
from services.common.kafka import ServiceBroker
from services.common.utc import utc_now, wall_clock
from services.notifications import api, changes
from services.notifications.app import assemble, create_broker, load_checked_policy
from services.notifications.changes import Messaging
from services.notifications.channels import DeliveryError, EmailSender, IntakeContacts, WebhookSender
from services.notifications.dispatcher import UNCONFIGURED_SWEEP, Dispatcher, Senders
from services.notifications.domain.delivery import Notification
from services.notifications.domain.messages import PlannedNotification, schedule_series
from services.notifications.handlers import EVENT_HANDLERS
from services.notifications.rendering import Templates
from services.notifications.settings import NotificationsSettings
from services.notifications.store import ALUMNI, FOREVER, NOTIFICATIONS, SAFETY_ALERTS
from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevel,
    CareLevelAssigned,
    CareLevelChanged,
    CloudEvent,
    ConsentChanged,
    ConsentRecipientKind,
    EpisodeDischarged,
    EpisodeGraduated,
    EventData,
    GroupWaitlisted,
    Reason,
    SafetyAlertRaised,
    Schedule,
    ScheduleChanged,
    ScheduledSession,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
    new_event,
    to_kafka,
)
from stepwise_contract.webhooks import verify
from tests.service.conftest import TIER_CLOCK, Clock, Events, as_role, queued, running, service_app, set_aside
from tests.service.conftest import api as client_of
from tests.service.fake_intake import FakeIntake
from tests.service.memory_mongo import MemoryDatabase
from tools.servers import free_port
from tools.smtp_sink import SmtpSink

SETTINGS = NotificationsSettings(
    _env_file=None,
    care_team_email="care-team@clinic.test",
    care_team_webhook_url="http://on-call.test/hook",
    on_call_phone="+12025550199",  # readiness needs a route to the on-call clinician too
    on_call_webhook_url="http://pager.test/page",
    webhook_secret="webhook-secret",
    sms_provider_url="http://sms.test/messages",  # reminders go by SMS: without a provider none is planned
    sms_from="+12025550000",
    contact_hash_key="contact-hash-key",
    intake_url="http://intake.test",
    intake_token="notifications-token",
)
TEMPLATES = Templates(SETTINGS.templates_dir, SETTINGS.clinic_timezone)
POLICY = load_checked_policy(SETTINGS, TEMPLATES)
CLINICIAN, STAFF = as_role(Role.CLINICIAN), as_role(Role.INTAKE_STAFF)
SMS_PROVIDER = as_role(Role.SMS_PROVIDER)
REASONS = [Reason(code="test", text="A reason.")]
ALUMNI_MESSAGES = 1 + 4 + 26  # the default policy: a welcome, four check-ins, 26 weekly meeting reminders


APP = service_app("notifications", [api.router], consumes=True)
"""One app for the module (its OpenAPI document, which the tier reads to name routes, is built once)."""


@pytest.fixture
def intake() -> FakeIntake:
    return FakeIntake()


@pytest.fixture
def wakes() -> list[str]:
    """Who was woken after a write: "dispatcher" (notifications to send) or "relay" (events to publish)."""
    return []


@pytest.fixture
def dependencies() -> Dependencies:
    return Dependencies()


@pytest.fixture
def settings() -> NotificationsSettings:
    """The service's settings; a test may give its own by parametrizing ``settings``."""
    return SETTINGS


@pytest.fixture
async def parts(
    database: MemoryDatabase,
    intake: FakeIntake,
    wakes: list[str],
    dependencies: Dependencies,
    settings: NotificationsSettings,
) -> AsyncIterator[tuple[Messaging, Dispatcher]]:
    contacts = IntakeContacts(settings, dependencies, transport=httpx.MockTransport(intake.handle))
    assembled, dispatcher = await assemble(
        settings, POLICY, TEMPLATES, database,  # type: ignore[arg-type]
        lambda _collection, _id: wakes.append("relay"), dependencies, contacts=contacts,
    )  # fmt: skip
    yield dataclasses.replace(assembled, wake_dispatcher=lambda _urgent: wakes.append("dispatcher")), dispatcher
    await contacts.close()


@pytest.fixture
def messaging(parts: tuple[Messaging, Dispatcher]) -> Messaging:
    return parts[0]


@pytest.fixture
def dispatcher(parts: tuple[Messaging, Dispatcher]) -> Dispatcher:
    return parts[1]


@pytest.fixture
def kafka() -> ServiceBroker:
    return create_broker(SETTINGS)


@pytest.fixture
async def events(messaging: Messaging, shelf: Any, kafka: ServiceBroker) -> AsyncIterator[Events]:
    broker = kafka.broker
    async for running_events in running("notifications", broker, {HANDLER_CONTEXT: messaging, "event_shelf": shelf}):
        yield running_events


@pytest.fixture
async def http(
    database: MemoryDatabase, messaging: Messaging, kafka: ServiceBroker, dependencies: Dependencies
) -> AsyncIterator[httpx.AsyncClient]:
    state = {"messaging": messaging, "kafka": kafka, "dependencies": dependencies}
    async with await client_of("notifications", APP, database, state) as client:
        yield client


# Events, as care_plan and intake publish them


def care_plan_event(data: EventData) -> CloudEvent[Any]:
    return new_event(data, source="/stepwise/care-plan")


def intake_event(data: EventData) -> CloudEvent[Any]:
    return new_event(data, source="/stepwise/intake")


def calendar(*starts: datetime, first: int = 1) -> Schedule:
    sessions = [ScheduledSession(session_id=f"s{n:03}", starts_at=start, ends_at=start + timedelta(hours=3))
                for n, start in enumerate(starts, start=first)]  # fmt: skip
    return Schedule(timezone=SETTINGS.clinic_timezone, track="morning", days_per_week=3, hours_per_session=3,
                    weeks=6, sessions=sessions)  # fmt: skip


TODAY = TIER_CLOCK
"""Sessions are placed days from this one moment, so a test that names a session's time twice gets it twice."""


def in_days(days: float) -> datetime:
    return TODAY + timedelta(days=days)


def assigned(
    episode_id: str, schedule: Schedule | None, status: Literal["active", "referred_out"] = "active"
) -> CareLevelAssigned:
    return CareLevelAssigned(episode_id=episode_id, level=CareLevel.IOP, status=status,
                             assigned_at=utc_now() - timedelta(hours=1), assessment_id="a1", schedule=schedule,
                             rationale=REASONS, policy_version="test")  # fmt: skip


def graduated(episode_id: str) -> EpisodeGraduated:
    return EpisodeGraduated(episode_id=episode_id, graduated_at=utc_now(), level=CareLevel.IOP, by="completion")


def consent_changed(
    episode_id: str, consent_id: str, kind: ConsentRecipientKind, status: Literal["granted", "revoked"] = "revoked"
) -> ConsentChanged:
    return ConsentChanged(episode_id=episode_id, consent_id=consent_id, recipient_kind=kind, status=status,
                          changed_at=utc_now())  # fmt: skip


def session_missed(episode_id: str) -> SessionMissed:
    return SessionMissed(episode_id=episode_id, session_id="s001", starts_at=utc_now() - timedelta(hours=4),
                         detected="reported", recorded_at=utc_now(), consecutive_misses=1,
                         total_misses=1)  # fmt: skip


def step(model: type[StepUpRecommended] | type[StepDownRecommended], episode_id: str) -> EventData:
    levels = (CareLevel.IOP, CareLevel.PHP) if model is StepUpRecommended else (CareLevel.IOP, CareLevel.OP)
    return model(episode_id=episode_id, recommendation_id="r1", from_level=levels[0], to_level=levels[1],
                 rationale=REASONS, policy_version="test", recommended_at=utc_now())  # fmt: skip


async def log_of(messaging: Messaging, episode_id: str) -> list[Notification]:
    return await messaging.store.find(episode_id=episode_id, limit=500)


def what(notifications: list[Notification]) -> list[tuple[str, str, str]]:
    return sorted((n.purpose, n.recipient_kind, n.channel) for n in notifications)


def reminders(notifications: list[Notification]) -> list[Notification]:
    return [n for n in notifications if n.series_kind == "sessions"]


async def started(events: Events, intake: FakeIntake, patient_id: str | None = None) -> str:
    """An episode whose active care plan (two sessions, four SMS reminders) notifications has planned for."""
    episode_id = intake.episode(patient_id)
    await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    return episode_id


async def alumnus(events: Events, messaging: Messaging, intake: FakeIntake, patient_id: str | None = None) -> str:
    """A graduate under a consent naming the alumni group: enrolled, with the alumni messages planned."""
    episode_id = await started(events, intake, patient_id)
    intake.consent(episode_id, "alumni_group", "alumni_program")
    await events.deliver(care_plan_event(graduated(episode_id)))
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None and enrolment.status == "enrolled"
    return episode_id


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


# Endpoints


async def test_list_notifications(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    await started(events, intake)  # another episode's messages are not listed
    listed = await http.get("/v1/notifications", params={"episode_id": episode_id}, headers=CLINICIAN)
    assert listed.status_code == 200 and len(listed.json()) == 5
    welcome = next(entry for entry in listed.json() if entry["purpose"] == "welcome")
    assert (welcome["recipient_kind"], welcome["channel"], welcome["status"], welcome["attempts"]) == (
        "patient", "email", "pending", 0
    )  # fmt: skip
    assert welcome["cause_event_type"] == "iop.care_level.assigned" and "context" not in welcome
    by_purpose = await http.get("/v1/notifications", params={"episode_id": episode_id, "purpose": "session_reminder",
                                                             "status": "pending"}, headers=CLINICIAN)  # fmt: skip
    assert by_purpose.status_code == 200 and len(by_purpose.json()) == 4
    bad_status = await http.get("/v1/notifications", params={"status": "lost"}, headers=CLINICIAN)
    assert bad_status.status_code == 422 and bad_status.json()["detail"][0]["loc"] == ["query", "status"]
    anonymous = await http.get("/v1/notifications")
    assert anonymous.status_code == 401


async def test_post_opt_out(http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = await started(events, intake)
    body = {"episode_id": episode_id, "recipient_kind": "patient"}
    first = await http.post("/v1/opt-outs", json=body, headers=STAFF)
    assert first.status_code == 201 and first.json()["opt_out_id"] == f"recipient:{episode_id}:patient:-"
    assert first.json()["source"] == "api"
    again = await http.post("/v1/opt-outs", json=body, headers=STAFF)
    assert again.status_code == 200 and again.json() == first.json()
    log = await log_of(messaging, episode_id)
    assert {(n.status, n.last_error) for n in log} == {("cancelled", "the recipient opted out")}
    no_consent = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "family"},
                                 headers=STAFF)  # fmt: skip
    assert no_consent.status_code == 422 and "consent_id" in no_consent.json()["detail"][0]["msg"]
    care_team = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "care_team"},
                                headers=STAFF)  # fmt: skip
    assert care_team.status_code == 422


async def test_an_opt_out_is_only_for_an_episode_intake_has(
    http: httpx.AsyncClient, messaging: Messaging, intake: FakeIntake, dependencies: Dependencies
) -> None:
    unknown = await http.post("/v1/opt-outs", json={"episode_id": "no-such-episode", "recipient_kind": "patient"},
                              headers=STAFF)  # fmt: skip
    assert unknown.status_code == 404 and not await messaging.opt_outs.recorded_by_staff(episode_id=None, limit=10)
    episode_id = intake.episode()
    intake.down = True
    down = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient"},
                           headers=STAFF)  # fmt: skip
    assert down.status_code == 503 and "intake" in down.json()["detail"]
    assert "intake" in dependencies.problems()  # readiness says so too
    intake.down = False
    recorded = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient"},
                               headers=STAFF)  # fmt: skip
    assert recorded.status_code == 201 and "intake" not in dependencies.problems()


async def test_an_alumni_opt_out_ends_the_enrolment(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    opted_out = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "alumni"},
                                headers=STAFF)  # fmt: skip
    assert opted_out.status_code == 201
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None and (enrolment.status, enrolment.left_reason) == ("left", "opted_out")
    assert [topic for topic, _ in await queued(database[ALUMNI])] == ["iop.alumni.enrolled", "iop.alumni.left"]
    alumni = [n for n in await log_of(messaging, episode_id) if n.recipient_kind == "alumni"]
    assert len(alumni) == ALUMNI_MESSAGES and {n.status for n in alumni} == {"cancelled"}


async def test_list_opt_outs(http: httpx.AsyncClient, intake: FakeIntake) -> None:
    episode_id, other = intake.episode(), intake.episode()
    family = intake.consent(episode_id, "family", "attendance")
    for body in ({"episode_id": episode_id, "recipient_kind": "patient"},
                 {"episode_id": episode_id, "recipient_kind": "family", "consent_id": family},
                 {"episode_id": other, "recipient_kind": "patient"}):  # fmt: skip
        assert (await http.post("/v1/opt-outs", json=body, headers=STAFF)).status_code == 201
    await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "STOP"}, headers=SMS_PROVIDER)
    listed = await http.get("/v1/opt-outs", params={"episode_id": episode_id}, headers=CLINICIAN)
    assert listed.status_code == 200
    assert sorted((o["recipient_kind"], o["consent_id"]) for o in listed.json()) == [("family", family),
                                                                                     ("patient", None)]  # fmt: skip
    everyone = await http.get("/v1/opt-outs", headers=CLINICIAN)
    assert len(everyone.json()) == 3  # a STOP reply is kept by number, not listed as a recipient's
    provider = await http.get("/v1/opt-outs", headers=SMS_PROVIDER)
    assert provider.status_code == 403


async def test_withdraw_opt_out(http: httpx.AsyncClient, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = intake.episode()
    opt_out_id = (await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient"},
                                  headers=STAFF)).json()["opt_out_id"]  # fmt: skip
    withdrawn = await http.delete(f"/v1/opt-outs/{opt_out_id}", headers=STAFF)
    assert withdrawn.status_code == 204 and not await messaging.opt_outs.has(opt_out_id)
    again = await http.delete(f"/v1/opt-outs/{opt_out_id}", headers=STAFF)
    assert again.status_code == 404
    await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "STOP"}, headers=SMS_PROVIDER)
    number = messaging.opt_outs.number_key("+12025550100")
    by_number = await http.delete(f"/v1/opt-outs/{number}", headers=STAFF)
    assert by_number.status_code == 404 and await messaging.opt_outs.has(number)  # only the number may say START


async def test_inbound_sms(http: httpx.AsyncClient, messaging: Messaging) -> None:
    number = messaging.opt_outs.number_key("+1 (202) 555-0100")
    stop = await http.post("/v1/sms/inbound", json={"from": "+1 (202) 555-0100", "text": " Stop! "},
                           headers=SMS_PROVIDER)  # fmt: skip
    assert stop.status_code == 200 and stop.json() == {"action": "opted_out"}
    assert await messaging.opt_outs.has(number) and number == messaging.opt_outs.number_key("+12025550100")
    chat = await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "see you tuesday"},
                           headers=SMS_PROVIDER)  # fmt: skip
    assert chat.json() == {"action": "ignored"} and await messaging.opt_outs.has(number)
    start = await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "START"}, headers=SMS_PROVIDER)
    assert start.json() == {"action": "opted_in"} and not await messaging.opt_outs.has(number)
    clinician = await http.post("/v1/sms/inbound", json={"from": "+12025550100", "text": "STOP"}, headers=CLINICIAN)
    assert clinician.status_code == 403 and not await messaging.opt_outs.has(number)


async def test_list_alumni(http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = await alumnus(events, messaging, intake)
    listed = await http.get("/v1/alumni", headers=CLINICIAN)
    assert listed.status_code == 200 and [(a["episode_id"], a["status"]) for a in listed.json()] == [
        (episode_id, "enrolled")
    ]
    left = await http.get("/v1/alumni", params={"status": "left"}, headers=CLINICIAN)
    assert left.status_code == 200 and left.json() == []
    bad_status = await http.get("/v1/alumni", params={"status": "graduated"}, headers=CLINICIAN)
    assert bad_status.status_code == 422


async def test_get_alumni_enrolment(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    found = await http.get(f"/v1/alumni/{episode_id}", headers=CLINICIAN)
    assert found.status_code == 200
    assert (found.json()["status"], found.json()["left_at"], found.json()["left_reason"]) == ("enrolled", None, None)
    unknown = await http.get("/v1/alumni/nobody", headers=CLINICIAN)
    assert unknown.status_code == 404


async def test_set_aside_events_are_listed_for_admins(http: httpx.AsyncClient, events: Events) -> None:
    await events.deliver_missing_data("iop.session.missed")
    listed = await http.get("/v1/set-aside-events", headers=as_role(Role.ADMIN))
    assert listed.status_code == 200 and listed.json()[0]["reason"].startswith("malformed:")
    assert "value" not in listed.json()[0]
    forbidden = await http.get("/v1/set-aside-events", headers=CLINICIAN)
    assert forbidden.status_code == 403


async def test_health_live(http: httpx.AsyncClient) -> None:
    live = await http.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "live"}


async def test_health_ready(database: MemoryDatabase, messaging: Messaging) -> None:
    async def reachable() -> bool:
        return True

    async def unreachable() -> bool:
        raise ConnectionError("no broker")

    checks = {"mongodb": reachable, "kafka": unreachable}
    state = {"messaging": messaging, "readiness_checks": checks}
    async with await client_of("notifications", APP, database, state) as client:
        down = await client.get("/health/ready")
        assert down.status_code == 503
        assert down.json() == {"status": "not_ready", "checks": {"mongodb": True, "kafka": False}}
        checks["kafka"] = reachable
        up = await client.get("/health/ready")
        assert up.status_code == 200 and up.json()["status"] == "ready"


# Outages and configuration mistakes: waited out, never set aside or lost


async def test_intake_down_makes_an_event_wait_and_readiness_say_so(
    events: Events, messaging: Messaging, intake: FakeIntake, dependencies: Dependencies, database: MemoryDatabase,
    http: httpx.AsyncClient,
) -> None:  # fmt: skip
    episode_id = intake.episode()
    started = care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4))))
    intake.down = True
    for _ in range(10):  # as many redeliveries as an outage brings: none is ever set aside
        with pytest.raises(DependencyDown):
            await events.deliver(started)
    assert await set_aside(database) == [] and await log_of(messaging, episode_id) == []
    assert {name: problem.kind for name, problem in dependencies.problems().items()} == {"intake": "down"}
    ready = await http.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"] == {"mongodb": True, "kafka": True, "intake": False}
    assert ready.json()["problems"]["intake"].startswith("down: unreachable")
    intake.down = False
    await events.deliver(started)  # the redelivery after the outage
    assert what(await log_of(messaging, episode_id))
    assert dependencies.problems() == {} and (await http.get("/health/ready")).status_code == 200


async def test_an_unforeseen_error_in_a_handler_is_in_readiness_without_failing_it(
    events: Events, messaging: Messaging, intake: FakeIntake, http: httpx.AsyncClient
) -> None:
    """Not an outage: the event holds its partition, retried without end; readiness lists it from the first
    attempt (the rest of the service works, so it stays ready) until the event is applied."""
    episode_id = intake.episode()
    missed = care_plan_event(session_missed(episode_id))

    async def unforeseen(*_: Any) -> None:
        raise TypeError("an answer no one expected")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(messaging.store, "add", unforeseen)
        with pytest.raises(TypeError):
            await events.deliver(missed)
    ready = await http.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    [(held, problem)] = ready.json()["problems"].items()
    assert held == "iop.session.missed[0]"
    assert problem.startswith("retrying: offset 0 failed with TypeError (attempt 1, since ")
    await events.deliver(missed)  # the redelivery, once the cause is gone
    assert await log_of(messaging, episode_id)
    assert "problems" not in (await http.get("/health/ready")).json()


async def test_a_refused_intake_token_is_a_configuration_error_that_says_what_to_set(
    events: Events, messaging: Messaging, intake: FakeIntake, dependencies: Dependencies, database: MemoryDatabase
) -> None:
    episode_id = intake.episode()
    missed = session_missed(episode_id)
    intake.consent(episode_id, "family", "attendance")
    intake.headers.clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SETTINGS, "intake_token", SecretStr("a-token-intake-does-not-know"))
        contacts = IntakeContacts(SETTINGS, dependencies, transport=httpx.MockTransport(intake.handle))
    with pytest.raises(DependencyDown):
        await dataclasses.replace(messaging, contacts=contacts).contacts.audience(episode_id, frozenset({"attendance"}))
    [problem] = dependencies.problems().values()
    assert problem.kind == "misconfigured" and "INTAKE_TOKEN" in problem.detail
    await events.deliver(care_plan_event(missed))  # with the right token, the same event goes through
    assert await set_aside(database) == []


async def test_an_empty_token_is_not_sent(intake: FakeIntake, dependencies: Dependencies) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SETTINGS, "intake_token", SecretStr(""))
        contacts = IntakeContacts(SETTINGS, dependencies, transport=httpx.MockTransport(intake.handle))
    with pytest.raises(DependencyDown) as refused:
        await contacts.audience(intake.episode(), frozenset())
    assert "authorization" not in intake.headers[-1]
    assert "INTAKE_TOKEN is empty" in refused.value.detail


class FakeChannel:
    """A channel that takes messages, or fails with the errors queued in ``failures`` first."""

    configured = True

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failures: list[Exception] = []

    async def send(self, notification_id: str, *_: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(notification_id)

    async def close(self) -> None:
        return None


@pytest.fixture
def channels(dispatcher: Dispatcher) -> dict[str, FakeChannel]:
    fakes = {"email": FakeChannel(), "sms": FakeChannel(), "webhook": FakeChannel()}
    dispatcher._senders = Senders(fakes["email"], fakes["sms"], fakes["webhook"])  # type: ignore[arg-type]
    return fakes


async def alert(events: Events, intake: FakeIntake) -> str:
    episode_id = intake.episode()
    raised = SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="immediate",
                               reasons=["cssrs_high_risk"], raised_at=utc_now())  # fmt: skip
    await events.deliver(intake_event(raised))
    return episode_id


async def test_a_send_is_recorded_however_long_the_store_refuses_it(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    episode_id = await alert(events, intake)
    refusals = [ServerSelectionTimeoutError("store down"), AutoReconnect("store down")]
    real_mark_sent = messaging.store.mark_sent

    async def flaky_mark_sent(*args: Any) -> None:
        if refusals:
            raise refusals.pop(0)
        await real_mark_sent(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(messaging.store, "mark_sent", flaky_mark_sent)
        await dispatcher.work_once()
    assert len(channels["email"].sent) == 1 and len(channels["webhook"].sent) == 1  # each sent once
    assert {n.status for n in await log_of(messaging, episode_id)} == {"sent"} and refusals == []


async def test_a_channel_outage_is_retried_for_the_time_budget_not_a_count(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    dependencies: Dependencies,
) -> None:  # fmt: skip
    episode_id = await alert(events, intake)
    channels["email"].failures = [DeliveryError("SMTP unavailable: ConnectionRefusedError", permanent=False)] * 30
    for _ in range(30):  # thirty attempts in a row, far more than any count-based budget allowed
        await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
        await dispatcher.work_once()
    [email] = [n for n in await log_of(messaging, episode_id) if n.channel == "email"]
    assert (email.status, email.attempts) == ("pending", 30)
    assert dependencies.problems()["smtp"].kind == "down"
    await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
    await dispatcher.work_once()  # the relay is back
    assert len(channels["email"].sent) == 1 and "smtp" not in dependencies.problems()


async def test_a_recipient_greylisted_waits_alone_and_the_relay_stays_up(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, dependencies: Dependencies,
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A relay's temporary refusal of one recipient (SMTP 450) defers that message, with backoff; only a relay that
    cannot be reached marks the channel down (readiness 503, probing)."""
    with SmtpSink(free_port()) as relay:
        monkeypatch.setattr(SETTINGS, "smtp_host", "127.0.0.1")
        monkeypatch.setattr(SETTINGS, "smtp_port", relay.port)
        dispatcher._senders = Senders(EmailSender(SETTINGS), FakeChannel(), FakeChannel())  # type: ignore[arg-type]
        relay.mailbox.greylisted.add(SETTINGS.care_team_email or "")
        episode_id = await alert(events, intake)
        await dispatcher.work_once()
        [email] = [n for n in await log_of(messaging, episode_id) if n.channel == "email"]
        assert (email.status, email.attempts) == ("pending", 1) and email.not_before > utc_now()
        assert email.last_error is not None and "450" in email.last_error
        assert "smtp" not in dependencies.problems() and (await http.get("/health/ready")).status_code == 200
        relay.mailbox.greylisted.clear()  # the relay takes it at the next attempt
        await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
        await dispatcher.work_once()
        assert len(relay.mailbox.to(SETTINGS.care_team_email or "")) == 1
        relay.pause()  # the relay itself goes away: that is the channel down
        await alert(events, intake)
        await dispatcher.work_once()
        assert dependencies.problems()["smtp"].kind == "down"
        assert (await http.get("/health/ready")).status_code == 503
        relay.resume()


async def test_a_message_fails_for_good_once_its_time_budget_is_spent(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    database: MemoryDatabase,
) -> None:  # fmt: skip
    episode_id = await alert(events, intake)
    long_ago = utc_now() - timedelta(hours=SETTINGS.dispatch_retry_hours, minutes=1)
    await messaging.store.notifications.update_many({"channel": "email"}, {"$set": {"due_at": long_ago}})
    channels["email"].failures = [DeliveryError("SMTP 421", permanent=False)]
    await dispatcher.work_once()
    [email] = [n for n in await log_of(messaging, episode_id) if n.channel == "email"]
    assert email.status == "failed"
    [data] = [d for topic, d in await queued(database[NOTIFICATIONS]) if topic == "iop.notification.failed"]
    assert data["reason_code"] == "retries_exhausted"


async def test_when_a_channel_works_again_what_waits_on_it_goes_at_once(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    first, second = await alert(events, intake), await alert(events, intake)
    channels["email"].failures = [DeliveryError("SMTP unavailable", permanent=False)] * 2
    await dispatcher.work_once()  # both emails fail and wait out their backoff
    waiting = [n for n in await log_of(messaging, first) + await log_of(messaging, second) if n.channel == "email"]
    assert all(n.status == "pending" and n.not_before > utc_now() for n in waiting)
    third = await alert(events, intake)
    await dispatcher.work_once()  # the relay is back: the third goes, and releases the two
    await dispatcher.work_once()
    assert len(channels["email"].sent) == 3, (third, channels["email"].sent)


async def test_a_provider_refusing_our_credentials_makes_messages_wait_without_counting(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    dependencies: Dependencies,
) -> None:  # fmt: skip
    episode_id = await alert(events, intake)
    refused = DependencyDown(
        "care_team_webhook", "refused our signature (401): check WEBHOOK_SECRET", misconfigured=True
    )
    channels["webhook"].failures = [refused] * 5
    for _ in range(5):
        await messaging.store.notifications.update_many({}, {"$set": {"next_attempt_at": utc_now()}})
        await dispatcher.work_once()
    [webhook] = [n for n in await log_of(messaging, episode_id) if n.channel == "webhook"]
    assert (webhook.status, webhook.attempts) == ("pending", 0)
    assert webhook.last_error is not None and "WEBHOOK_SECRET" in webhook.last_error
    assert dependencies.problems()["care_team_webhook"].kind == "misconfigured"


async def test_an_event_an_outage_once_set_aside_is_replayed_and_its_messages_planned(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, shelf: Any
) -> None:
    """Before outages were waited out, a care level assigned while intake was down was set aside for good."""
    episode_id = intake.episode()
    record = to_kafka(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    await shelf.collection.insert_one({
        "_id": f"{record.topic}:0:41", "topic": record.topic, "partition": 0, "offset": 41,
        "key": record.key.decode(), "headers": {name: value.decode() for name, value in record.headers},
        "value": record.value.decode(), "reason": "handler failed 8 times: RuntimeError", "attempts": 8,
        "set_aside_at": utc_now(),
    })  # fmt: skip
    admin = as_role(Role.ADMIN)
    replayed = await http.post("/v1/set-aside-events/replay", params={"reason": "handler failed"}, headers=admin)
    assert replayed.status_code == 200 and [e["replays"][-1]["outcome"] for e in replayed.json()] == ["applied"]
    assert ("welcome", "patient", "email") in what(await log_of(messaging, episode_id))
    once = await http.post(f"/v1/set-aside-events/{record.topic}:0:41/replay", headers=admin)
    assert once.json()["replays"][-1]["outcome"] == "applied" and len(once.json()["replays"]) == 1
    await events.deliver_missing_data("iop.session.missed")
    [malformed] = [e for e in (await http.get("/v1/set-aside-events", headers=admin)).json() if e["offset"] == 0]
    again = await http.post(f"/v1/set-aside-events/{malformed['id']}/replay", headers=admin)
    assert again.json()["replays"][-1]["outcome"] == "set_aside_again"
    assert again.json()["replays"][-1]["detail"].startswith("malformed:")
    assert (await http.post("/v1/set-aside-events/nope/replay", headers=admin)).status_code == 404
    assert (await http.post("/v1/set-aside-events/replay", headers=CLINICIAN)).status_code == 403
    intake.down = True
    down = await http.post(f"/v1/set-aside-events/{malformed['id']}/replay", headers=admin)
    assert down.status_code == 200  # a malformed event needs nothing from intake to be found malformed again


async def test_while_a_channel_is_down_one_waiting_message_probes_it(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    first, second = await alert(events, intake), await alert(events, intake)
    channels["email"].failures = [DeliveryError("SMTP unavailable", permanent=False)] * 2
    await dispatcher.work_once()  # the relay is down: both wait out a backoff
    await dispatcher.work_once()  # the next pass probes with one of them at once: the relay is back
    await dispatcher.work_once()
    assert len(channels["email"].sent) == 2, (first, second)


async def test_an_alumni_opt_out_stops_the_alumni_messages_when_they_are_due(
    http: httpx.AsyncClient, events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher,
    channels: dict[str, FakeChannel],
) -> None:  # fmt: skip
    episode_id = await started(events, intake)
    intake.consent(episode_id, "alumni_group", "alumni_program")
    opted_out = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "alumni"},
                                headers=STAFF)  # fmt: skip
    assert opted_out.status_code == 201  # before graduation: there is no enrolment to end yet
    await events.deliver(care_plan_event(graduated(episode_id)))  # its messages carry the alumni consent
    _, routine = dispatcher.lanes
    await routine.work_once()
    [welcome] = [n for n in await log_of(messaging, episode_id) if n.purpose == "alumni_welcome"]
    assert (welcome.status, welcome.last_error) == ("cancelled", "the recipient opted out")
    assert welcome.notification_id not in channels["email"].sent


# Lanes: urgent messages are claimed and sent apart from routine ones


async def test_the_urgent_lane_sends_an_alert_while_a_routine_backlog_waits(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    backlog = [intake.episode() for _ in range(5)]
    for episode_id in backlog:
        await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    episode_id = await alert(events, intake)
    urgent, routine = dispatcher.lanes
    assert (urgent.urgent, routine.urgent) == (True, False)
    assert await urgent.work_once() == 2  # the alert's email and webhook
    [sent] = channels["email"].sent
    assert sent in {n.notification_id for n in await log_of(messaging, episode_id)} and channels["webhook"].sent
    waiting = [n for episode in backlog for n in await log_of(messaging, episode)]
    assert all(n.status == "pending" for n in waiting)
    due = [n for n in waiting if n.not_before <= utc_now()]
    assert len(due) >= 5 and await routine.work_once() == len(due)  # the welcomes and all due, several at once


async def test_channels_not_configured_are_looked_at_only_now_and_then(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel]
) -> None:
    episode_id = await alert(events, intake)  # the policy plans email and webhook for the care team
    urgent, _ = dispatcher.lanes
    urgent._configured, urgent._swept = ("email",), wall_clock()  # as if the webhook were not configured
    await urgent.work_once()  # a pass on the configured channels only
    assert {n.channel: n.status for n in await log_of(messaging, episode_id)} == {"email": "sent", "webhook": "pending"}
    urgent._swept = wall_clock() - UNCONFIGURED_SWEEP
    await urgent.work_once()  # now and then every channel: what waits on one removed from the settings ends
    assert {n.channel: n.status for n in await log_of(messaging, episode_id)} == {"email": "sent", "webhook": "sent"}


async def test_planning_an_event_asks_intake_once(events: Events, messaging: Messaging, intake: FakeIntake) -> None:
    episode_id = intake.episode()
    intake.consent(episode_id, "family", "appointments")
    await events.deliver(care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4)))))
    assert intake.asked == [f"/v1/episodes/{episode_id}/audience"]  # the patient and the supports, together
    assert {n.recipient_kind for n in await log_of(messaging, episode_id)} >= {"patient", "family"}
    await asyncio.gather(*(messaging.contacts.audience(episode_id, frozenset({"attendance"})) for _ in range(3)))
    assert len(intake.asked) == 2  # concurrent identical questions share one request


# Checked at send time: consent and quiet hours, by the tier's fixed clock


async def test_a_consent_that_expires_while_its_message_waits_stops_the_message(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    clock: Clock,
) -> None:  # fmt: skip
    episode_id = await started(events, intake)
    family = intake.consent(episode_id, "family", "attendance", expires_on=utc_now().date() + timedelta(days=1))
    await events.deliver(care_plan_event(session_missed(episode_id)))
    [waiting] = [n for n in await log_of(messaging, episode_id) if n.consent_id == family]
    assert waiting.status == "pending"
    clock.advance(timedelta(days=2))  # no event says a consent expired: intake answers 410 when asked at send time
    await dispatcher.work_once()
    [stopped] = [n for n in await log_of(messaging, episode_id) if n.consent_id == family]
    assert (stopped.status, stopped.last_error) == ("cancelled", "consent no longer in force")
    assert waiting.notification_id not in channels["email"].sent


async def test_in_quiet_hours_a_safety_alert_goes_at_once_and_a_welcome_waits_for_their_end(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, channels: dict[str, FakeChannel],
    clock: Clock,
) -> None:  # fmt: skip
    new_york = ZoneInfo(SETTINGS.clinic_timezone)
    clock.at(datetime(2026, 12, 1, 7, 31, tzinfo=new_york))  # quiet hours (21:00-08:00) by default
    welcomed = await started(events, intake)
    alerted = await alert(events, intake)
    await dispatcher.work_once()
    assert {n.channel: n.status for n in await log_of(messaging, alerted)} == {"email": "sent", "webhook": "sent"}
    [welcome] = [n for n in await log_of(messaging, welcomed) if n.purpose == "welcome"]
    assert (welcome.status, welcome.not_before) == ("pending", datetime(2026, 12, 1, 8, 0, tzinfo=new_york))
    assert welcome.notification_id not in channels["email"].sent
    clock.at(datetime(2026, 12, 1, 8, 0, 1, tzinfo=new_york))
    await dispatcher.work_once()
    assert welcome.notification_id in channels["email"].sent


WEBHOOK_ONLY = SETTINGS.model_copy(update={"care_team_email": None})
"""A clinic whose care team has only CARE_TEAM_WEBHOOK_URL."""


@pytest.mark.parametrize("settings", [WEBHOOK_ONLY])
async def test_a_care_team_with_only_a_webhook_gets_referrals_and_escalations_there(
    events: Events, messaging: Messaging, intake: FakeIntake, dispatcher: Dispatcher, settings: NotificationsSettings
) -> None:
    posted: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(200)

    webhook = WebhookSender(settings.webhook_secret.get_secret_value())
    webhook._client = httpx.AsyncClient(transport=httpx.MockTransport(receive))
    dispatcher._senders = Senders(FakeChannel(), FakeChannel(), webhook)  # type: ignore[arg-type]
    episode_id = intake.episode()
    referral = StepUpRecommended(episode_id=episode_id, recommendation_id="r1", from_level=CareLevel.IOP,
                                 to_level=CareLevel.INPATIENT, rationale=REASONS, policy_version="test",
                                 recommended_at=utc_now(), refer_out=True)  # fmt: skip
    escalation = AttendanceRuleTriggered(episode_id=episode_id, rule_code="two_consecutive",
                                         action="care_team_review", session_id="s002", consecutive_misses=2,
                                         misses_in_window=2, rationale=REASONS, policy_version="test",
                                         triggered_at=utc_now())  # fmt: skip
    for data in (referral, escalation):
        await events.deliver(care_plan_event(data))
    assert what(await log_of(messaging, episode_id)) == [("attendance_escalation", "care_team", "webhook"),
                                                         ("step_recommendation", "care_team", "webhook")]  # fmt: skip
    await dispatcher.work_once()
    assert {n.status for n in await log_of(messaging, episode_id)} == {"sent"}
    secret = settings.webhook_secret.get_secret_value()
    assert all(verify(secret, request.headers, request.content, now=time.time()) for request in posted)
    bodies = {body["purpose"]: body for body in (json.loads(request.content) for request in posted)}
    assert {key: value for key, value in bodies["step_recommendation"].items() if key != "notification_id"} == {
        "purpose": "step_recommendation", "episode_id": episode_id, "recommendation_id": "r1", "direction": "up",
        "from_level": "IOP", "to_level": "INPATIENT", "refer_out": True, "reasons": ["test"],
    }  # fmt: skip
    assert {key: value for key, value in bodies["attendance_escalation"].items() if key != "notification_id"} == {
        "purpose": "attendance_escalation", "episode_id": episode_id, "rule_code": "two_consecutive",
        "action": "care_team_review", "session_id": "s002", "reasons": ["test"],
    }  # fmt: skip
    assert "A reason." not in str(bodies)  # a reason's text stays in the clinic's mailbox, never on a webhook
    await webhook.close()


async def test_a_store_refusing_an_alerts_write_is_a_409_naming_the_record_not_a_500(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake, database: MemoryDatabase
) -> None:
    await alert(events, intake)

    async def too_large(*_: Any, **__: Any) -> None:
        raise DocumentTooLarge("BSON document too large")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(database[SAFETY_ALERTS], "update_one", too_large)
        refused = await http.post("/v1/safety-alerts/a1/acknowledge", headers=CLINICIAN)
    assert refused.status_code == 409, refused.text
    assert refused.json()["detail"].startswith("the record is at its size limit: the safety alert record")
    assert (await http.post("/v1/safety-alerts/a1/acknowledge", headers=CLINICIAN)).status_code == 200


# What the OpenAPI document says the requests take


async def test_an_opt_out_names_a_supports_consent_and_no_other_before_intake_is_asked(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake, messaging: Messaging
) -> None:
    episode_id = await started(events, intake)
    intake.asked.clear()
    for body, field, rule in (
        ({"recipient_kind": "family"}, "consent_id", "missing"),
        ({"recipient_kind": "designated_support"}, "consent_id", "missing"),
        ({"recipient_kind": "patient", "consent_id": "c-1"}, "consent_id", "consent_only_for_supports"),
        ({"recipient_kind": "alumni", "consent_id": "c-1"}, "consent_id", "consent_only_for_supports"),
        ({"recipient_kind": "care_team"}, "recipient_kind", "literal_error"),
    ):
        refused = await http.post("/v1/opt-outs", json={"episode_id": episode_id} | body, headers=STAFF)
        assert refused.status_code == 422, body
        assert [(e["loc"], e["type"]) for e in refused.json()["detail"]] == [(["body", field], rule)], body
    assert intake.asked == [] and await messaging.opt_outs.recorded_by_staff(episode_id=episode_id, limit=10) == []
    taken = await http.post("/v1/opt-outs", json={"episode_id": episode_id, "recipient_kind": "patient",
                                                  "consent_id": None}, headers=STAFF)  # fmt: skip
    assert taken.status_code == 201  # a null consent_id, as before


async def test_a_filter_misspelt_given_twice_or_past_the_calendar_is_a_422_not_everything_or_a_server_error(
    http: httpx.AsyncClient, events: Events, intake: FakeIntake
) -> None:
    await started(events, intake)
    misspelt = await http.get("/v1/notifications", params={"stauts": "failed"}, headers=CLINICIAN)
    assert misspelt.status_code == 422 and misspelt.json()["detail"][0]["loc"] == ["query", "stauts"]
    twice = await http.get("/v1/notifications", params=[("status", "failed"), ("status", "sent")], headers=CLINICIAN)
    assert twice.status_code == 422 and twice.json()["detail"][0]["loc"] == ["query", "status"]
    for since in ("0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01"):
        edge = await http.get("/v1/notifications", params={"since": since}, headers=CLINICIAN)
        assert edge.status_code == 422, since
        assert [(e["loc"], e["type"]) for e in edge.json()["detail"]] == [(["query", "since"], "datetime_range")]
    assert (await http.get("/v1/notifications", params={"since": "1970-01-01T00:00:00Z"},
                           headers=CLINICIAN)).status_code == 200  # fmt: skip


# The change path (changes.py) driven directly


async def test_ending_an_enrolment_says_whether_this_call_ended_it_and_decides_again_after_a_lost_write(
    events: Events, messaging: Messaging, intake: FakeIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode_id = await alumnus(events, messaging, intake)
    real_save = messaging.alumni.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)  # the first write finds the enrolment changed meanwhile
        saves.append(saved)
        return saved

    monkeypatch.setattr(messaging.alumni, "save", first_loses)
    assert await changes.end_alumni_enrolment(messaging, episode_id, "opted_out") is True
    assert saves == [False, True]
    enrolment = await messaging.alumni.get(episode_id)
    assert enrolment is not None and (enrolment.status, enrolment.left_reason) == ("left", "opted_out")
    assert await changes.end_alumni_enrolment(messaging, episode_id, "new_episode") is False  # ended already
    assert await changes.end_alumni_enrolment(messaging, "no-such-episode", "opted_out") is False


async def test_a_supports_opt_out_cancels_what_waits_under_that_consent_only(messaging: Messaging) -> None:
    planned = [PlannedNotification(f"n-{consent}", "e1", "appointment_reminder", "family", "email", consent_id=consent)
               for consent in ("c1", "c2")]  # fmt: skip
    assert await messaging.store.add(planned, {"event_id": "x", "event_source": "/test", "event_type": "t"}) == 2
    recorded, added = await changes.opt_out(messaging, "e1", "family", "c1")
    assert added and recorded.consent_id == "c1"
    assert sorted((n.consent_id, n.status) for n in await log_of(messaging, "e1")) == [
        ("c1", "cancelled"),
        ("c2", "pending"),
    ]


async def test_an_alert_is_acknowledged_once_in_the_role_it_was_acknowledged_in_even_after_a_lost_write(
    events: Events, messaging: Messaging, intake: FakeIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    await alert(events, intake)
    real_save = messaging.safety.alerts.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)  # the first write finds the alert changed meanwhile
        saves.append(saved)
        return saved

    monkeypatch.setattr(messaging.safety.alerts, "save", first_loses)
    by = Principal(Role.CLINICIAN, "tok-1", username="dr.lee")
    acknowledged = await changes.acknowledge_alert(messaging, "a1", by)
    assert acknowledged is not None and acknowledged[1] is True and saves == [False, True]
    kept = await messaging.safety.alerts.get_stored("a1")
    assert kept is not None and (kept.alert.status, kept.alert.acknowledged_by, kept.alert.acknowledged_as) == (
        "acknowledged", "dr.lee", "clinician",
    )  # fmt: skip
    again = await changes.acknowledge_alert(messaging, "a1", Principal(Role.CLINICIAN, "tok-2", username="dr.kim"))
    assert again is not None and again[1] is False and again[0].acknowledged_by == "dr.lee"  # the first stands
    assert await changes.acknowledge_alert(messaging, "no-such-alert", by) is None


async def test_a_graduation_delivered_again_plans_the_alumni_messages_again_only_while_enrolled(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = await started(events, intake)
    intake.consent(episode_id, "alumni_group", "alumni_program")
    event = care_plan_event(graduated(episode_id))
    first = await changes.enrol_alumnus(messaging, event)
    assert len(first) == ALUMNI_MESSAGES
    again = await changes.enrol_alumnus(messaging, event)  # a redelivery: the same messages, stored once by their ids
    assert [p.notification_id for p in again] == [p.notification_id for p in first]
    await changes.end_alumni_enrolment(messaging, episode_id, "opted_out")
    assert await changes.enrol_alumnus(messaging, event) == []  # left meanwhile: nothing planned


async def test_what_is_kept_names_the_event_that_caused_it(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase
) -> None:
    episode_id = intake.episode()
    raised = intake_event(SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="immediate",
                                            reasons=["cssrs_high_risk"], raised_at=utc_now()))  # fmt: skip
    await events.deliver(raised)
    cause = {"event_id": raised.id, "event_source": "/stepwise/intake", "event_type": "iop.safety.alert_raised"}
    kept = await database[SAFETY_ALERTS].find_one({"_id": "a1"})
    assert kept is not None and kept["cause"] == cause
    stored = [document async for document in database[NOTIFICATIONS].find({"episode_id": episode_id})]
    assert stored and all(document["cause"] == cause for document in stored)


async def test_an_overdue_alert_is_escalated_once_with_its_pages_woken_urgently(
    events: Events, messaging: Messaging, intake: FakeIntake, database: MemoryDatabase, clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    await alert(events, intake)
    wakes: list[bool] = []
    desk = dataclasses.replace(messaging.safety, console_base_url="https://console.test/")
    paging = dataclasses.replace(messaging, safety=desk, wake_dispatcher=wakes.append)
    assert await changes.escalate_alert(paging, "a1") is False  # not due yet by this clock
    kept = await paging.safety.alerts.get_stored("a1")
    assert kept is not None and kept.alert.status == "open" and kept.alert.escalated_at is None
    clock.at(kept.alert.acknowledge_by + timedelta(seconds=1))
    real_save = paging.safety.alerts.save
    saves: list[bool] = []

    async def first_loses(*args: Any) -> bool:
        saved = bool(saves) and await real_save(*args)
        saves.append(saved)
        return saved

    monkeypatch.setattr(paging.safety.alerts, "save", first_loses)
    assert await changes.escalate_alert(paging, "a1") is True
    assert saves == [False, True] and wakes == [True]
    pages = [document async for document in database[NOTIFICATIONS].find({"purpose": "safety_escalation"})]
    assert {page["channel"] for page in pages} == {"sms", "webhook"}
    assert all(page["cause"] == {"event_id": "a1", "event_source": "/stepwise/notifications",
                                 "event_type": "iop.safety.alert_escalated"} for page in pages)  # fmt: skip
    assert {page["context"]["console_url"] for page in pages} == {"https://console.test/safety-alerts/a1"}
    settled = await database[SAFETY_ALERTS].find_one({"_id": "a1"})
    assert settled is not None and settled["due_at"] == FOREVER
    assert await changes.escalate_alert(paging, "a1") is False  # escalated already
    assert wakes == [True]
    assert await changes.escalate_alert(paging, "no-such-alert") is False


async def test_an_adopted_calendar_is_current_and_plans_reminders_only_for_an_active_plan_whose_policy_has_them(
    messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    event = care_plan_event(assigned(episode_id, calendar(in_days(2), in_days(4))))
    _, planned = await changes.adopt_calendar(messaging, event)
    assert planned and await messaging.schedules.is_current(episode_id, schedule_series(event.data.assigned_at))
    quiet = dataclasses.replace(messaging, policy=messaging.policy.model_copy(update={"session_reminders": None}))
    other = intake.episode()
    assert (await changes.adopt_calendar(quiet, care_plan_event(assigned(other, calendar(in_days(2))))))[1] == []
    referred = intake.episode()
    event = care_plan_event(assigned(referred, calendar(in_days(2)), status="referred_out"))
    assert (await changes.adopt_calendar(messaging, event))[1] == []


async def test_no_unreachable_notice_for_an_episode_intake_does_not_know(messaging: Messaging) -> None:
    event = care_plan_event(assigned("no-such-episode", calendar(in_days(2))))
    assert await changes.notice_if_unreachable(messaging, event) == []


async def test_storing_messages_wakes_the_lane_they_belong_to(
    events: Events, messaging: Messaging, intake: FakeIntake
) -> None:
    episode_id = intake.episode()
    wakes: list[bool] = []
    woken = dataclasses.replace(messaging, wake_dispatcher=wakes.append)
    assert await changes.notify(woken, care_plan_event(session_missed(episode_id))) > 0
    assert wakes == [False]  # a routine message: the routine lane only
    raised = SafetyAlertRaised(episode_id=episode_id, alert_id="a2", assessment_id="x", level="immediate",
                               reasons=["cssrs_high_risk"], raised_at=utc_now())  # fmt: skip
    assert await changes.notify(woken, intake_event(raised)) > 0
    assert wakes[1:] == [True]
