"""The notifications tier's set-up: its settings, policy and app, and the events care_plan and intake publish.

Intake is a fake behind ``httpx.MockTransport`` (``fake_intake.py``, checked against intake's own app): the
consents, the patient of each episode and contact data are what a test gives it. The dispatcher is built but
never run: nothing is sent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from services.common.auth import Role
from services.common.utc import utc_now
from services.notifications import api
from services.notifications.app import load_checked_policy
from services.notifications.changes import Messaging
from services.notifications.domain.delivery import Notification
from services.notifications.rendering import Templates
from services.notifications.settings import NotificationsSettings
from stepwise_contract import (
    CareLevel,
    CareLevelAssigned,
    CloudEvent,
    EpisodeGraduated,
    EventData,
    Reason,
    SafetyAlertRaised,
    Schedule,
    ScheduledSession,
    SessionMissed,
    new_event,
)
from tests.service.conftest import TIER_CLOCK, Events, as_role, service_app
from tests.service.fake_intake import FakeIntake

SETTINGS = NotificationsSettings(
    _env_file=None,
    care_team_email="care-team@clinic.test",
    ur_team_email="utilization-review@clinic.test",
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
"""One app for the tier (its OpenAPI document, which the tier reads to name routes, is built once)."""


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


def session_missed(episode_id: str) -> SessionMissed:
    return SessionMissed(episode_id=episode_id, session_id="s001", starts_at=utc_now() - timedelta(hours=4),
                         detected="reported", recorded_at=utc_now(), consecutive_misses=1,
                         total_misses=1)  # fmt: skip


async def log_of(messaging: Messaging, episode_id: str) -> list[Notification]:
    return await messaging.store.find(episode_id=episode_id, limit=500)


def what(notifications: list[Notification]) -> list[tuple[str, str, str]]:
    return sorted((n.purpose, n.recipient_kind, n.channel) for n in notifications)


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


async def alert(events: Events, intake: FakeIntake) -> str:
    episode_id = intake.episode()
    raised = SafetyAlertRaised(episode_id=episode_id, alert_id="a1", assessment_id="x", level="immediate",
                               reasons=["cssrs_high_risk"], raised_at=utc_now())  # fmt: skip
    await events.deliver(intake_event(raised))
    return episode_id
