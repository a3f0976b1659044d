"""From care events to planned notifications, and the text the templates render."""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.care_plan.domain.groups import build_schedule
from services.care_plan.domain.policy import load_policy
from services.notifications.domain import messages, safety
from services.notifications.domain.messages import (
    LINK_INSTRUMENTS,
    NAMESPACE,
    NOT_ADOPTED,
    CalendarChange,
    PlannedNotification,
    Reachable,
    Support,
    calendar_change,
    sessions_ahead,
    support_scopes,
)
from services.notifications.domain.policy import DEFAULT_POLICY_FILE, NotificationPolicy
from services.notifications.domain.policy import load_policy as load_rules
from services.notifications.rendering import DEFAULT_TEMPLATES, RenderedMessage, Templates
from stepwise_contract import (
    AttendanceRuleTriggered,
    CareLevel,
    CareLevelAssigned,
    CareLevelChanged,
    CloudEvent,
    EpisodeDischarged,
    EpisodeGraduated,
    EventData,
    GroupWaitlisted,
    InstrumentMeasure,
    MeasureDue,
    MeasureRecorded,
    Reason,
    SafetyAlertRaised,
    Schedule,
    ScheduleChanged,
    SessionMissed,
    StepDownRecommended,
    StepUpRecommended,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewOverdue,
    new_event,
)
from tests.unit.contract.test_contract import UR_SAMPLES

NEW_YORK = "America/New_York"
SOURCE = "/stepwise/care-plan"
POLICY = load_policy()
RULES = load_rules(DEFAULT_POLICY_FILE, frozenset(messages.MESSAGE_EVENTS))
EVERYWHERE: Reachable = {"patient": frozenset({"email", "sms"}), "supports": frozenset({"email", "sms"}),
                         "care_team": frozenset({"email", "webhook"}), "ur_team": frozenset({"email"})}  # fmt: skip
EMAIL_ONLY: Reachable = {"patient": frozenset({"email"}), "supports": frozenset({"email"}),
                         "care_team": frozenset({"email"})}  # fmt: skip


def plan_notifications(
    event: CloudEvent[Any],
    supports: list[Support] | None = None,
    rules: NotificationPolicy = RULES,
    reachable: Reachable = EMAIL_ONLY,
    calendar: CalendarChange | None = None,
) -> list[PlannedNotification]:
    by_scope = {scope: supports or [] for scope in support_scopes(event, rules)}
    return messages.plan_notifications(event, rules, reachable, by_scope, calendar)


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
        status=status,
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
    schedule_event: CloudEvent[EventData] = new_event(assigned(), source=SOURCE)
    miss_event: CloudEvent[EventData] = new_event(missed(), source=SOURCE)
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


# A new calendar: people hear of it only once it is adopted; supports of a family session booked or cancelled

CHANGED_AT = datetime(2026, 10, 20, 15, 0, tzinfo=UTC)
"""The day before the first session (Wed 21 Oct 09:00 New York)."""
ONE_ON_ONE = SCHEDULE.sessions[2].model_copy(
    update={"session_id": "individual-20261023-1400", "kind": "individual", "group_id": None,
            "starts_at": datetime(2026, 10, 23, 18, tzinfo=UTC), "ends_at": datetime(2026, 10, 23, 19, tzinfo=UTC)}
)  # fmt: skip


def family_session(day: int) -> Any:
    starts = datetime(2026, 10, day, 22, tzinfo=UTC)  # 18:00 New York
    return ONE_ON_ONE.model_copy(update={"session_id": f"family-202610{day}-1800", "kind": "family",
                                         "starts_at": starts, "ends_at": starts + timedelta(hours=1)})  # fmt: skip


def with_appointments(*appointments: Any) -> Schedule:
    sessions = sorted([*SCHEDULE.sessions, *appointments], key=lambda s: s.starts_at)
    return SCHEDULE.model_copy(update={"sessions": sessions})


def changed(old: Schedule | None, new: Schedule, at: datetime = CHANGED_AT) -> CalendarChange:
    """What adopting ``new`` at ``at`` changed, ``old`` (made an hour before) being the current calendar."""
    replaced = sessions_ahead(old, at - timedelta(hours=1)) if old else []
    return calendar_change(sessions_ahead(new, at), replaced, at)


def schedule_changed(schedule: Schedule, at: datetime = CHANGED_AT) -> CloudEvent[EventData]:
    data = ScheduleChanged(episode_id="ep-1", level=CareLevel.IOP, changed_at=at, schedule=schedule,
                           reason="appointment_booked")  # fmt: skip
    return new_event(data, source=SOURCE)


def supports_told(schedule: Schedule, calendar: CalendarChange, at: datetime = CHANGED_AT) -> list[tuple[str, Any]]:
    planned = plan_notifications(schedule_changed(schedule, at), [Support("c-1", "family")], calendar=calendar)
    return sorted((p.purpose, [s["starts_at"] for s in p.context["sessions"]]) for p in planned if p.consent_id)


def test_supports_hear_of_a_family_session_when_it_is_booked_and_when_it_is_cancelled_only() -> None:
    first, second = family_session(27), family_session(29)
    booked = with_appointments(first)
    assert supports_told(booked, changed(SCHEDULE, booked)) == [
        ("support_family_session", [first.starts_at.isoformat()])
    ]
    other = with_appointments(first, ONE_ON_ONE)
    assert supports_told(other, changed(booked, other)) == []  # an individual appointment: nothing for supports
    assert supports_told(other, changed(other, other)) == []  # the same calendar again
    both = with_appointments(first, second, ONE_ON_ONE)
    assert supports_told(both, changed(other, both)) == [("support_family_session", [second.starts_at.isoformat()])]
    cancelled = with_appointments(second, ONE_ON_ONE)
    assert supports_told(cancelled, changed(both, cancelled)) == [
        ("support_family_session_cancelled", [first.starts_at.isoformat()])
    ]
    # The first calendar notifications sees: each family session ahead is news; none is cancelled.
    assert supports_told(both, changed(None, both)) == [
        ("support_family_session", [first.starts_at.isoformat(), second.starts_at.isoformat()])
    ]
    # A family session over before the change is not cancelled news, and carries no session id to the template.
    later = first.ends_at + timedelta(hours=1)
    assert supports_told(cancelled, changed(both, cancelled, later), later) == []
    [told] = plan_notifications(schedule_changed(booked), [Support("c-1", "family")],
                                calendar=changed(SCHEDULE, booked))[-1:]  # fmt: skip
    assert told.context["sessions"] == [{"starts_at": first.starts_at.isoformat(),
                                         "ends_at": first.ends_at.isoformat(), "kind": "family"}]  # fmt: skip


def test_a_calendar_that_is_not_adopted_tells_no_patient_or_support() -> None:
    booked = with_appointments(family_session(27))
    event = schedule_changed(booked)
    adopted = plan_notifications(event, [Support("c-1", "family")], calendar=changed(SCHEDULE, booked))
    assert sorted(p.purpose for p in adopted) == ["schedule_change", "support_family_session"]
    assert plan_notifications(event, [Support("c-1", "family")], calendar=NOT_ADOPTED) == []
    care_team = {"purpose": "schedule_change", "to": "care_team", "channels": ["email"]}
    only_care_team = RULES.model_dump() | {"events": {"iop.schedule.changed": [care_team]}}
    rules = NotificationPolicy.model_validate(only_care_team)
    [kept] = plan_notifications(event, rules=rules, calendar=NOT_ADOPTED)  # staff still hear of what happened
    assert kept.recipient_kind == "care_team"


# Every template, rendered with what planning gives it

SMS_LIMIT = 320
"""Two segments: the most a text may take (as ``test_what_people_read_is_neutral`` holds)."""
STOP_FOOTER = "Reply STOP to stop texts."
UR_REASONS = {"iop.authorization.review_due": ("next_review", "end_date", "last_covered_day", "exhaustion"),
              "iop.service.unauthorized": ("outside_dates", "wrong_level", "code_not_covered", "not_approved",
                                           "no_units_left")}  # fmt: skip
"""Every wording of the UR mailbox's messages (one per reason)."""

EVERY_TEMPLATE = sorted(path.name for path in DEFAULT_TEMPLATES.glob("*.j2"))


def calendar_of(count: int) -> Schedule:
    return SCHEDULE.model_copy(update={"sessions": SCHEDULE.sessions[:count]})


LINK = {"link": "https://answers.example.org/q/Zm9vYmFyYmF6", "link_expires_at": "2026-10-24T13:00:00+00:00"}


def planned_contexts() -> dict[str, list[dict[str, Any]]]:
    """Per purpose, the contexts planning gives its templates (as the dispatcher renders them, with the episode
    id): an event of each kind the policy turns into messages, calendars of many, one and no sessions, a family
    session booked and cancelled, session reminders and the alumni program."""
    at, reasons = CHANGED_AT, [Reason(code="two_consecutive", text="Two sessions missed in a row.")]
    ids: dict[str, Any] = {"episode_id": "ep-1"}
    events: list[EventData] = [
        SessionMissed(**ids, session_id="s1", starts_at=at, detected="reported", recorded_at=at, consecutive_misses=2,
                      total_misses=3),
        SafetyAlertRaised(**ids, alert_id="al-1", assessment_id="as-1", level="immediate", raised_at=at,
                          reasons=["cssrs_high_risk", "phq9_item9_positive"]),
        SafetyAlertRaised(**ids, alert_id="al-2", assessment_id="as-1", level="same_day", raised_at=at,
                          reasons=["phq9_item9_positive"]),
        StepUpRecommended(**ids, recommendation_id="r1", from_level=CareLevel.IOP, to_level=CareLevel.PHP,
                          rationale=reasons, policy_version="p", recommended_at=at),
        StepDownRecommended(**ids, recommendation_id="r2", from_level=CareLevel.IOP, to_level=CareLevel.OP,
                            rationale=reasons, policy_version="p", recommended_at=at),
        StepUpRecommended(**ids, recommendation_id="r4", from_level=CareLevel.IOP, to_level=CareLevel.INPATIENT,
                          refer_out=True, rationale=reasons, policy_version="p", recommended_at=at),
        AttendanceRuleTriggered(**ids, rule_code="two_consecutive", action="care_team_review", session_id="s1",
                                consecutive_misses=2, misses_in_window=2, rationale=reasons, policy_version="p",
                                triggered_at=at),
        EpisodeDischarged(**ids, discharged_at=at, level=CareLevel.IOP, reason_code="non_attendance"),
        GroupWaitlisted(**ids, level=CareLevel.IOP, track="morning", program="adult", group_ids=["iop-am", "iop-am-2"],
                        position=2, waitlisted_at=at),
        EpisodeGraduated(**ids, graduated_at=at, level=CareLevel.IOP, by="completion"),
        MeasureDue(**ids, due_id="d-1", instruments=["phq9", "gad7"], reason="schedule", window_opens_at=at,
                   window_closes_at=at + timedelta(days=4)),
        MeasureRecorded(**ids, measure_id="m-1", source="measure", recorded_at=at, instruments=[
            InstrumentMeasure(instrument="phq9", score=17, band="moderately_severe", baseline_score=9,
                               previous_score=11, classification="reliable_deterioration", recovered=False,
                               response=False)]),
        TreatmentPlanReviewDue(**ids, review_id="rv-1", reason="periodic", version=1, due_on=at.date(),
                               overdue_at=at + timedelta(days=1)),
        TreatmentPlanReviewDue(**ids, review_id="rv-2", reason="reliable_deterioration", trigger_id="m-1", version=2,
                               due_on=at.date(), overdue_at=at + timedelta(days=1)),
        TreatmentPlanReviewOverdue(**ids, review_id="rv-2", reason="reliable_deterioration", trigger_id="m-1",
                                   version=2, due_on=at.date(), overdue_at=at + timedelta(days=1)),
        *(UR_SAMPLES[event_type](ids["episode_id"]).model_copy(update={"reason": reason})
          for event_type, reasons in UR_REASONS.items() for reason in reasons),
        UR_SAMPLES["iop.authorization.units_low"](ids["episode_id"]),
        UR_SAMPLES["iop.authorization.exhausted"](ids["episode_id"]),
        UR_SAMPLES["iop.service.unauthorized"](ids["episode_id"]).model_copy(update={"item": "service",
                                                                                   "service_id": "iop-am-20261021"}),
    ]  # fmt: skip
    calendars: list[tuple[EventData, CalendarChange | None]] = []
    for count in (24, 1, 0):
        schedule = calendar_of(count)
        calendars += [
            (assigned().model_copy(update={"schedule": schedule}), None),
            (CareLevelChanged(**ids, from_level=CareLevel.PHP, to_level=CareLevel.IOP, direction="down",
                              recommendation_id="r3", changed_at=at, status="active", schedule=schedule), None),
        ]  # fmt: skip
    both = with_appointments(family_session(27), family_session(29))
    for old, new in ((SCHEDULE, both), (both, SCHEDULE), (both, with_appointments(family_session(29)))):
        calendars.append((schedule_changed(new).data, changed(old, new)))
    contexts: dict[str, list[dict[str, Any]]] = {}
    supports = [Support("c-1", "family")]
    for data, calendar in [*((data, None) for data in events), *calendars]:
        for planned in plan_notifications(new_event(data, source=SOURCE), supports, reachable=EVERYWHERE,
                                          calendar=calendar):  # fmt: skip
            if planned.channel == "webhook":
                continue  # a webhook sends its context as JSON: no template renders it
            given = contexts.setdefault(planned.purpose, [])
            # A questionnaire link is made by intake as the message is sent: the dispatcher renders it in.
            link = LINK if LINK_INSTRUMENTS in planned.context else {}
            given += [] if {**planned.context, **ids, **link} in given else [{**planned.context, **ids, **link}]
    reminders = RULES.session_reminders
    assert reminders is not None and RULES.alumni is not None
    event = new_event(assigned(), source=SOURCE)
    others = [*messages.plan_session_reminders(event, SCHEDULE, CHANGED_AT, reminders, EVERYWHERE)[:1],
               *messages.plan_alumni("ep-1", "c-2", CHANGED_AT, RULES.alumni, EVERYWHERE, NEW_YORK)[:8]]  # fmt: skip
    alert = safety.SafetyAlert(
        alert_id="al-1",
        episode_id="ep-1",
        assessment_id="as-1",
        level="immediate",
        reasons=["cssrs_high_risk"],
        raised_at=CHANGED_AT,
        acknowledge_by=CHANGED_AT,
    )
    others += [*safety.pages(alert, frozenset({"sms", "webhook"}), "https://stepwise.clinic.test/console"),
                *safety.pages(alert, frozenset({"sms"}), None),
                *messages.plan_unreachable_notice(event, [], EVERYWHERE)]  # fmt: skip
    for message in others:
        contexts.setdefault(message.purpose, []).append({**message.context, **ids})
    return contexts


STAFF_TEXTS = {safety.ESCALATION}
"""Texts to staff (pages), not to patients or supports: no STOP footer, since staff cannot opt out of them."""


PLANNED = planned_contexts()


def layout_problems(message: RenderedMessage, channel: str, purpose: str = "") -> list[str]:
    """What is wrong with how a message reads: leftovers of the template, words run together, stray spaces."""
    text = f"{message.subject}\n{message.body}"
    found = [f"unrendered {mark!r}" for mark in ("{{", "}}", "{%", "%}", "{#", "#}") if mark in text]
    found += [f"{word!r} rendered" for word in ("None", "Undefined", "[]", "{}") if word in text]
    words = re.sub(r"https?://\S+?(?=[.,;:!?]?(\s|$))", "LINK", text)  # a link's dots are not sentence ends
    found += [f"no space after {m.group()!r}" for m in re.finditer(r"[.!?;,:][A-Za-z(]", words)]
    found += [f"space before {m.group()!r}" for m in re.finditer(r" [.!?;,:)]", text)]
    found += [f"double space in {line!r}" for line in text.splitlines() if re.search(r"\S {2,}", line)]
    found += [f"trailing space in {line!r}" for line in text.splitlines() if line != line.rstrip()]
    if channel == "sms":
        body = message.body
        if message.subject or "\n" in body or not body.isascii() or len(body) > SMS_LIMIT:
            found.append(f"not one short plain line ({len(body)} characters)")
        if purpose in STAFF_TEXTS:
            found += [] if "STOP" not in body and body.endswith(".") else ["a page to staff ends oddly or offers STOP"]
        elif not re.search(rf"[.!?] {re.escape(STOP_FOOTER)}$", body) or body.count("STOP") != 1:
            found.append("the STOP footer is not one sentence of its own at the end")
        return found
    lines = message.body.split("\n")
    if not message.subject or message.subject != message.subject.strip():
        found.append("no subject line")
    if not message.body.strip() or lines[0] == "" or not message.body.endswith("\n") or "\n\n\n" in message.body:
        found.append("blank lines out of place")
    for before, line in itertools.pairwise(lines):
        if before == "" and line and not line[0].isupper():
            found.append(f"a paragraph starting in lower case: {line!r}")
        if before.endswith(":") and not (line.startswith("  - ") or line[:1].islower()):
            found.append(f"{before!r} is followed by {line!r}, not what it introduces")
    return found


def test_every_template_has_planned_data_to_render() -> None:
    assert {name.split(".")[0] for name in EVERY_TEMPLATE} <= set(PLANNED)


@pytest.mark.parametrize("name", EVERY_TEMPLATE)
def test_every_template_renders_as_clean_text(templates: Templates, name: str) -> None:
    purpose, channel, _ = name.split(".")
    for context in PLANNED.get(purpose, []):
        message = templates.render(purpose, channel, context)
        assert layout_problems(message, channel, purpose) == [], (name, context.get("sessions", context))


def test_the_schedule_change_text_ends_with_its_own_stop_sentence(templates: Templates) -> None:
    [one] = [c for c in PLANNED["schedule_change"] if len(c["sessions"]) == 1][:1]
    message = templates.render("schedule_change", "sms", one)
    assert message.body == (
        "Your care team has changed your session schedule. Your next session: Wed 21 Oct, 09:00. Reply STOP to stop "
        "texts."
    )


def test_the_layout_check_finds_what_it_looks_for() -> None:
    sms = RenderedMessage("", "Your next session: Wed 21 Oct, 09:00.Reply STOP to stop texts.")
    assert layout_problems(sms, "sms") == ["no space after '.R'", "the STOP footer is not one sentence of its own "
                                                                   "at the end"]  # fmt: skip
    email = RenderedMessage("Hi", "Hello,\n\nYour next sessions are:\nYour care team  will {{ call }}.\n")
    assert len(layout_problems(email, "email")) == 4


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


WEBHOOK_ONLY: Reachable = {**EMAIL_ONLY, "care_team": frozenset({"webhook"})}
"""A clinic whose care team has only CARE_TEAM_WEBHOOK_URL."""


def test_a_care_team_with_only_a_webhook_hears_of_every_care_team_message_there() -> None:
    at, reasons = CHANGED_AT, [Reason(code="two_consecutive", text="Two sessions missed in a row by Jane.")]
    ids: dict[str, Any] = {"episode_id": "ep-1"}
    told = {
        "step_recommendation": StepUpRecommended(**ids, recommendation_id="r1", from_level=CareLevel.IOP,
                                                 to_level=CareLevel.INPATIENT, rationale=reasons, policy_version="p",
                                                 recommended_at=at, refer_out=True),
        "attendance_escalation": AttendanceRuleTriggered(**ids, rule_code="two_consecutive", action="care_team_review",
                                                         session_id="s1", consecutive_misses=2, misses_in_window=2,
                                                         rationale=reasons, policy_version="p", triggered_at=at),
        "discharge_review": EpisodeDischarged(**ids, discharged_at=at, level=CareLevel.IOP,
                                              reason_code="non_attendance"),
        "group_waitlist": GroupWaitlisted(**ids, level=CareLevel.IOP, track="morning", program="adult",
                                          group_ids=["iop-am"], position=2, waitlisted_at=at),
    }  # fmt: skip
    for purpose, data in told.items():
        [planned] = plan_notifications(new_event(data, source=SOURCE), reachable=WEBHOOK_ONLY)
        assert (planned.purpose, planned.recipient_kind, planned.channel) == (purpose, "care_team", "webhook")
        assert "Jane" not in str(planned.context)  # reason codes, never a reason's text
        assert planned.context.get("reasons", ["two_consecutive"]) == ["two_consecutive"]
    [referral] = plan_notifications(new_event(told["step_recommendation"], source=SOURCE), reachable=WEBHOOK_ONLY)
    assert referral.urgent and referral.context == {"recommendation_id": "r1", "direction": "up", "from_level": "IOP",
                                                    "to_level": "INPATIENT", "refer_out": True,
                                                    "reasons": ["two_consecutive"]}  # fmt: skip
    # With a mailbox too, the rule's own channel is used, as before.
    [by_email] = plan_notifications(new_event(told["discharge_review"], source=SOURCE), reachable=EVERYWHERE)
    assert by_email.channel == "email" and by_email.context["discharged_at"]


def test_the_unreachable_patient_notice_goes_to_a_webhook_only_care_team() -> None:
    event = new_event(assigned(), source=SOURCE)
    [notice] = messages.plan_unreachable_notice(event, [], WEBHOOK_ONLY)
    assert (notice.purpose, notice.channel, notice.context) == (messages.UNREACHABLE, "webhook", {})
    assert [n.channel for n in messages.plan_unreachable_notice(event, [], EVERYWHERE)] == ["email"]


def test_the_ur_mailbox_hears_of_payers_authorizations_as_staff_and_never_the_payers_number() -> None:
    event = new_event(UR_SAMPLES["iop.authorization.review_due"]("ep-1"), source=SOURCE)
    [planned] = plan_notifications(event, [], reachable=EVERYWHERE)
    assert (planned.purpose, planned.recipient_kind, planned.channel) == ("authorization_review_due", "care_team",
                                                                          "email")  # fmt: skip
    assert planned.context["reason"] == "exhaustion" and "authorization_number" not in planned.context
    routes = safety.StaffRoutes("care@clinic.test", None, ur_team_email="ur@clinic.test",
                                ur_purposes=RULES.ur_purposes())  # fmt: skip
    assert routes.of("authorization_review_due") == ("ur_team", {"email": "ur@clinic.test"})
    assert routes.of("group_waitlist")[0] == "care_team"
    unset = safety.StaffRoutes("care@clinic.test", None, on_call_webhook_url="http://page",
                               ur_purposes=RULES.ur_purposes())  # fmt: skip
    assert unset.problems() == {"ur_team": unset.problems()["ur_team"]}
    assert "UR_TEAM_EMAIL" in unset.problems()["ur_team"]


@pytest.mark.parametrize("status", ["active", "referred_out"])
@pytest.mark.parametrize("with_schedule", [True, False])
def test_whether_a_calendar_event_tells_anyone_is_what_its_context_says(status: str, with_schedule: bool) -> None:
    """``tells_anyone`` answers without building the calendar's context, and answers as that context would."""
    schedule = SCHEDULE if with_schedule else None
    at = datetime(2026, 10, 22, 12, 0, tzinfo=UTC)
    ids = {"episode_id": "ep-1", "policy_version": POLICY.version, "rationale": []}
    calendars: list[EventData] = [
        assigned().model_copy(update={"status": status, "schedule": schedule}),
        CareLevelChanged(**ids, from_level=CareLevel.PHP, to_level=CareLevel.IOP, direction="down",
                         recommendation_id="r3", changed_at=at, status=status, schedule=schedule),
    ]  # fmt: skip
    if with_schedule:
        calendars.append(schedule_changed(SCHEDULE).data)
    for data in calendars:
        assert messages.tells_anyone(data) == (messages.context_of(data) is not None)
    assert messages.tells_anyone(missed()) and messages.context_of(missed()) is not None
