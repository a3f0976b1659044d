"""Step-up / step-down recommendations: each trigger and criterion, the ladder, the policy and properties."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.care_plan.domain.model import AttendanceRecord, AttendanceStatus, CareInput, CarePlan, LevelPeriod
from services.care_plan.domain.policy import DEFAULT_POLICY_FILE, load_policy
from services.care_plan.domain.review import review
from services.care_plan.domain.stepping import (
    Rungs,
    StepDecision,
    StepDownRules,
    SteppingPolicy,
    StepUpRules,
    SustainedImprovement,
    level_period_start,
    recommend_step,
    step_down_criteria,
    step_up_triggers,
)
from services.common.policy_file import PolicyError
from stepwise_contract import (
    CareLevel,
    InstrumentChange,
    InstrumentResult,
    Reason,
    Schedule,
    ScheduledSession,
    StepUpRecommended,
)

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
"""When the current level began."""
NOW = T0 + timedelta(weeks=5)
POLICY = SteppingPolicy()
SESSION_COUNT = 15
PHQ9_BANDS = ((0, "minimal"), (5, "mild"), (10, "moderate"), (15, "moderately_severe"), (20, "severe"))


def at(days: float) -> datetime:
    """``days`` after the level began."""
    return T0 + timedelta(days=days)


def sessions(count: int = SESSION_COUNT, first_day: float = 1) -> list[ScheduledSession]:
    """One session every other day from ``first_day`` after the level began."""
    return [
        ScheduledSession(
            session_id=f"s{number}",
            starts_at=at(first_day + 2 * number),
            ends_at=at(first_day + 2 * number) + timedelta(hours=3),
        )
        for number in range(count)
    ]


def schedule(items: list[ScheduledSession] | None = None) -> Schedule:
    return Schedule(
        timezone="UTC",
        track="morning",
        days_per_week=3,
        hours_per_session=3,
        weeks=5,
        sessions=sessions() if items is None else items,
    )


def attended(statuses: Iterable[AttendanceStatus | None]) -> dict[str, AttendanceRecord]:
    return {
        f"s{number}": AttendanceRecord(status=status, recorded_at=at(1 + 2 * number) + timedelta(hours=3))
        for number, status in enumerate(statuses)
        if status is not None
    }


def phq9(total: int) -> InstrumentResult:
    band = [name for lowest, name in PHQ9_BANDS if total >= lowest][-1]
    return InstrumentResult(instrument="phq9", total=total, band=band)


def change(previous: int, total: int) -> InstrumentChange:
    delta = total - previous
    meaningful: Literal["improvement", "worsening"] | None = None
    if abs(delta) >= 5:
        meaningful = "improvement" if delta < 0 else "worsening"
    return InstrumentChange(
        instrument="phq9",
        previous_total=previous,
        total=total,
        delta=delta,
        previous_band=phq9(previous).band,
        band=phq9(total).band,
        meaningful_change=meaningful,
    )


def assessment(
    day: float,
    total: int | None = None,
    previous: int | None = None,
    extra: Iterable[InstrumentResult] = (),
) -> CareInput:
    instruments = [*([phq9(total)] if total is not None else []), *extra]
    changes = [change(previous, total)] if previous is not None and total is not None else []
    return CareInput(kind="assessment", at=at(day), source_id=f"a{day}", instruments=instruments, changes=changes)


def alert(day: float, level: Literal["immediate", "same_day"] = "same_day") -> CareInput:
    return CareInput(kind="safety_alert", at=at(day), source_id=f"alert{day}", alert_level=level)


def screen(day: float, positive: bool = True) -> CareInput:
    return CareInput(kind="drug_screen", at=at(day), source_id=f"screen{day}", unexpected_positive=positive)


IMPROVED = [assessment(14, 8), assessment(28, 7)]
"""Two PHQ-9 totals below 10 at this level."""


def recorded(attended: int, missed: int) -> list[AttendanceStatus | None]:
    """Sessions recorded ``attended`` times, then ``missed`` times."""
    return ["attended" if n < attended else "missed" for n in range(attended + missed)]


def make_plan(
    level: CareLevel = CareLevel.IOP,
    inputs: Iterable[CareInput] = (),
    statuses: Iterable[AttendanceStatus | None] | None = None,
    status: Literal["active", "referred_out", "graduated", "discharged"] = "active",
    **update: Any,
) -> CarePlan:
    """A plan at ``level`` since T0 (assigned a week earlier at another level), every session attended so far."""
    so_far: list[AttendanceStatus | None] = ["attended" if at(1 + 2 * n) < NOW else None for n in range(SESSION_COUNT)]
    if statuses is None:
        statuses = so_far
    plan = CarePlan(
        episode_id="e1",
        status=status,
        level=level,
        assessment_id="a0",
        assigned_at=T0 - timedelta(weeks=1),
        schedule=schedule(),
        attendance=attended(statuses),
        rationale=[Reason(code="assigned", text="Assigned.")],
        policy_version="test",
        level_history=[
            LevelPeriod(level=CareLevel.PHP, since=T0 - timedelta(weeks=1), reason="assigned"),
            LevelPeriod(level=level, since=T0, reason="step_down"),
        ],
        inputs=list(inputs),
    )
    return plan.model_copy(update=update) if update else plan


def codes(decision: StepDecision | None) -> list[str]:
    assert decision is not None
    return [reason.code for reason in decision.rationale]


# --- step-up ------------------------------------------------------------------------------------


def test_nothing_learned_recommends_nothing() -> None:
    assert recommend_step(make_plan(), POLICY, NOW) is None
    assert step_up_triggers(make_plan(), POLICY, NOW) == []


@pytest.mark.parametrize("level", ["immediate", "same_day"])
def test_safety_alert_since_level_began_steps_up(level: Literal["immediate", "same_day"]) -> None:
    decision = recommend_step(make_plan(inputs=[alert(10, level)]), POLICY, NOW)
    assert decision is not None
    assert (decision.direction, decision.to_level) == ("up", CareLevel.PHP)
    assert codes(decision) == ["safety_alert"]
    kind = "Immediate" if level == "immediate" else "Same-day"
    assert decision.rationale[0].text == f"{kind} safety alert raised on 2026-03-12, since IOP began on 2026-03-02."


def test_several_safety_alerts_give_one_reason_with_the_count() -> None:
    decision = recommend_step(make_plan(inputs=[alert(3, "immediate"), alert(10)]), POLICY, NOW)
    assert decision is not None
    assert decision.rationale == [
        Reason(
            code="safety_alert",
            text="2 safety alerts raised since IOP began on 2026-03-02 (latest: same-day, 2026-03-12).",
        )
    ]


def test_safety_alert_levels_not_listed_do_not_step_up() -> None:
    policy = SteppingPolicy(step_up=StepUpRules(safety_alert_levels=["immediate"]))
    assert step_up_triggers(make_plan(inputs=[alert(10, "same_day")]), policy, NOW) == []
    assert codes(recommend_step(make_plan(inputs=[alert(10, "immediate")]), policy, NOW)) == ["safety_alert"]


def test_meaningful_worsening_at_latest_assessment_steps_up() -> None:
    decision = recommend_step(make_plan(inputs=[assessment(20, 18, previous=12)]), POLICY, NOW)
    assert decision is not None
    assert (decision.direction, decision.to_level) == ("up", CareLevel.PHP)
    assert decision.rationale == [
        Reason(
            code="meaningful_worsening",
            text="PHQ-9 rose 6 points (12 → 18, moderate → moderately severe) at the assessment of 2026-03-22: "
            "a clinically meaningful worsening.",
        )
    ]


def test_worsening_below_the_meaningful_threshold_or_switched_off_does_not_step_up() -> None:
    assert recommend_step(make_plan(inputs=[assessment(20, 16, previous=12)]), POLICY, NOW) is None
    off = SteppingPolicy(step_up=StepUpRules(meaningful_worsening=False))
    assert recommend_step(make_plan(inputs=[assessment(20, 18, previous=12)]), off, NOW) is None


def test_only_the_latest_assessment_is_read_for_worsening_and_bands() -> None:
    plan = make_plan(inputs=[assessment(10, 22, previous=12), assessment(20, 14)])
    assert recommend_step(plan, POLICY, NOW) is None


def test_band_at_or_above_the_configured_band_steps_up() -> None:
    decision = recommend_step(make_plan(inputs=[assessment(20, 21)]), POLICY, NOW)
    assert decision is not None
    assert decision.rationale == [
        Reason(
            code="band_at_or_above",
            text="PHQ-9 total 21 at the assessment of 2026-03-22 is in the severe band, at or above the severe "
            "step-up band.",
        )
    ]
    assert recommend_step(make_plan(inputs=[assessment(20, 19)]), POLICY, NOW) is None


def test_band_rule_for_another_instrument() -> None:
    policy = SteppingPolicy(step_up=StepUpRules(worsening_bands={"dast10": "substantial", "cssrs": "high"}))
    dast = InstrumentResult(instrument="dast10", total=9, band="severe")
    cssrs = InstrumentResult(instrument="cssrs", total=None, band="moderate")
    decision = recommend_step(make_plan(inputs=[assessment(20, 21, extra=[dast, cssrs])]), policy, NOW)
    assert decision is not None
    assert decision.rationale == [
        Reason(
            code="band_at_or_above",
            text="DAST-10 total 9 at the assessment of 2026-03-22 is in the severe band, at or above the "
            "substantial step-up band.",
        )
    ]


def test_repeated_unexpected_positive_screens_step_up() -> None:
    decision = recommend_step(make_plan(inputs=[screen(25), screen(27, False), screen(31)]), POLICY, NOW)
    assert decision is not None
    assert (decision.direction, decision.to_level) == ("up", CareLevel.PHP)
    assert decision.rationale == [
        Reason(
            code="repeated_positive_screens",
            text="2 unexpected positive drug screens in the last 14 days (latest 2026-04-02) meet the step-up "
            "threshold of 2.",
        )
    ]


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param([screen(31)], id="one"),
        pytest.param([screen(15), screen(31)], id="one-outside-the-window"),
        pytest.param([screen(25, False), screen(31, False)], id="negatives"),
    ],
)
def test_positive_screens_below_the_count_in_the_window_do_not_step_up(inputs: list[CareInput]) -> None:
    assert step_up_triggers(make_plan(inputs=inputs), POLICY, NOW) == []


def test_positive_screen_rule_switched_off() -> None:
    policy = SteppingPolicy(step_up=StepUpRules(unexpected_positive_screens=None))
    assert step_up_triggers(make_plan(inputs=[screen(25), screen(31)]), policy, NOW) == []


def test_every_trigger_that_held_is_listed() -> None:
    plan = make_plan(inputs=[alert(3), screen(25), screen(31), assessment(33, 22, previous=15)])
    assert codes(recommend_step(plan, POLICY, NOW)) == [
        "safety_alert",
        "meaningful_worsening",
        "band_at_or_above",
        "repeated_positive_screens",
    ]


def test_step_up_from_php_refers_out_to_residential() -> None:
    decision = recommend_step(make_plan(CareLevel.PHP, inputs=[alert(10, "immediate")]), POLICY, NOW)
    assert decision is not None
    assert (decision.direction, decision.to_level) == ("up", CareLevel.RESIDENTIAL)


OFFERED = (CareLevel.OP, CareLevel.IOP, CareLevel.PHP)


def referred(day: float, level: CareLevel, total: int | None = None) -> CareInput:
    """A reassessment whose level (intake's recommendation, or the clinician's choice) is ``level``."""
    return assessment(day, total).model_copy(update={"recommended_level": level})


def test_a_reassessment_calling_for_a_level_not_offered_recommends_a_referral_out() -> None:
    plan = make_plan(inputs=[alert(9, "immediate"), referred(9, CareLevel.INPATIENT)])
    decision = recommend_step(plan, POLICY, NOW, OFFERED)
    assert decision is not None
    assert (decision.direction, decision.to_level, decision.refer_out) == ("up", CareLevel.INPATIENT, True)
    assert codes(decision) == ["referral_out", "safety_alert"]  # wins over the rung up; the alert goes with it
    assert decision.rationale[0].text == (
        "The reassessment of 2026-03-11 calls for INPATIENT, which this program does not offer: refer the patient "
        "to INPATIENT care elsewhere (accepting discharges the episode, reason referred out)."
    )
    assert recommend_step(plan, POLICY, NOW).to_level is CareLevel.PHP  # type: ignore[union-attr]  # levels unknown


def test_a_later_reassessment_within_reach_undoes_the_referral() -> None:
    plan = make_plan(inputs=[referred(9, CareLevel.RESIDENTIAL), referred(20, CareLevel.IOP)])
    assert recommend_step(plan, POLICY, NOW, OFFERED) is None
    before = make_plan(inputs=[referred(-3, CareLevel.INPATIENT)])  # before this level began
    assert recommend_step(before, POLICY, NOW, OFFERED) is None


def test_a_rung_to_a_level_not_offered_is_a_referral_out_too() -> None:
    plan = make_plan(CareLevel.PHP, inputs=[alert(10, "immediate")])
    decision = recommend_step(plan, POLICY, NOW, OFFERED)
    assert decision is not None and (decision.to_level, decision.refer_out) == (CareLevel.RESIDENTIAL, True)
    assert recommend_step(make_plan(inputs=[alert(10)]), POLICY, NOW, OFFERED).refer_out is False  # type: ignore[union-attr]


def test_a_referral_out_is_published_as_one_for_the_clinician_to_decide() -> None:
    plan = make_plan(inputs=[referred(9, CareLevel.INPATIENT)])
    reviewed, events = review(plan, CARE_POLICY, NOW)
    [event] = [e for e in events if isinstance(e, StepUpRecommended)]
    assert (event.to_level, event.refer_out) == (CareLevel.INPATIENT, True)
    assert reviewed.open_recommendation is not None and reviewed.open_recommendation.refer_out
    assert reviewed.status == "active"  # the clinician decides


# --- step-down ----------------------------------------------------------------------------------


def test_all_criteria_holding_recommends_the_rung_down() -> None:
    statuses: list[AttendanceStatus | None] = [*recorded(attended=9, missed=0), "late", "missed", "missed", "excused"]
    decision = recommend_step(make_plan(inputs=IMPROVED, statuses=statuses), POLICY, NOW)
    assert decision is not None
    assert (decision.direction, decision.to_level) == ("down", CareLevel.OP)
    assert decision.rationale == [
        Reason(code="weeks_in_level", text="5 weeks in IOP since 2026-03-02 meets the 4-week minimum."),
        Reason(
            code="attendance_rate",
            text="Attendance 83% (10 of 12 recorded sessions, 1 excused left out) meets the 80% minimum.",
        ),
        Reason(
            code="sustained_improvement",
            text="PHQ-9 below 10 at each of the last 2 assessments since IOP began (8 on 2026-03-16, 7 on 2026-03-30).",
        ),
        Reason(code="no_recent_safety_alert", text="No safety alert in the last 14 days."),
        Reason(code="no_recent_positive_screen", text="No unexpected positive drug screen in the last 14 days."),
    ]
    assert step_down_criteria(make_plan(inputs=IMPROVED, statuses=statuses), POLICY, NOW) == decision.rationale


def test_php_steps_down_to_iop_after_its_two_weeks() -> None:
    decision = recommend_step(make_plan(CareLevel.PHP, inputs=IMPROVED), POLICY, NOW)
    assert decision is not None
    assert (decision.direction, decision.to_level) == ("down", CareLevel.IOP)


def test_meaningful_improvement_at_the_latest_assessment_is_sustained_improvement() -> None:
    plan = make_plan(inputs=[assessment(28, 12, previous=18)])
    decision = recommend_step(plan, POLICY, NOW)
    assert decision is not None
    assert decision.direction == "down"
    assert decision.rationale[2] == Reason(
        code="sustained_improvement",
        text="PHQ-9 fell 6 points (18 → 12, moderately severe → moderate): a clinically meaningful improvement "
        "at the assessment of 2026-03-30.",
    )


def test_sustained_improvement_on_another_instrument() -> None:
    rule = SustainedImprovement(instrument="gad7", assessments=1, below_total=5, or_meaningful_improvement=False)
    policy = SteppingPolicy(step_down=StepDownRules(sustained_improvement=rule))
    gad7 = InstrumentResult(instrument="gad7", total=3, band="minimal")
    reasons = step_down_criteria(make_plan(inputs=[assessment(28, extra=[gad7])]), policy, NOW)
    assert reasons is not None
    assert reasons[2].text == "GAD-7 below 5 at the last assessment since IOP began (3 on 2026-03-30)."
    assert step_down_criteria(make_plan(inputs=IMPROVED), policy, NOW) is None


@pytest.mark.parametrize(
    ("inputs", "statuses", "now"),
    [
        pytest.param([assessment(14, 8), assessment(20, 7)], None, at(27), id="weeks-in-level"),
        pytest.param(IMPROVED, ["attended"] * 11 + ["missed"] * 4, NOW, id="attendance-rate"),
        pytest.param([assessment(14, 8), assessment(28, 11)], None, NOW, id="latest-phq9-10-or-more"),
        pytest.param([assessment(28, 8)], None, NOW, id="one-assessment-only"),
        pytest.param([assessment(14, 15), assessment(28, 11, previous=15)], None, NOW, id="drop-below-5-points"),
        pytest.param([*IMPROVED, screen(31)], None, NOW, id="recent-positive-screen"),
    ],
)
def test_one_step_down_criterion_failing_blocks_step_down(
    inputs: list[CareInput], statuses: list[AttendanceStatus | None] | None, now: datetime
) -> None:
    plan = make_plan(inputs=inputs, statuses=statuses)
    assert step_down_criteria(plan, POLICY, now) is None
    assert recommend_step(plan, POLICY, now) is None


def test_one_assessment_only_fails_when_the_improvement_alternative_is_off() -> None:
    rule = SustainedImprovement(or_meaningful_improvement=False)
    policy = SteppingPolicy(step_down=StepDownRules(sustained_improvement=rule))
    assert step_down_criteria(make_plan(inputs=[assessment(28, 9, previous=15)]), policy, NOW) is None
    assert step_down_criteria(make_plan(inputs=[assessment(28, 9, previous=15)]), POLICY, NOW) is not None


def test_recent_safety_alert_blocks_step_down() -> None:
    policy = SteppingPolicy(step_up=StepUpRules(safety_alert_levels=[]))
    plan = make_plan(inputs=[*IMPROVED, alert(30)])
    assert step_down_criteria(plan, policy, NOW) is None
    assert recommend_step(plan, policy, NOW) is None
    assert recommend_step(make_plan(inputs=[*IMPROVED, alert(20)]), policy, NOW) is not None  # 15 days ago


def test_no_recent_criteria_look_back_across_the_level_change() -> None:
    policy = SteppingPolicy(step_down=StepDownRules(no_safety_alert_days=60))
    plan = make_plan(inputs=[alert(-3), *IMPROVED])
    assert step_up_triggers(plan, policy, NOW) == []  # the alert predates the level
    assert step_down_criteria(plan, policy, NOW) is None  # but is within the 60 days


def test_attendance_reads_only_recorded_sessions_of_the_level_period() -> None:
    early = [s.model_copy(update={"session_id": f"old{i}"}) for i, s in enumerate(sessions(3, first_day=-6))]
    plan = make_plan(inputs=IMPROVED).model_copy(update={"schedule": schedule([*early, *sessions()])})
    missed_before = {f"old{i}": AttendanceRecord(status="missed", recorded_at=at(-1)) for i in range(3)}  # before
    plan = plan.model_copy(update={"attendance": {**plan.attendance, **missed_before}})
    reasons = step_down_criteria(plan, POLICY, NOW)
    assert reasons is not None
    assert reasons[1].text == "Attendance 100% (15 of 15 recorded sessions) meets the 80% minimum."


def test_attendance_exactly_at_the_minimum_holds() -> None:
    reasons = step_down_criteria(make_plan(inputs=IMPROVED, statuses=recorded(attended=12, missed=3)), POLICY, NOW)
    assert reasons is not None
    assert reasons[1].text == "Attendance 80% (12 of 15 recorded sessions) meets the 80% minimum."
    policy = SteppingPolicy(step_down=StepDownRules(min_attendance_rate=0.7))
    reasons = step_down_criteria(make_plan(inputs=IMPROVED, statuses=recorded(attended=7, missed=3)), policy, NOW)
    assert reasons is not None
    assert reasons[1].text == "Attendance 70% (7 of 10 recorded sessions) meets the 70% minimum."


def test_no_recorded_session_fails_attendance_unless_no_minimum() -> None:
    plan = make_plan(inputs=IMPROVED, statuses=[])
    assert step_down_criteria(plan, POLICY, NOW) is None
    assert step_down_criteria(plan.model_copy(update={"schedule": None}), POLICY, NOW) is None
    policy = SteppingPolicy(step_down=StepDownRules(min_attendance_rate=0))
    reasons = step_down_criteria(plan, policy, NOW)
    assert reasons is not None
    assert reasons[1].text == "No sessions recorded at IOP yet; the policy sets no attendance minimum."


def test_level_without_a_minimum_time() -> None:
    policy = SteppingPolicy(step_down=StepDownRules(min_weeks_in_level={}))
    reasons = step_down_criteria(make_plan(inputs=IMPROVED), policy, at(29))
    assert reasons is not None
    assert reasons[0].text == "4 weeks in IOP since 2026-03-02; the policy sets no minimum time in IOP."


# --- ladder, status, level period ---------------------------------------------------------------


def test_step_up_wins_over_step_down() -> None:
    plan = make_plan(inputs=[*IMPROVED, alert(10)])
    assert step_down_criteria(plan, POLICY, NOW) is not None  # the alert is 25 days old
    decision = recommend_step(plan, POLICY, NOW)
    assert decision is not None
    assert (decision.direction, decision.to_level) == ("up", CareLevel.PHP)


def test_no_rung_down_from_op() -> None:
    plan = make_plan(CareLevel.OP, inputs=IMPROVED)
    assert step_down_criteria(plan, POLICY, NOW) is not None
    assert recommend_step(plan, POLICY, NOW) is None


def test_no_rung_up_gives_nothing_not_a_step_down() -> None:
    ladder = {CareLevel.IOP: Rungs(down=CareLevel.OP)}
    policy = SteppingPolicy(ladder=ladder)
    assert recommend_step(make_plan(inputs=IMPROVED), policy, NOW) is not None
    assert recommend_step(make_plan(inputs=[*IMPROVED, alert(10)]), policy, NOW) is None


def test_level_missing_from_the_ladder_never_steps() -> None:
    policy = SteppingPolicy(ladder={CareLevel.OP: Rungs(up=CareLevel.IOP)})
    assert recommend_step(make_plan(inputs=[alert(10)]), policy, NOW) is None
    assert recommend_step(make_plan(inputs=IMPROVED), policy, NOW) is None


@pytest.mark.parametrize("status", ["referred_out", "graduated", "discharged"])
def test_a_plan_that_is_not_active_never_steps(status: Literal["referred_out", "graduated", "discharged"]) -> None:
    assert recommend_step(make_plan(inputs=[alert(10)], status=status), POLICY, NOW) is None
    assert recommend_step(make_plan(inputs=IMPROVED, status=status), POLICY, NOW) is None


def test_inputs_before_the_current_level_period_are_ignored() -> None:
    before = [alert(-2, "immediate"), screen(-3), screen(-1), assessment(-1, 24, previous=12)]
    assert step_up_triggers(make_plan(inputs=before), POLICY, at(5)) == []
    # Low PHQ-9 totals before the level began do not count towards sustained improvement.
    plan = make_plan(inputs=[assessment(-5, 6), assessment(-1, 5), assessment(28, 7)])
    rule = SustainedImprovement(or_meaningful_improvement=False)
    assert step_down_criteria(plan, SteppingPolicy(step_down=StepDownRules(sustained_improvement=rule)), NOW) is None


def test_level_period_starts_at_the_last_level_change_else_at_assignment() -> None:
    assert level_period_start(make_plan()) == T0
    unchanged = make_plan(level_history=[], assigned_at=T0 + timedelta(days=20))
    assert level_period_start(unchanged) == T0 + timedelta(days=20)
    assert recommend_step(unchanged.model_copy(update={"inputs": [alert(10)]}), POLICY, NOW) is None
    assert codes(recommend_step(unchanged.model_copy(update={"inputs": [alert(21)]}), POLICY, NOW)) == ["safety_alert"]


def test_inputs_out_of_order_are_read_by_time() -> None:
    plan = make_plan(inputs=[assessment(20, 21), assessment(10, 8)])
    assert codes(recommend_step(plan, POLICY, NOW)) == ["band_at_or_above"]


# --- policy -------------------------------------------------------------------------------------


def test_default_policy_values() -> None:
    policy = SteppingPolicy()
    assert policy.ladder == {
        CareLevel.OP: Rungs(up=CareLevel.IOP),
        CareLevel.IOP: Rungs(up=CareLevel.PHP, down=CareLevel.OP),
        CareLevel.PHP: Rungs(up=CareLevel.RESIDENTIAL, down=CareLevel.IOP),
    }
    assert policy.step_up.safety_alert_levels == ["immediate", "same_day"]
    assert policy.step_up.meaningful_worsening is True
    assert policy.step_up.worsening_bands == {"phq9": "severe"}
    assert policy.step_up.unexpected_positive_screens is not None
    assert policy.step_up.unexpected_positive_screens.count == 2
    assert policy.step_up.unexpected_positive_screens.within_days == 14
    down = policy.step_down
    assert down.min_weeks_in_level == {CareLevel.IOP: 4, CareLevel.PHP: 2, CareLevel.OP: 4}
    assert down.min_attendance_rate == 0.8
    assert down.sustained_improvement == SustainedImprovement(
        instrument="phq9", assessments=2, below_total=10, or_meaningful_improvement=True
    )
    assert (down.no_safety_alert_days, down.no_unexpected_positive_days) == (14, 14)


def test_default_file_writes_out_the_defaults() -> None:
    assert load_policy().stepping == SteppingPolicy()


def test_empty_stepping_section_loads_the_defaults(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    raw["stepping"] = {}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_policy(path).stepping == SteppingPolicy()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"step_up": {"worsening_bands": {"phq10": "severe"}}}, "unknown instrument 'phq10'"),
        ({"step_up": {"worsening_bands": {"gad7": "moderately_severe"}}}, "unknown band 'moderately_severe'"),
        ({"step_up": {"safety_alert_levels": ["urgent"]}}, "step_up.safety_alert_levels"),
        ({"step_down": {"sustained_improvement": {"instrument": "bdi"}}}, "unknown instrument 'bdi'"),
        ({"step_down": {"sustained_improvement": {"instrument": "cssrs"}}}, "C-SSRS has no total"),
        ({"step_down": {"sustained_improvement": {"below_total": 30}}}, "above the PHQ-9 maximum of 27"),
        ({"step_down": {"min_attendance_rate": 1.2}}, "min_attendance_rate"),
        ({"step_down": {"min_attendance_rate": -0.1}}, "min_attendance_rate"),
        ({"step_down": {"min_weeks_in_level": {"IOP": -1}}}, "min_weeks_in_level.IOP"),
        ({"step_down": {"min_weeks_in_level": {"DAY": 2}}}, "min_weeks_in_level"),
        ({"ladder": {"IOP": {"up": "HOSPITAL"}}}, "ladder.IOP.up"),
        ({"ladder": {"CLINIC": {"up": "IOP"}}}, "ladder"),
        ({"ladder": {"IOP": {"up": "OP"}}}, "OP is not more intensive than IOP"),
        ({"ladder": {"IOP": {"down": "PHP"}}}, "PHP is not less intensive than IOP"),
        ({"ladder": {"IOP": {"sideways": "OP"}}}, "sideways"),
        ({"step_up": {"unexpected_positive_screens": {"count": 0}}}, "count"),
        ({"stepdown": {}}, "stepdown"),
    ],
)
def test_invalid_stepping_policy_is_rejected(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SteppingPolicy.model_validate(raw)
    assert message in str(caught.value)


def test_invalid_stepping_section_in_a_file_names_the_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    raw["stepping"] = {"step_up": {"worsening_bands": {"phq9": "extreme"}}}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "stepping.step_up" in str(caught.value)
    assert "unknown band 'extreme'" in str(caught.value)


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError):
        POLICY.step_down.min_attendance_rate = 0.5  # type: ignore[misc]


# --- properties ---------------------------------------------------------------------------------

STATUS: st.SearchStrategy[AttendanceStatus | None] = st.sampled_from(
    [None, "attended", "attended", "attended", "late", "missed", "excused"]
)
DAY = st.floats(min_value=-20, max_value=35, allow_nan=False)
INPUT = st.one_of(
    st.builds(assessment, DAY, st.integers(0, 27), st.one_of(st.none(), st.integers(0, 27))),
    st.builds(alert, DAY, st.sampled_from(["immediate", "same_day"])),
    st.builds(screen, DAY, st.booleans()),
)


@st.composite
def plans(draw: st.DrawFn) -> CarePlan:
    level = draw(st.sampled_from([CareLevel.OP, CareLevel.IOP, CareLevel.PHP]))
    statuses = draw(st.lists(STATUS, min_size=SESSION_COUNT, max_size=SESSION_COUNT))
    inputs = draw(st.lists(INPUT, max_size=8))
    if draw(st.booleans()):
        inputs = [*inputs, *IMPROVED]  # make step-downs common
    return make_plan(level, inputs=inputs, statuses=statuses)


@settings(max_examples=300, deadline=None)
@given(plans(), st.builds(alert, DAY, st.sampled_from(["immediate", "same_day"])))
def test_a_safety_alert_never_removes_a_step_up_nor_adds_a_step_down(plan: CarePlan, new_alert: CareInput) -> None:
    before = recommend_step(plan, POLICY, NOW)
    after = recommend_step(plan.model_copy(update={"inputs": [*plan.inputs, new_alert]}), POLICY, NOW)
    if before is not None and before.direction == "up":
        assert after is not None
        assert (after.direction, after.to_level) == ("up", before.to_level)
    if after is not None and after.direction == "down":
        assert before == after


@settings(max_examples=300, deadline=None)
@given(plans(), st.integers(0, SESSION_COUNT - 1))
def test_one_more_session_attended_never_removes_a_step_down(plan: CarePlan, number: int) -> None:
    before = recommend_step(plan, POLICY, NOW)
    session_id = f"s{number}"
    record = AttendanceRecord(status="attended", recorded_at=at(1 + 2 * number))
    after = recommend_step(plan.model_copy(update={"attendance": {**plan.attendance, session_id: record}}), POLICY, NOW)
    if before is not None and before.direction == "down":
        assert after is not None
        assert (after.direction, after.to_level) == ("down", before.to_level)


CARE_POLICY = load_policy()


@settings(max_examples=300, deadline=None)
@given(plans(), st.floats(min_value=0, max_value=60, allow_nan=False))
def test_reviewing_twice_changes_nothing(plan: CarePlan, days: float) -> None:
    """review's promise (and why every timer fires once): on its own result it finds nothing more to do."""
    now = at(days)
    reviewed, _ = review(plan, CARE_POLICY, now)
    again, events = review(reviewed, CARE_POLICY, now)
    assert again == reviewed
    assert events == []
