"""From care events to planned notifications, and the text the templates render."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.care_plan.domain.groups import build_schedule
from services.care_plan.domain.policy import load_policy
from services.notifications.domain import messages
from services.notifications.domain.messages import NAMESPACE, PlannedNotification, Reachable, Support, support_scopes
from services.notifications.domain.policy import DEFAULT_POLICY_FILE, NotificationPolicy
from services.notifications.domain.policy import load_policy as load_rules
from services.notifications.rendering import Templates
from stepwise_contract import (
    CareLevel,
    CareLevelAssigned,
    CloudEvent,
    EventData,
    Reason,
    SessionMissed,
    StepUpRecommended,
    new_event,
)

NEW_YORK = "America/New_York"
SOURCE = "/stepwise/care-plan"
POLICY = load_policy()
RULES = load_rules(DEFAULT_POLICY_FILE, frozenset(messages.MESSAGE_EVENTS))
EVERYWHERE: Reachable = {"patient": frozenset({"email", "sms"}), "supports": frozenset({"email", "sms"}),
                         "care_team": frozenset({"email", "webhook"})}  # fmt: skip
EMAIL_ONLY: Reachable = {"patient": frozenset({"email"}), "supports": frozenset({"email"}),
                         "care_team": frozenset({"email"})}  # fmt: skip


def plan_notifications(
    event: CloudEvent[EventData],
    supports: list[Support] | None = None,
    rules: NotificationPolicy = RULES,
    reachable: Reachable = EMAIL_ONLY,
) -> list[PlannedNotification]:
    by_scope = {scope: supports or [] for scope in support_scopes(event, rules)}
    return messages.plan_notifications(event, rules, reachable, by_scope)


def notification_id(event: CloudEvent[Any], purpose: str, recipient: str, channel: str) -> str:
    return messages.notification_id(event.dedup_key, purpose, recipient, channel)


IOP_AM = POLICY.group("iop-am")  # Mon, Wed, Fri 09:00-12:00
assert IOP_AM is not None
SCHEDULE = build_schedule(IOP_AM, POLICY.levels[CareLevel.IOP].weeks, NEW_YORK, date(2026, 10, 20))
FORBIDDEN = (
    "addiction",
    "substance",
    "iop",
    "intensive outpatient",
    "mental health",
    "diagnosis",
    "phq",
    "score",
    "treatment program",
)


def assigned(status: str = "active", episode_id: str = "ep-1") -> CareLevelAssigned:
    return CareLevelAssigned(
        episode_id=episode_id,
        level=CareLevel.IOP if status == "active" else CareLevel.RESIDENTIAL,
        status=status,  # type: ignore[arg-type]
        assigned_at=datetime(2026, 10, 20, 15, 0, tzinfo=UTC),
        assessment_id="as-1",
        schedule=SCHEDULE if status == "active" else None,
        rationale=[Reason(code="level_offered", text="IOP is offered here: care plan started.")],
        policy_version=POLICY.version,
    )


def missed(session_index: int = 0, consecutive: int = 2) -> SessionMissed:
    session = SCHEDULE.sessions[session_index]
    return SessionMissed(
        episode_id="ep-1",
        session_id=session.session_id,
        starts_at=session.starts_at,
        detected="reported",
        recorded_at=session.ends_at + timedelta(hours=1),
        consecutive_misses=consecutive,
        total_misses=consecutive + 1,
    )


def test_active_assignment_plans_one_welcome_email() -> None:
    event = new_event(assigned(), source=SOURCE)
    planned = plan_notifications(event)
    assert len(planned) == 1
    [welcome] = planned
    assert welcome.purpose == "welcome"
    assert welcome.recipient_kind == "patient"
    assert welcome.channel == "email"
    assert welcome.episode_id == "ep-1"
    assert welcome.notification_id == str(uuid.uuid5(NAMESPACE, f"{SOURCE}#{event.id}|welcome|patient|email"))
    assert welcome.context["timezone"] == NEW_YORK
    sessions = welcome.context["sessions"]
    assert len(sessions) == 24
    assert sessions[0] == {
        "starts_at": SCHEDULE.sessions[0].starts_at.isoformat(),
        "ends_at": SCHEDULE.sessions[0].ends_at.isoformat(),
        "kind": "group",
    }
    assert [datetime.fromisoformat(s["starts_at"]) for s in sessions] == [s.starts_at for s in SCHEDULE.sessions]


def test_referred_out_assignment_plans_nothing() -> None:
    assert plan_notifications(new_event(assigned("referred_out"), source=SOURCE)) == []


def test_session_missed_plans_one_outreach() -> None:
    event = new_event(missed(consecutive=3), source=SOURCE)
    [outreach] = plan_notifications(event)
    assert outreach.purpose == "missed_session_outreach"
    assert outreach.recipient_kind == "patient"
    assert outreach.channel == "email"
    assert outreach.episode_id == "ep-1"
    assert outreach.context == {"starts_at": SCHEDULE.sessions[0].starts_at.isoformat(), "consecutive_misses": 3}
    assert outreach.notification_id == notification_id(event, "missed_session_outreach", "patient", "email")


def test_same_event_twice_same_notification_id() -> None:
    event = new_event(missed(), source=SOURCE)
    redelivered = event.model_copy()
    first = plan_notifications(event)
    second = plan_notifications(redelivered)
    assert first == second
    assert first[0].notification_id == second[0].notification_id
    # Decoding again from the wire gives the same id too.
    rebuilt = type(event).model_validate(event.model_dump())
    assert plan_notifications(rebuilt)[0].notification_id == first[0].notification_id


def test_different_events_different_ids() -> None:
    ids = {
        plan_notifications(new_event(missed(), source=SOURCE))[0].notification_id,
        plan_notifications(new_event(missed(), source=SOURCE))[0].notification_id,  # same data, new event id
        plan_notifications(new_event(missed(), source="/stepwise/other"))[0].notification_id,
        plan_notifications(new_event(missed(1), source=SOURCE))[0].notification_id,
        plan_notifications(new_event(assigned(), source=SOURCE))[0].notification_id,
    }
    assert len(ids) == 5


def test_same_source_and_id_with_other_purpose_differs() -> None:
    event = new_event(missed(), source=SOURCE)
    assert notification_id(event, "welcome", "patient", "email") != notification_id(
        event, "missed_session_outreach", "patient", "email"
    )


def assert_neutral(text: str) -> None:
    lowered = text.lower()
    found = [word for word in FORBIDDEN if word in lowered]
    assert found == [], f"message names {found}: {text!r}"


@pytest.fixture
def templates() -> Templates:
    return Templates(None, NEW_YORK)


def rendered_text(templates: Templates, purpose: str, context: dict[str, Any]) -> tuple[str, str, str]:
    message = templates.render(purpose, "email", context)
    return message.subject, message.body, f"{message.subject}\n{message.body}"


def test_welcome_renders_local_session_times(templates: Templates) -> None:
    [welcome] = plan_notifications(new_event(assigned(), source=SOURCE))
    subject, body, text = rendered_text(templates, welcome.purpose, welcome.context)
    assert subject == "Your session schedule"
    assert "\n" not in subject
    assert not body.startswith("Your session schedule")
    # First session: Wednesday 21 October 2026, 09:00-12:00 New York time (13:00 UTC).
    assert "Wed 21 Oct 2026, 09:00 to 12:00" in body
    # After the DST change the local time is still 09:00.
    assert "Mon 02 Nov 2026, 09:00 to 12:00" in body
    assert "13:00" not in body and "14:00" not in body
    assert len(re.findall(r"09:00 to 12:00", body)) == 6
    assert "and 18 more" in body
    assert_neutral(text)


def test_welcome_with_few_sessions_has_no_more_line(templates: Templates) -> None:
    sessions = [{"starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat()} for s in SCHEDULE.sessions[:2]]
    _, body, text = rendered_text(templates, "welcome", {"timezone": NEW_YORK, "sessions": sessions})
    assert len(re.findall(r"09:00 to 12:00", body)) == 2
    assert "more" not in body
    assert_neutral(text)


def test_welcome_uses_the_schedule_timezone_over_the_default() -> None:
    sessions = [{"starts_at": "2026-10-21T13:00:00+00:00", "ends_at": "2026-10-21T16:00:00+00:00"}]
    message = Templates(None, "UTC").render("welcome", "email", {"timezone": NEW_YORK, "sessions": sessions})
    assert "Wed 21 Oct 2026, 09:00 to 12:00" in message.body


def test_missed_session_outreach_renders(templates: Templates) -> None:
    [outreach] = plan_notifications(
        new_event(missed(5), source=SOURCE)
    )  # iop-am-20261102: Mon 2 Nov, after the DST change
    subject, body, text = rendered_text(templates, outreach.purpose, outreach.context)
    assert subject == "We missed you"
    assert "Mon 02 Nov at 09:00" in body
    assert "14:00" not in body
    assert_neutral(text)


def test_missed_session_outreach_before_dst_change(templates: Templates) -> None:
    [outreach] = plan_notifications(new_event(missed(0), source=SOURCE))
    _, body, _ = rendered_text(templates, outreach.purpose, outreach.context)
    assert "Wed 21 Oct at 09:00" in body


def test_override_dir_takes_precedence(tmp_path: Any) -> None:
    (tmp_path / "missed_session_outreach.email.j2").write_text(
        "Checking in\nWe saved your place for {{ starts_at | local(timezone, '%H:%M') }}.\n"
    )
    message = Templates(str(tmp_path), NEW_YORK).render(
        "missed_session_outreach", "email", {"starts_at": "2026-10-21T13:00:00+00:00", "consecutive_misses": 1}
    )
    assert message.subject == "Checking in"
    assert message.body == "We saved your place for 09:00.\n"
    # Templates not overridden still come from the defaults.
    default = Templates(str(tmp_path), NEW_YORK).render("welcome", "email", {"timezone": NEW_YORK, "sessions": []})
    assert default.subject == "Your session schedule"


def test_supports_are_planned_only_for_events_their_consent_covers() -> None:
    schedule_event, miss_event = new_event(assigned(), source=SOURCE), new_event(missed(), source=SOURCE)
    assert (support_scopes(schedule_event, RULES), support_scopes(miss_event, RULES)) == (
        {"appointments"},
        {"attendance"},
    )
    assert support_scopes(new_event(assigned("referred_out"), source=SOURCE), RULES) == set()

    supports = [Support("c-1", "family"), Support("c-2", "designated_support"), Support("c-3", "alumni_group")]
    planned = [p for p in plan_notifications(miss_event, supports=supports) if p.consent_id]
    assert [(p.recipient_kind, p.consent_id, p.purpose) for p in planned] == [
        ("family", "c-1", "support_missed_session"),
        ("designated_support", "c-2", "support_missed_session"),
    ]  # an alumni-group consent is not a person to tell about attendance
    assert len({p.notification_id for p in planned}) == 2
    assert [p for p in plan_notifications(miss_event) if p.recipient_kind != "patient"] == []


@pytest.mark.parametrize("purpose", ["support_schedule", "support_missed_session"])
def test_support_messages_are_neutral(templates: Templates, purpose: str) -> None:
    start = "2026-11-25T14:00:00+00:00"
    context = {"sessions": [{"starts_at": start, "ends_at": start}], "starts_at": start, "timezone": NEW_YORK}
    message = templates.render(purpose, "email", context)
    assert_neutral(message.subject + " " + message.body)
    assert "09:00" in message.body


def step_up(refer_out: bool) -> CloudEvent[EventData]:
    data = StepUpRecommended(episode_id="ep-1", recommendation_id="rec-1", from_level=CareLevel.IOP,
                             to_level=CareLevel.INPATIENT if refer_out else CareLevel.PHP, refer_out=refer_out,
                             rationale=[Reason(code="referral_out", text="The reassessment calls for INPATIENT.")],
                             policy_version="p", recommended_at=datetime(2026, 10, 20, 3, 0, tzinfo=UTC))  # fmt: skip
    return new_event(data, source=SOURCE)


def test_a_referral_out_reaches_the_care_team_at_once_saying_referral() -> None:
    [referral] = plan_notifications(step_up(refer_out=True))
    assert (referral.purpose, referral.recipient_kind, referral.urgent) == ("step_recommendation", "care_team", True)
    message = Templates(None, NEW_YORK).render(
        "step_recommendation", "email", {**referral.context, "episode_id": "ep-1"}
    )
    assert message.subject == "Referral out recommended (IOP to INPATIENT) for episode ep-1"
    assert "referring episode ep-1 out" in message.body and 'discharges the episode with reason "referred out"' in (
        message.body
    )
    [step] = plan_notifications(step_up(refer_out=False))  # a step within the program waits for the day, as before
    assert step.urgent is False
    rendered = Templates(None, NEW_YORK).render("step_recommendation", "email", {**step.context, "episode_id": "ep-1"})
    assert rendered.subject == "Step-up recommended (IOP to PHP) for episode ep-1" and "referr" not in rendered.body


def test_a_plan_waiting_for_a_group_the_policy_lacks_is_told_as_such_to_the_care_team() -> None:
    context = {"episode_id": "ep-1", "level": "IOP", "track": "evening", "program": "adolescent",
               "position": 1, "waitlisted_at": "2026-12-06T10:00:00+00:00"}  # fmt: skip
    full = Templates(None, NEW_YORK).render("group_waitlist", "email", {**context, "group_ids": ["iop-teen-pm"]})
    assert "every group it may join is full: iop-teen-pm." in full.body
    none = Templates(None, NEW_YORK).render("group_waitlist", "email", {**context, "group_ids": []})
    assert "the care-plan policy has no such group for its program" in none.body and "is full" not in none.body
