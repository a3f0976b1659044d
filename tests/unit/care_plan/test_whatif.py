"""The policy what-if replays an episode's history under two policies and names what would change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.care_plan.domain.care_plan import assign_care_level
from services.care_plan.domain.groups import Joined
from services.care_plan.domain.model import AttendanceRecord, CareInput, CarePlan
from services.care_plan.domain.policy import CarePolicy, ProgramGroup, load_policy
from services.care_plan.domain.whatif import compare, replay
from stepwise_contract import AssessmentCompleted, CareLevel, DimensionRatings, Reason

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York: the IOP group meets from Wednesday
POLICY = load_policy()


def iop_morning_group() -> ProgramGroup:
    group = POLICY.group("iop-am")  # Mon, Wed, Fri 09:00-12:00
    assert group is not None
    return group


def plan_with_history() -> CarePlan:
    assessment = AssessmentCompleted(
        episode_id="ep-1", assessment_id="a-1", kind="intake", program="adult", assessed_at=NOW,
        dimensions=DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1),
        recommended_level=CareLevel.IOP, rationale=[Reason(code="x", text="x")], policy_version="p",
    )  # fmt: skip
    plan, _ = assign_care_level(assessment, POLICY, "America/New_York", NOW, Joined(iop_morning_group()))
    missed = {
        sid: AttendanceRecord(status="missed", recorded_at=NOW + timedelta(days=n + 2))
        for n, sid in enumerate(["iop-am-20261104", "iop-am-20261106"])
    }
    alert = CareInput(kind="safety_alert", at=NOW + timedelta(days=10), source_id="al-1", alert_level="same_day")
    return plan.model_copy(update={"attendance": missed, "inputs": [alert]})


def stricter(policy: CarePolicy) -> CarePolicy:
    """The default policy, but outreach only after 3 misses in a row."""
    rules = [
        rule.model_copy(update={"count": 3}) if rule.code == "missed_2_in_a_row" else rule
        for rule in policy.missed_sessions.rules
    ]
    missed_sessions = policy.missed_sessions.model_copy(update={"rules": rules})
    return policy.model_copy(update={"version": "candidate", "missed_sessions": missed_sessions})


def test_replay_gives_what_the_policy_decided_in_time_order() -> None:
    outcomes = replay(plan_with_history(), POLICY)
    assert [o.what for o in outcomes] == [
        "missed_2_in_a_row → outreach at iop-am-20261106",
        "missed_2_of_last_6 → attendance_contract at iop-am-20261106",
        "step up IOP → PHP",
    ]
    assert outcomes == sorted(outcomes)


def test_compare_names_only_what_changes() -> None:
    only_current, only_candidate = compare(plan_with_history(), POLICY, stricter(POLICY))
    assert [o.what for o in only_current] == ["missed_2_in_a_row → outreach at iop-am-20261106"]
    assert only_candidate == []


def test_the_same_policy_changes_nothing() -> None:
    assert compare(plan_with_history(), POLICY, POLICY) == ([], [])
