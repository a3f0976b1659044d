"""The treatment plan: versions, signing, the patient's agreement; reviews due by the level's interval (local days
across DST, off closures and closed weekdays) and at once on a level change, a reliable deterioration, an immediate
alert or the planned discharge; due → overdue → done; objectives' progress from the measures."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.care_plan.domain.model import (
    CareInput,
    CarePlan,
    CarePlanError,
    Goal,
    InstrumentTarget,
    Intervention,
    LevelPeriod,
    Objective,
    Problem,
    ReviewOutcome,
)
from services.care_plan.domain.review import next_check, review
from services.care_plan.domain.treatment_plan import (
    MAX_VERSIONS,
    TreatmentPlanPolicy,
    acknowledge,
    next_periodic_due_on,
    next_review_check,
    open_weekday,
    progress,
    put_version,
    record_review,
    review_treatment,
    sign,
)
from stepwise_contract import (
    CareLevel,
    EventData,
    InstrumentMeasure,
    MeasureClassification,
    TreatmentPlanReviewDue,
    TreatmentPlanReviewed,
    TreatmentPlanReviewOverdue,
    TreatmentPlanSigned,
)
from tests.unit.care_plan.helpers import ASSIGNED_AT, NEW_YORK, POLICY, joined_plan

RULES = POLICY.treatment_plan
CLOSURES = POLICY.closures
SIGNED_AT = ASSIGNED_AT + timedelta(hours=1)  # Tuesday 2026-10-20, 12:00 in New York (EDT)
NY = ZoneInfo(NEW_YORK)


def review_of(plan: CarePlan, outcome: ReviewOutcome, by: str, at: datetime) -> CarePlan:
    """The plan after a recorded review (its event: ``test_a_recorded_review_says_which_reviews_it_settled``)."""
    return record_review(plan, outcome, by, RULES, CLOSURES, at)[0]


def problems(
    statement: str = "Drinking harms work and family.", target: InstrumentTarget | None = None
) -> list[Problem]:
    weekly = Intervention(modality="group", per_week=3, responsible_role="counsellor")
    objective = Objective(statement="PHQ-9 below 10 twice in a row.", target_date=date(2027, 1, 15), target=target,
                          interventions=[weekly])  # fmt: skip
    return [Problem(statement=statement, goals=[Goal(in_own_words="Be there for my kids.", objectives=[objective])])]


def signed_plan(at: datetime = SIGNED_AT, rules: TreatmentPlanPolicy = RULES) -> tuple[CarePlan, list[EventData]]:
    plan = put_version(joined_plan(), problems(), "dr.a", NEW_YORK, at - timedelta(minutes=5))
    return sign(plan, 1, "dr.a", rules, CLOSURES, at)


def measured(plan: CarePlan, at: datetime, score: int, classification: MeasureClassification = "no_reliable_change",
             source_id: str | None = None) -> CarePlan:  # fmt: skip
    scored = InstrumentMeasure(instrument="phq9", score=score, band="mild", baseline_score=8, previous_score=8,
                               classification=classification, recovered=False, response=False)  # fmt: skip
    learned = CareInput(kind="measure", at=at, source_id=source_id or f"m-{at.isoformat()}", measured=[scored])
    return plan.model_copy(update={"inputs": [*plan.inputs, learned]})


def alerted(plan: CarePlan, at: datetime, level: str = "immediate") -> CarePlan:
    learned = CareInput.model_validate({"kind": "safety_alert", "at": at, "source_id": "al-1", "alert_level": level})
    return plan.model_copy(update={"inputs": [*plan.inputs, learned]})


def due(events: list[EventData]) -> list[TreatmentPlanReviewDue]:
    return [event for event in events if isinstance(event, TreatmentPlanReviewDue)]


# --- versions, signing, acknowledgement ---------------------------------------------------------------------------


def test_each_put_is_a_new_version_and_the_same_again_changes_nothing() -> None:
    plan = put_version(joined_plan(), problems(), "dr.a", NEW_YORK, ASSIGNED_AT)
    assert put_version(plan, problems(), "dr.b", NEW_YORK, SIGNED_AT) is plan
    plan = put_version(plan, problems("Drinking and sleep."), "dr.b", NEW_YORK, SIGNED_AT)
    assert plan.treatment is not None
    assert [(v.version, v.put_by, v.signed_at) for v in plan.treatment.versions] == [
        (1, "dr.a", None),
        (2, "dr.b", None),
    ]


def test_versions_are_bounded() -> None:
    plan = joined_plan()
    for n in range(MAX_VERSIONS):
        plan = put_version(plan, problems(f"problem {n}"), "dr.a", NEW_YORK, ASSIGNED_AT)
    with pytest.raises(CarePlanError) as refused:
        put_version(plan, problems("one more"), "dr.a", NEW_YORK, ASSIGNED_AT)
    assert refused.value.code == "too_many_versions"


def test_signing_locks_the_latest_version_and_a_change_is_a_new_version_that_needs_signing() -> None:
    plan, events = signed_plan()
    [signed] = events
    assert isinstance(signed, TreatmentPlanSigned) and (signed.version, signed.supersedes_version) == (1, None)
    assert signed.review_due_on == date(2026, 11, 19)  # 30 days on, a Thursday
    assert sign(plan, 1, "dr.b", RULES, CLOSURES, SIGNED_AT + timedelta(hours=1)) == (plan, [])  # signed already
    plan = put_version(plan, problems("Drinking and sleep."), "dr.b", NEW_YORK, SIGNED_AT + timedelta(days=1))
    assert plan.treatment is not None and plan.treatment.in_force is not None
    assert plan.treatment.in_force.version == 1 and plan.treatment.versions[-1].signed_at is None
    with pytest.raises(CarePlanError) as stale:
        sign(plan, 1, "dr.b", RULES, CLOSURES, SIGNED_AT + timedelta(days=1))
    assert stale.value.code == "version_changed"
    plan, [again] = sign(plan, 2, "dr.b", RULES, CLOSURES, SIGNED_AT + timedelta(days=2))
    assert isinstance(again, TreatmentPlanSigned) and (again.version, again.supersedes_version) == (2, 1)
    assert plan.treatment is not None and plan.treatment.versions[1].signed_by == "dr.b"


def test_the_patient_agrees_to_a_signed_version_only_and_not_ahead_of_now() -> None:
    draft = put_version(joined_plan(), problems(), "dr.a", NEW_YORK, ASSIGNED_AT)
    with pytest.raises(CarePlanError) as unsigned:
        acknowledge(draft, 1, "verbal", ASSIGNED_AT, "front.desk", SIGNED_AT)
    assert (unsigned.value.code, unsigned.value.field) == ("plan_not_signed", ("body", "version"))
    plan, _ = signed_plan()
    with pytest.raises(CarePlanError) as ahead:
        acknowledge(plan, 1, "verbal", SIGNED_AT + timedelta(hours=1), "front.desk", SIGNED_AT)
    assert ahead.value.code == "agreed_in_future"
    agreed = acknowledge(plan, 1, "signed_on_paper", SIGNED_AT, "front.desk", SIGNED_AT + timedelta(minutes=3))
    assert agreed.treatment is not None
    record = agreed.treatment.versions[0].acknowledgement
    assert record is not None and (record.how, record.recorded_by) == ("signed_on_paper", "front.desk")
    assert acknowledge(agreed, 1, "signed_on_paper", SIGNED_AT, "front.desk", SIGNED_AT + timedelta(hours=1)) is agreed


def test_the_same_review_again_with_nothing_due_since_changes_nothing() -> None:
    plan, _ = signed_plan()
    once = review_of(plan, "continued", "dr.a", SIGNED_AT + timedelta(days=1))
    assert review_of(once, "continued", "dr.a", SIGNED_AT + timedelta(days=1, minutes=1)) is once
    assert review_of(once, "revised", "dr.a", SIGNED_AT + timedelta(days=2)) is not once
    worse = measured(once, SIGNED_AT + timedelta(days=3), 16, "reliable_deterioration")
    worse, _ = review_treatment(worse, RULES, CLOSURES, SIGNED_AT + timedelta(days=3, minutes=1))
    again = review_of(worse, "continued", "dr.a", SIGNED_AT + timedelta(days=3, hours=1))
    assert again.treatment is not None and len(again.treatment.reviews) == 2  # a review was due: it is recorded


def test_a_recorded_review_says_which_reviews_it_settled_and_a_repeat_says_nothing() -> None:
    plan, _ = signed_plan()
    worse_at = SIGNED_AT + timedelta(days=3)  # Friday 2026-10-23
    plan, events = review_treatment(measured(plan, worse_at, 16, "reliable_deterioration", "m-1"), RULES, CLOSURES,
                                    worse_at + timedelta(minutes=1))  # fmt: skip
    [held] = due(events)
    at = worse_at + timedelta(hours=4)
    reviewed, [event] = record_review(plan, "revised", "dr.b", RULES, CLOSURES, at)
    assert isinstance(event, TreatmentPlanReviewed)
    assert (event.settled_review_ids, event.version, event.outcome) == ([held.review_id], 1, "revised")
    assert (event.reviewed_at, event.review_due_on) == (at, date(2026, 11, 23))
    assert "dr.b" not in event.model_dump_json()  # never who
    assert record_review(reviewed, "revised", "dr.b", RULES, CLOSURES, at + timedelta(minutes=1)) == (reviewed, [])


def test_a_review_needs_a_signed_plan_and_an_active_episode() -> None:
    draft = put_version(joined_plan(), problems(), "dr.a", NEW_YORK, ASSIGNED_AT)
    with pytest.raises(CarePlanError) as unsigned:
        review_of(draft, "continued", "dr.a", SIGNED_AT)
    assert unsigned.value.code == "plan_not_signed"
    plan, _ = signed_plan()
    ended = plan.model_copy(update={"status": "discharged"})
    with pytest.raises(CarePlanError) as inactive:
        review_of(ended, "continued", "dr.a", SIGNED_AT)
    assert inactive.value.code == "plan_not_active"


# --- the review clock -------------------------------------------------------------------------------------------


def test_a_periodic_review_is_held_ahead_and_turns_overdue_at_the_local_end_of_its_day_across_dst() -> None:
    plan, _ = signed_plan()  # in EDT; due Thursday 2026-11-19, in EST
    notice = datetime(2026, 11, 14, 5, 0, tzinfo=UTC)  # five days ahead, local midnight (EST)
    assert next_review_check(plan, RULES, CLOSURES, SIGNED_AT) == notice
    assert review_treatment(plan, RULES, CLOSURES, notice - timedelta(seconds=1)) == (plan, [])
    plan, events = review_treatment(plan, RULES, CLOSURES, notice)
    [held] = due(events)
    assert (held.reason, held.version, held.due_on) == ("periodic", 1, date(2026, 11, 19))
    assert held.overdue_at == datetime(2026, 11, 20, 5, 0, tzinfo=UTC)
    assert review_treatment(plan, RULES, CLOSURES, notice + timedelta(hours=1)) == (plan, [])  # once
    assert next_review_check(plan, RULES, CLOSURES, notice) == held.overdue_at
    plan, [overdue] = review_treatment(plan, RULES, CLOSURES, held.overdue_at)
    assert isinstance(overdue, TreatmentPlanReviewOverdue) and overdue.review_id == held.review_id
    assert review_treatment(plan, RULES, CLOSURES, held.overdue_at + timedelta(days=3))[1] == []


def test_a_due_day_moves_off_closures_and_closed_weekdays() -> None:
    closures = [date(2026, 11, 19), date(2026, 11, 20)]  # Thursday and Friday: then the weekend
    plan, [signed] = sign(put_version(joined_plan(), problems(), "dr.a", NEW_YORK, ASSIGNED_AT), 1, "dr.a", RULES,
                          closures, SIGNED_AT)  # fmt: skip
    assert isinstance(signed, TreatmentPlanSigned) and signed.review_due_on == date(2026, 11, 23)
    assert next_periodic_due_on(plan, RULES, closures) == date(2026, 11, 23)


def test_a_reliable_deterioration_opens_a_review_at_once_and_a_review_settles_it() -> None:
    plan, _ = signed_plan()
    worse_at = SIGNED_AT + timedelta(days=3)  # Friday 2026-10-23
    plan = measured(plan, worse_at, 16, "reliable_deterioration", "m-1")
    plan, events = review_treatment(plan, RULES, CLOSURES, worse_at + timedelta(minutes=1))
    [held] = due(events)
    assert (held.reason, held.trigger_id, held.due_on) == ("reliable_deterioration", "m-1", date(2026, 10, 26))
    again = measured(plan, worse_at + timedelta(hours=2), 17, "reliable_deterioration", "m-2")
    assert review_treatment(again, RULES, CLOSURES, worse_at + timedelta(hours=3))[1] == []  # one open per reason
    reviewed = review_of(again, "continued", "dr.b", worse_at + timedelta(hours=4))
    assert reviewed.treatment is not None
    assert [r.status for r in reviewed.treatment.reviews_due] == ["done"]
    assert next_periodic_due_on(reviewed, RULES, CLOSURES) == date(2026, 11, 23)  # 30 days from the 23rd: Sunday
    later = measured(reviewed, worse_at + timedelta(days=1), 18, "reliable_deterioration", "m-3")
    [next_one] = due(review_treatment(later, RULES, CLOSURES, worse_at + timedelta(days=1, minutes=1))[1])
    assert next_one.trigger_id == "m-3"


def test_an_immediate_alert_and_a_level_change_open_reviews_at_once_a_same_day_alert_does_not() -> None:
    plan, _ = signed_plan()
    at = SIGNED_AT + timedelta(days=1)
    assert review_treatment(alerted(plan, at, "same_day"), RULES, CLOSURES, at)[1] == []
    [alert] = due(review_treatment(alerted(plan, at), RULES, CLOSURES, at)[1])
    assert (alert.reason, alert.trigger_id) == ("safety_alert", "al-1")
    stepped = plan.model_copy(update={"level": CareLevel.PHP, "level_history": [
        *plan.level_history, LevelPeriod(level=CareLevel.PHP, since=at, reason="step_up")]})  # fmt: skip
    [change] = due(review_treatment(stepped, RULES, CLOSURES, at)[1])
    assert change.reason == "level_change" and change.trigger_id is None


def test_the_planned_discharge_opens_a_review_days_before_the_last_session() -> None:
    plan, _ = signed_plan()
    assert plan.schedule is not None
    last = max(s.starts_at for s in plan.schedule.sessions).astimezone(NY).date()
    moment = datetime.combine(last - timedelta(days=RULES.planned_discharge_days_before), time(0), tzinfo=NY)
    plan = review_of(plan, "continued", "dr.a", moment - timedelta(days=2))  # the periodic ones are done
    assert next_review_check(plan, RULES, CLOSURES, moment - timedelta(days=1)) == moment.astimezone(UTC)
    [held] = due(review_treatment(plan, RULES, CLOSURES, moment.astimezone(UTC))[1])
    assert held.reason == "planned_discharge"


def test_the_plans_review_holds_reviews_on_its_timer_and_an_ended_episode_cancels_them() -> None:
    plan, _ = signed_plan()
    notice = datetime(2026, 11, 14, 5, 0, tzinfo=UTC)
    assert next_check(plan, POLICY, SIGNED_AT) is not None
    plan, events = review(plan, POLICY, notice)
    assert [e.reason for e in due(events)] == ["periodic"]
    ended, events = review(plan.model_copy(update={"status": "discharged"}), POLICY, notice + timedelta(hours=1))
    assert ended.treatment is not None and [r.status for r in ended.treatment.reviews_due] == ["cancelled"]
    assert due(events) == [] and next_check(ended, POLICY, notice) is None


def test_a_plan_never_signed_is_due_for_no_review() -> None:
    draft = put_version(joined_plan(), problems(), "dr.a", NEW_YORK, ASSIGNED_AT)
    worse = measured(draft, SIGNED_AT, 16, "reliable_deterioration")
    assert review_treatment(worse, RULES, CLOSURES, SIGNED_AT + timedelta(days=60)) == (worse, [])
    assert next_review_check(worse, RULES, CLOSURES, SIGNED_AT) is None


ZONES = ("America/New_York", "Europe/London", "Australia/Sydney", "UTC")
UNSCHEDULED = joined_plan().model_copy(update={"schedule": None})
"""A plan without a calendar: no planned discharge sets a review off, so the periodic one is alone."""


@given(
    signed_at=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)),
    days=st.integers(min_value=1, max_value=120),
    closed=st.sets(st.integers(min_value=0, max_value=130), max_size=10),
    zone=st.sampled_from(ZONES),
)
def test_a_periodic_review_falls_on_an_open_day_and_turns_overdue_at_local_midnight_once(
    signed_at: datetime, days: int, closed: set[int], zone: str
) -> None:
    start = signed_at.astimezone(ZoneInfo(zone)).date()
    closures = {start + timedelta(days=n) for n in closed}
    rules = TreatmentPlanPolicy(review_days={CareLevel.IOP: days})
    plan = put_version(UNSCHEDULED, problems(), "dr.a", zone, signed_at)
    plan, _ = sign(plan, 1, "dr.a", rules, closures, signed_at)
    due_on = next_periodic_due_on(plan, rules, closures)
    assert due_on is not None and due_on >= start + timedelta(days=days)
    assert due_on not in closures and due_on.weekday() < 5 and open_weekday(due_on, rules, closures) == due_on
    moment = next_review_check(plan, rules, closures, signed_at)
    assert moment is not None and signed_at <= moment
    plan, events = review_treatment(plan, rules, closures, moment)
    [held] = due(events)
    local_end = held.overdue_at.astimezone(ZoneInfo(zone))
    assert local_end.time() == time(0) and local_end.date() == due_on + timedelta(days=1)
    assert review_treatment(plan, rules, closures, moment) == (plan, [])
    plan, overdue = review_treatment(plan, rules, closures, held.overdue_at)
    assert [type(e) for e in overdue] == [TreatmentPlanReviewOverdue]
    assert review_treatment(plan, rules, closures, held.overdue_at) == (plan, [])


# --- objectives measured by an instrument -------------------------------------------------------------------------


def test_an_objective_tied_to_an_instrument_is_met_not_met_or_has_no_data() -> None:
    target = InstrumentTarget(instrument="phq9", below=10, in_a_row=2)
    plan = joined_plan()
    assert progress(target, plan.inputs) == ("no_data", [])
    plan = measured(plan, SIGNED_AT, 8)
    assert progress(target, plan.inputs) == ("not_met", [8])  # one below 10, two needed
    plan = measured(plan, SIGNED_AT + timedelta(days=7), 9)
    assert progress(target, plan.inputs) == ("met", [8, 9])
    plan = measured(plan, SIGNED_AT + timedelta(days=14), 12)
    assert progress(target, plan.inputs) == ("not_met", [9, 12])


def test_an_unknown_instrument_is_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="instrument"):
        InstrumentTarget(instrument="nope", below=10)
