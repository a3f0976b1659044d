"""What the tests of groups, appointments and services share: the default policy, the IOP morning group's meetings
from Tuesday 2026-10-20, and plans joined, waiting and reviewed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from services.care_plan.domain.care_plan import assign_care_level, record_attendance
from services.care_plan.domain.groups import Joined, Placement, Waitlisted, book_appointment
from services.care_plan.domain.measures import without_measures
from services.care_plan.domain.model import AttendanceRecord, AttendanceStatus, CarePlan, StepRecommendation
from services.care_plan.domain.policy import CarePolicy, ProgramGroup, load_policy
from stepwise_contract import (
    AssessmentCompleted,
    CareLevel,
    DimensionRatings,
    EventData,
    Program,
    Reason,
    ScheduledSession,
)
from tests.unit.care_plan.test_care_plan import default_raw, raw_group

NEW_YORK = "America/New_York"
NY = ZoneInfo(NEW_YORK)
# Due measures have their own tests (test_measures.py); the others keep the timers and events of the calendar.
POLICY = without_measures(load_policy())
ASSIGNED_AT = datetime(2026, 10, 20, 15, 0, tzinfo=UTC)  # Tuesday 11:00 in New York
LATER = datetime(2027, 6, 1, tzinfo=UTC)

# The IOP morning group (Mon, Wed, Fri 09:00-12:00 New York) from Tuesday 2026-10-20.
WED_21, FRI_23, MON_26, WED_28, FRI_30 = (
    "iop-am-20261021",
    "iop-am-20261023",
    "iop-am-20261026",
    "iop-am-20261028",
    "iop-am-20261030",
)


def group(group_id: str, policy: CarePolicy = POLICY) -> ProgramGroup:
    found = policy.group(group_id)
    assert found is not None, group_id
    return found


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    """A New York wall-clock time."""
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def assessment(
    level: CareLevel = CareLevel.IOP, program: Program = "adult", episode_id: str = "ep-1"
) -> AssessmentCompleted:
    return AssessmentCompleted(
        episode_id=episode_id,
        assessment_id="as-1",
        kind="intake",
        program=program,
        assessed_at=ASSIGNED_AT - timedelta(hours=1),
        dimensions=DimensionRatings(withdrawal=0, biomedical=0, emotional=2, readiness=1, relapse=1, environment=0),
        recommended_level=level,
        rationale=[Reason(code="highest_dimension", text="Highest dimension rating is 2 (emotional): IOP.")],
        policy_version="placement-1",
    )


def new_plan(
    placement: Placement,
    now: datetime = ASSIGNED_AT,
    level: CareLevel = CareLevel.IOP,
    program: Program = "adult",
    policy: CarePolicy = POLICY,
) -> tuple[CarePlan, list[EventData]]:
    return assign_care_level(assessment(level, program), policy, NEW_YORK, now, placement)


def joined_plan(group_id: str = "iop-am", now: datetime = ASSIGNED_AT, policy: CarePolicy = POLICY) -> CarePlan:
    joined = group(group_id, policy)
    plan, _ = new_plan(Joined(joined), now, joined.level, policy=policy)
    return plan


def waiting_plan(now: datetime = ASSIGNED_AT, position: int = 1) -> CarePlan:
    plan, _ = new_plan(Waitlisted([group("iop-am")], CareLevel.IOP, "morning", position), now)
    return plan


def ids(plan: CarePlan) -> list[str]:
    assert plan.schedule is not None
    return [session.session_id for session in plan.schedule.sessions]


def sessions_of(plan: CarePlan) -> list[ScheduledSession]:
    assert plan.schedule is not None
    return plan.schedule.sessions


def session_of(plan: CarePlan, session_id: str) -> ScheduledSession:
    return next(session for session in sessions_of(plan) if session.session_id == session_id)


def attend(
    plan: CarePlan, session_id: str, status: AttendanceStatus, at: datetime, minutes: int | None = None
) -> CarePlan:
    attendance, _ = record_attendance(plan, session_id, status, at, minutes=minutes)
    return plan.model_copy(update={"attendance": attendance})


def book(plan: CarePlan, kind: str, starts_at: datetime, minutes: int | None = None) -> tuple[CarePlan, str]:
    booked, _, session_id = book_appointment(plan, kind, starts_at, minutes, POLICY, ASSIGNED_AT)
    return booked, session_id


def recommendation(to_level: CareLevel, at: datetime, direction: str = "up") -> StepRecommendation:
    return StepRecommendation.model_validate(
        {"recommendation_id": "rec-1", "direction": direction, "from_level": CareLevel.IOP, "to_level": to_level,
         "rationale": [], "policy_version": POLICY.version, "created_at": at, "status": "accepted"}
    )  # fmt: skip


def policy_with_group_closures(group_id: str, closures: list[str]) -> CarePolicy:
    raw = default_raw()
    raw_group(raw, group_id)["closures"] = closures
    return CarePolicy.model_validate(raw)


RECORDED = datetime(2026, 10, 21, 20, 0, tzinfo=UTC)  # Wednesday 16:00 in New York


def ahead(plan: CarePlan, session_id: str, at: datetime) -> CarePlan:
    """Attendance recorded ahead of the session, as a plan stored before that was refused may hold it."""
    record = AttendanceRecord(status="attended", recorded_at=at)
    return plan.model_copy(update={"attendance": {**plan.attendance, session_id: record}})
