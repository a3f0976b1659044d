"""The notifications policy as data: validation, session reminders, the alumni program, templates."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from services.care_plan.domain.groups import build_schedule
from services.care_plan.domain.policy import load_policy as load_care_policy
from services.common.policy_file import PolicyError
from services.notifications.app import load_checked_policy
from services.notifications.domain import messages
from services.notifications.domain.messages import Reachable, plan_alumni, plan_session_reminders, schedule_series
from services.notifications.domain.policy import (
    DEFAULT_POLICY_FILE,
    AlumniMeetings,
    AlumniProgram,
    SessionReminders,
    load_policy,
)
from services.notifications.rendering import Templates
from services.notifications.settings import NotificationsSettings
from stepwise_contract import CareLevel, CareLevelAssigned, CloudEvent, EventData, Reason, new_event

NEW_YORK = "America/New_York"
KNOWN = frozenset(messages.MESSAGE_EVENTS)
REACHABLE: Reachable = {"patient": frozenset({"email", "sms"}), "supports": frozenset({"email"}),
                        "care_team": frozenset({"email"})}  # fmt: skip
FORBIDDEN = ("addiction", "substance", "iop", "intensive outpatient", "mental health", "diagnosis", "phq", "score",
             "treatment program", "partial hospital", "residential", "level of care")  # fmt: skip


def default_policy() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_POLICY_FILE.read_text())  # type: ignore[no-any-return]


def write(tmp_path: Path, policy: dict[str, Any]) -> Path:
    path = tmp_path / "notifications.yaml"
    path.write_text(yaml.safe_dump(policy))
    return path


def checked(path: Path, templates_dir: str | None = None) -> Any:
    settings = NotificationsSettings(notifications_policy_file=path, templates_dir=templates_dir)
    return load_checked_policy(settings, Templates(templates_dir, NEW_YORK))


def test_the_default_policy_loads_and_every_message_has_its_templates() -> None:
    policy = checked(DEFAULT_POLICY_FILE)
    assert policy.session_reminders.hours_before == [24, 2]
    assert policy.alumni.check_in_days == [7, 30, 60, 90]
    assert [rule.purpose for rule in policy.rules_for("iop.safety.alert_raised")] == ["safety_alert"]
    assert policy.rules_for("iop.safety.alert_raised")[0].urgent


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda p: p["events"]["iop.session.missed"][0].update(to="everyone"), "events.iop.session.missed.0.to"),
        (lambda p: p["events"]["iop.session.missed"][0].update(channels=["webhook"]), "can be reached by email, sms"),
        (lambda p: p["events"]["iop.session.missed"][1].pop("consent_scope"), "consent_scope: required for supports"),
        (lambda p: p["events"]["iop.session.missed"][0].update(urgent=True), "only messages to the care team"),
        (lambda p: p["events"]["iop.session.missed"][0].update(session_change="cancelled"), "only with session_kinds"),
        (lambda p: p["events"].update({"iop.drug_screen.recorded": []}), "events.iop.drug_screen.recorded"),
        (lambda p: p["session_reminders"].update(hours_before=[0]), "session_reminders.hours_before"),
        (lambda p: p["alumni"].update(check_in_days=[7, 7]), "alumni.check_in_days"),
        (lambda p: p["alumni"]["meetings"].update(weekday="funday"), "alumni.meetings.weekday"),
        (lambda p: p["alumni"]["meetings"].update(timezone="Mars/Olympus"), "alumni.meetings.timezone"),
        (lambda p: p.update(surprise=1), "surprise"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(tmp_path: Path, change: Any, named: str) -> None:
    policy = default_policy()
    change(policy)
    with pytest.raises(PolicyError) as refused:
        load_policy(write(tmp_path, policy), KNOWN)
    assert named in str(refused.value)
    assert str(tmp_path) in str(refused.value)


def test_a_clinical_judgement_is_never_routed_to_a_patient(tmp_path: Path) -> None:
    policy = default_policy()
    policy["events"]["iop.care_level.step_up_recommended"].append(
        {"purpose": "step_recommendation", "to": "patient", "channels": ["email"]}
    )
    with pytest.raises(PolicyError, match=r"events.iop.care_level.step_up_recommended\[1\].to: only the care team"):
        checked(write(tmp_path, policy))


def test_a_message_without_a_template_is_refused_at_start(tmp_path: Path) -> None:
    policy = default_policy()
    policy["events"]["iop.session.missed"][1]["channels"] = ["email", "sms"]  # shipped: both
    policy["events"]["iop.episode.graduated"][0]["purpose"] = "farewell"
    with pytest.raises(PolicyError, match=r"no template farewell.email.j2"):
        checked(write(tmp_path, policy))
    (tmp_path / "farewell.email.j2").write_text("Goodbye\nWell done.\n")
    assert checked(write(tmp_path, policy), templates_dir=str(tmp_path)).rules_for("iop.episode.graduated")


def test_a_clinic_can_route_a_message_to_another_channel(tmp_path: Path) -> None:
    policy = default_policy()
    policy["events"]["iop.care_level.assigned"][0]["channels"] = ["email", "sms"]
    rules = checked(write(tmp_path, policy))
    event: CloudEvent[EventData] = new_event(
        assigned(datetime(2026, 10, 19, 15, tzinfo=UTC)), source="/stepwise/care-plan"
    )
    planned = messages.plan_notifications(event, rules, REACHABLE, {})
    assert sorted(p.channel for p in planned if p.purpose == "welcome") == ["email", "sms"]
    no_sms = dict(REACHABLE) | {"patient": frozenset({"email"})}
    assert [p.channel for p in messages.plan_notifications(event, rules, no_sms, {})] == ["email"]


# Session reminders

CARE = load_care_policy()


def assigned(at: datetime) -> CareLevelAssigned:
    group = CARE.group("iop-am")  # Mon, Wed, Fri 09:00-12:00
    assert group is not None
    schedule = build_schedule(group, CARE.levels[CareLevel.IOP].weeks, NEW_YORK, date(2026, 10, 20))
    return CareLevelAssigned(
        episode_id="ep-1", level=CareLevel.IOP, status="active", assigned_at=at, assessment_id="as-1",
        schedule=schedule, rationale=[Reason(code="level_offered", text="offered")], policy_version="p",
    )  # fmt: skip


def test_each_session_gets_its_reminders_except_those_already_due() -> None:
    at = datetime(2026, 10, 21, 12, 0, tzinfo=UTC)  # 08:00 in New York, an hour before the first session
    event = new_event(assigned(at), source="/stepwise/care-plan")
    data = event.data
    assert data.schedule is not None
    reminders = SessionReminders(hours_before=[2, 24], channels=["sms", "email"])
    planned = plan_session_reminders(event, data.schedule, at, reminders, REACHABLE)
    sessions = data.schedule.sessions
    # The first session's 24-hour and 2-hour reminders were due before the schedule was made.
    assert len(planned) == (len(sessions) - 1) * 2 * 2
    first = [p for p in planned if p.context["starts_at"] == sessions[1].starts_at.isoformat() and p.channel == "sms"]
    assert sorted(p.not_before for p in first if p.not_before) == [
        sessions[1].starts_at - timedelta(hours=24),
        sessions[1].starts_at - timedelta(hours=2),
    ]
    assert all(p.expires_at == datetime.fromisoformat(p.context["starts_at"]) for p in planned)
    assert {p.series for p in planned} == {schedule_series(at)}
    assert len({p.notification_id for p in planned}) == len(planned)
    assert planned == plan_session_reminders(event, data.schedule, at, reminders, REACHABLE)  # redelivery: same ids


def test_no_reminders_on_a_channel_the_clinic_has_not_configured() -> None:
    at = datetime(2026, 10, 19, 12, 0, tzinfo=UTC)
    event = new_event(assigned(at), source="/stepwise/care-plan")
    assert event.data.schedule is not None
    email_only: Reachable = dict(REACHABLE) | {"patient": frozenset({"email"})}
    reminders = SessionReminders(hours_before=[24], channels=["sms"])
    assert plan_session_reminders(event, event.data.schedule, at, reminders, email_only) == []


# The alumni program

PROGRAM = AlumniProgram(
    channels=["email"],
    check_in_days=[7, 30, 60, 90],
    meetings=AlumniMeetings(weekday="tuesday", starts_at=time(18, 30), remind_hours_before=8, weeks=26),
)


def test_alumni_check_ins_go_out_on_their_days_at_the_local_check_in_time() -> None:
    graduated = datetime(2026, 11, 6, 21, 0, tzinfo=UTC)  # Friday 16:00 in New York
    planned = plan_alumni("ep-1", "c-9", graduated, PROGRAM, REACHABLE, NEW_YORK)
    zone = ZoneInfo(NEW_YORK)
    check_ins = {p.context["days_since_graduation"]: p.not_before for p in planned if p.purpose == "alumni_check_in"}
    assert check_ins == {
        days: datetime.combine(date(2026, 11, 6) + timedelta(days=days), time(10), tzinfo=zone)
        for days in (7, 30, 60, 90)
    }
    [welcome] = [p for p in planned if p.purpose == "alumni_welcome"]
    assert welcome.not_before is None
    meetings = [p for p in planned if p.purpose == "alumni_meeting"]
    assert len(meetings) == 26
    starts = [datetime.fromisoformat(p.context["meeting_at"]) for p in meetings]
    assert starts[0] == datetime(2026, 11, 10, 18, 30, tzinfo=zone)  # the next Tuesday
    assert all(s.astimezone(zone).strftime("%a %H:%M") == "Tue 18:30" for s in starts)  # across the DST change
    assert all(p.not_before == s - timedelta(hours=8) for p, s in zip(meetings, starts, strict=True))
    assert {(p.recipient_kind, p.consent_id, p.series_kind) for p in planned} == {("alumni", "c-9", "alumni")}


def test_a_meeting_reminder_across_the_dst_change_is_its_lead_before_the_meeting_in_real_time() -> None:
    # Meetings Sunday 10:00 New York, reminded 10 hours before; 2026-11-01 is the end of DST there.
    meetings = AlumniMeetings(weekday="sun", starts_at=time(10), remind_hours_before=10, weeks=1)
    program = PROGRAM.model_copy(update={"meetings": meetings})
    graduated = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 EDT: the meeting is 10.5 real hours away
    [reminder, *_] = [p for p in plan_alumni("ep-1", "c-9", graduated, program, REACHABLE, NEW_YORK)
                      if p.purpose == "alumni_meeting"]  # fmt: skip
    assert reminder.expires_at == datetime(2026, 11, 1, 15, 0, tzinfo=UTC)  # 10:00 EST
    assert reminder.not_before == datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # 10 real hours before, after graduation


@settings(max_examples=200, deadline=None)
@given(
    graduated=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
    days=st.lists(st.integers(1, 400), min_size=0, max_size=6, unique=True),
    weeks=st.integers(1, 60),
    lead=st.floats(0.5, 72),
    weekday=st.sampled_from(["monday", "wednesday", "sunday"]),
)
def test_alumni_plans_are_complete_unique_and_never_in_the_past(
    graduated: datetime, days: list[int], weeks: int, lead: float, weekday: Any
) -> None:
    meetings = AlumniMeetings(weekday=weekday, starts_at=time(19), remind_hours_before=lead, weeks=weeks)
    program = AlumniProgram(channels=["email", "sms"], check_in_days=days, meetings=meetings)
    planned = plan_alumni("ep-1", "c-1", graduated, program, REACHABLE, NEW_YORK)
    assert len(planned) == 2 * (1 + len(days) + weeks)
    assert len({p.notification_id for p in planned}) == len(planned)
    assert all(p.not_before is None or p.not_before > graduated for p in planned)
    meeting_times = sorted(
        {datetime.fromisoformat(p.context["meeting_at"]) for p in planned if p.context.get("meeting_at")}
    )
    assert all(later - earlier >= timedelta(days=6, hours=23) for earlier, later in itertools.pairwise(meeting_times))


# Templates: what people read names no diagnosis, program type or score


def people_contexts() -> dict[str, dict[str, Any]]:
    start = "2026-11-25T14:00:00+00:00"
    sessions = [{"starts_at": start, "ends_at": "2026-11-25T17:00:00+00:00"}]
    return {
        "welcome": {"sessions": sessions, "timezone": NEW_YORK},
        "schedule_change": {"sessions": sessions, "timezone": NEW_YORK},
        "missed_session_outreach": {"starts_at": start, "consecutive_misses": 2},
        "session_reminder": {"starts_at": start, "ends_at": "2026-11-25T17:00:00+00:00", "timezone": NEW_YORK},
        "support_schedule": {"sessions": sessions},
        "support_missed_session": {"starts_at": start},
        "graduation": {"graduated_at": start},
        "alumni_welcome": {},
        "alumni_check_in": {"days_since_graduation": 30},
        "alumni_meeting": {"meeting_at": start, "timezone": NEW_YORK},
    }


@pytest.mark.parametrize("channel", ["email", "sms"])
@pytest.mark.parametrize("purpose", sorted(people_contexts()))
def test_what_people_read_is_neutral(purpose: str, channel: str) -> None:
    context = {"episode_id": "ep-1", **people_contexts()[purpose]}
    message = Templates(None, NEW_YORK).render(purpose, channel, context)
    text = f"{message.subject}\n{message.body}".lower()
    assert not [word for word in FORBIDDEN if word in text]
    assert "ep-1" not in text  # no ids in what people read
    if channel == "sms":
        assert message.subject == "" and "\n" not in message.body and len(message.body) <= 320
        assert "STOP" in message.body
