"""Safety alerts as a page, pure: deadlines (a setting for immediate alerts, the policy for same-day ones),
acknowledgement, one escalation to the on-call route with a generic page, and the routes readiness requires."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.common.policy_file import PolicyError
from services.notifications.domain import safety
from services.notifications.domain.messages import MESSAGE_EVENTS
from services.notifications.domain.policy import DEFAULT_POLICY_FILE, OpeningHours, SameDayDeadline, load_policy
from services.notifications.domain.safety import Deadlines, SafetyAlert, StaffRoutes
from services.notifications.rendering import Templates
from services.notifications.settings import NotificationsSettings
from stepwise_contract import AlertLevel, SafetyAlertRaised

NEW_YORK = ZoneInfo("America/New_York")
POLICY = load_policy(DEFAULT_POLICY_FILE, frozenset(MESSAGE_EVENTS))
SAME_DAY = POLICY.safety_alerts.same_day
DEADLINES = Deadlines(timedelta(seconds=900), SAME_DAY, "America/New_York")


def local(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


def raised(level: AlertLevel = "immediate", at: datetime | None = None) -> SafetyAlertRaised:
    return SafetyAlertRaised(episode_id="ep-1", alert_id="alert-1", assessment_id="as-1", level=level,
                             reasons=["cssrs_high_risk"], raised_at=at or local(2026, 12, 7, 10))  # fmt: skip


def alert(level: AlertLevel = "immediate", at: datetime | None = None) -> SafetyAlert:
    return safety.track(raised(level, at), DEADLINES)


# Deadlines


def test_an_immediate_alert_is_due_safety_ack_seconds_after_it_was_raised() -> None:
    kept = alert("immediate", local(2026, 12, 5, 23, 30))  # a Saturday night: the clinic's hours do not matter
    assert kept.acknowledge_by == local(2026, 12, 5, 23, 45).astimezone(UTC)
    assert (kept.status, kept.escalated_at, kept.acknowledged_at) == ("open", None, None)


@pytest.mark.parametrize(
    ("raised_at", "due"),
    [
        (local(2026, 12, 7, 9), local(2026, 12, 7, 13)),  # Monday morning: within 4 hours
        (local(2026, 12, 7, 16), local(2026, 12, 7, 18)),  # Monday afternoon: by closing time, which comes first
        (local(2026, 12, 7, 17, 59), local(2026, 12, 7, 18)),
        (local(2026, 12, 7, 18), local(2026, 12, 7, 18)),  # at closing: closed, the on-call route at once
        (local(2026, 12, 7, 7, 30), local(2026, 12, 7, 7, 30)),  # before opening: closed
        (local(2026, 12, 5, 11), local(2026, 12, 5, 11)),  # a Saturday: closed
        (local(2026, 12, 25, 10), local(2026, 12, 25, 10)),  # a Friday, but a closure
    ],
)
def test_a_same_day_alert_is_due_within_hours_or_by_closing_time_and_at_once_while_closed(
    raised_at: datetime, due: datetime
) -> None:
    assert alert("same_day", raised_at).acknowledge_by == due.astimezone(UTC)


def test_the_clinic_sets_its_hours_its_wait_while_closed_and_its_zone() -> None:
    rule = SameDayDeadline(within_hours=2, hours={"saturday": OpeningHours(opens=time(9), closes=time(13))},
                           when_closed_within_minutes=30, timezone="America/Los_Angeles")  # fmt: skip
    deadlines = Deadlines(timedelta(seconds=60), rule, "America/New_York")
    la = ZoneInfo("America/Los_Angeles")
    saturday_morning = datetime(2026, 12, 5, 10, tzinfo=la)
    assert deadlines.acknowledge_by("same_day", saturday_morning) == datetime(2026, 12, 5, 12, tzinfo=la)
    sunday = datetime(2026, 12, 6, 10, tzinfo=la)
    assert deadlines.acknowledge_by("same_day", sunday) == sunday + timedelta(minutes=30)


@given(st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)))
def test_a_same_day_deadline_is_never_before_the_alert_nor_later_than_its_hours(raised_at: datetime) -> None:
    due = DEADLINES.acknowledge_by("same_day", raised_at)
    assert raised_at <= due <= raised_at + timedelta(hours=SAME_DAY.within_hours)
    assert due.tzinfo == UTC


# Acknowledgement and escalation


def test_an_acknowledgement_names_the_person_here_and_only_the_time_in_its_event() -> None:
    at = local(2026, 12, 7, 10, 5)
    acknowledged, event = safety.acknowledge(alert(), "dr.rivera", "clinician", at) or pytest.fail("not acknowledged")
    assert (acknowledged.status, acknowledged.acknowledged_by, acknowledged.acknowledged_at) == (
        "acknowledged", "dr.rivera", at)  # fmt: skip
    assert event.model_dump(exclude={"schema_version"}) == {"episode_id": "ep-1", "alert_id": "alert-1",
                                                            "acknowledged_at": at}  # fmt: skip
    assert safety.acknowledge(acknowledged, "someone.else", "clinician", at + timedelta(minutes=1)) is None


def test_an_alert_is_escalated_once_past_its_deadline_and_never_once_acknowledged() -> None:
    kept = alert()
    assert safety.escalate(kept, kept.acknowledge_by - timedelta(seconds=1)) is None
    escalated, event = safety.escalate(kept, kept.acknowledge_by) or pytest.fail("not escalated")
    assert escalated.escalated_at == kept.acknowledge_by and escalated.status == "open"
    assert (event.alert_id, event.level, event.acknowledge_by) == ("alert-1", "immediate", kept.acknowledge_by)
    assert safety.escalate(escalated, kept.acknowledge_by + timedelta(hours=1)) is None  # once
    late = safety.acknowledge(escalated, "dr.rivera", "clinician", kept.acknowledge_by + timedelta(minutes=3))
    assert late is not None and late[0].escalated_at == kept.acknowledge_by  # recorded after the escalation too
    acknowledged, _ = safety.acknowledge(kept, "dr.rivera", "clinician", kept.raised_at) or pytest.fail("no ack")
    assert safety.escalate(acknowledged, kept.acknowledge_by + timedelta(hours=1)) is None


def test_a_page_is_generic_and_links_to_the_console() -> None:
    kept = alert()
    pages = safety.pages(kept, frozenset({"sms", "webhook"}), "https://console.clinic.example/")
    assert [(p.channel, p.purpose, p.recipient_kind, p.urgent) for p in pages] == [
        ("sms", "safety_escalation", "care_team", True),
        ("webhook", "safety_escalation", "care_team", True),
    ]
    assert [p.notification_id for p in pages] == safety.page_ids("alert-1")
    assert pages[0].context == {"alert_id": "alert-1", "level": "immediate",
                                "acknowledge_by": kept.acknowledge_by.isoformat(),
                                "console_url": "https://console.clinic.example/safety-alerts/alert-1"}  # fmt: skip
    text = Templates(None, "America/New_York").render("safety_escalation", "sms", dict(pages[0].context)).body
    assert text == ("Stepwise: immediate safety alert alert-1 was not acknowledged by 10:15. Open "
                    "https://console.clinic.example/safety-alerts/alert-1 and acknowledge it.")  # fmt: skip
    without_console = Templates(None, "America/New_York").render(
        "safety_escalation", "sms", safety.pages(kept, frozenset({"sms"}), None)[0].context
    )
    assert "Open the safety alerts in Stepwise" in without_console.body
    assert not {"ep-1", "as-1", "cssrs"} & set(without_console.body.replace(".", " ").split())


def test_the_care_teams_alert_names_the_alert_to_acknowledge() -> None:
    context = {"alert_id": "alert-1", "level": "immediate", "reasons": ["cssrs_high_risk"], "assessment_id": "as-1",
               "raised_at": local(2026, 12, 7, 10).isoformat(), "episode_id": "ep-1"}  # fmt: skip
    body = Templates(None, "America/New_York").render("safety_alert", "email", context).body
    assert "Alert: alert-1" in body and "acknowledge the alert" in body


# Routes: readiness requires one to the care team and one to the on-call clinician


def test_without_a_route_to_the_care_team_or_on_call_readiness_says_what_to_set() -> None:
    nobody = StaffRoutes(None, None)
    problems = nobody.problems()
    assert set(problems) == {"care_team", "on_call"}
    assert "CARE_TEAM_EMAIL" in problems["care_team"] and "CARE_TEAM_WEBHOOK_URL" in problems["care_team"]
    assert "ON_CALL_PHONE" in problems["on_call"] and "ON_CALL_WEBHOOK_URL" in problems["on_call"]
    phone_without_sms = StaffRoutes("care@clinic.test", None, on_call_phone="+12025550123", sms=False)
    assert set(phone_without_sms.problems()) == {"on_call"}
    assert "SMS_PROVIDER_URL" in phone_without_sms.problems()["on_call"]
    assert StaffRoutes(None, "http://hook", on_call_webhook_url="http://page").problems() == {}
    assert StaffRoutes("care@clinic.test", None, on_call_phone="+12025550123", sms=True).problems() == {}


def test_messages_of_a_route_without_any_address_are_planned_on_all_its_channels_to_wait() -> None:
    assert StaffRoutes(None, None).channels("care_team") == frozenset({"email", "webhook"})
    assert StaffRoutes("care@clinic.test", None).channels("care_team") == frozenset({"email"})
    assert StaffRoutes(None, None, on_call_phone="+12025550123").channels("on_call") == frozenset({"sms", "webhook"})
    assert StaffRoutes(None, None, "+12025550123", "http://page", sms=True).channels("on_call") == frozenset(
        {"sms", "webhook"}
    )
    assert StaffRoutes(None, None, "+12025550123", sms=True).channels("on_call") == frozenset({"sms"})
    route, addresses = StaffRoutes("care@clinic.test", None, "+12025550123", sms=True).of(safety.ESCALATION)
    assert (route, addresses) == ("on_call", {"sms": "+12025550123", "webhook": None})


# Settings and policy


def test_the_on_call_number_is_an_international_number_and_empty_settings_are_unset() -> None:
    settings = NotificationsSettings(_env_file=None, on_call_phone=" +1 202 555 0123 ", care_team_email="",
                                     on_call_webhook_url="")  # fmt: skip
    assert settings.on_call_phone == "+12025550123"
    assert settings.care_team_email is None and settings.on_call_webhook_url is None
    assert settings.safety_ack_seconds == 900
    with pytest.raises(ValidationError, match="ON_CALL_PHONE: an international number") as refused:
        NotificationsSettings(_env_file=None, on_call_phone="555-0100")
    assert "555-0100" not in str(refused.value)


def default_policy() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_POLICY_FILE.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda p: p.pop("safety_alerts"), "safety_alerts"),
        (lambda p: p["safety_alerts"]["same_day"].update(within_hours=0), "safety_alerts.same_day.within_hours"),
        (lambda p: p["safety_alerts"]["same_day"]["hours"].update(mon={"opens": "18:00", "closes": "08:00"}),
         "safety_alerts.same_day.hours.mon: Value error, opens: must be before closes"),
        (lambda p: p["safety_alerts"]["same_day"]["hours"].update(funday={"opens": "08:00", "closes": "18:00"}),
         "safety_alerts.same_day.hours.funday"),
        (lambda p: p["safety_alerts"]["same_day"].update(timezone="Mars/Olympus"), "safety_alerts.same_day.timezone"),
    ],
)  # fmt: skip
def test_a_bad_same_day_deadline_is_refused_naming_the_field(tmp_path: Path, change: Any, named: str) -> None:
    policy = default_policy()
    change(policy)
    path = tmp_path / "notifications.yaml"
    path.write_text(yaml.safe_dump(policy))
    with pytest.raises(PolicyError) as refused:
        load_policy(path, frozenset(MESSAGE_EVENTS))
    assert named in str(refused.value)
