"""Due measures: windows in the clinic's local days across DST and closures, due → overdue → missed or done,
timers that fire once, reliable deterioration as a step-up input, alumni follow-ups."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from services.care_plan.domain.care_plan import assign_care_level
from services.care_plan.domain.groups import Joined
from services.care_plan.domain.measures import (
    MeasurePolicy,
    next_measure_check,
    review_measures,
    upcoming,
    wanted,
    window,
)
from services.care_plan.domain.model import CareInput, CarePlan, LevelPeriod
from services.care_plan.domain.policy import load_policy
from services.care_plan.domain.review import next_check, review
from services.care_plan.domain.stepping import step_up_triggers
from stepwise_contract import (
    CareLevel,
    EventData,
    InstrumentMeasure,
    InstrumentResult,
    MeasureClassification,
    MeasureDue,
    MeasureOverdue,
)
from tests.unit.care_plan.helpers import ASSIGNED_AT, NEW_YORK, assessment, group, new_plan

FULL = load_policy()
MEASURES = FULL.measures
NY = ZoneInfo(NEW_YORK)


def plan_with_measures() -> tuple[CarePlan, list[EventData]]:
    return new_plan(Joined(group("iop-am", FULL)), policy=FULL)


def scored(
    instrument: str, classification: MeasureClassification = "no_reliable_change", score: int = 8
) -> InstrumentMeasure:
    return InstrumentMeasure(instrument=instrument, score=score, band="mild", baseline_score=8, previous_score=8,
                              classification=classification, recovered=False, response=False)  # fmt: skip


def measured(plan: CarePlan, at: datetime, *instruments: InstrumentMeasure) -> CarePlan:
    learned = CareInput(kind="measure", at=at, source_id=f"m-{at.isoformat()}", measured=list(instruments))
    return plan.model_copy(update={"inputs": [*plan.inputs, learned]})


def of(events: list[EventData], model: type[EventData]) -> list[EventData]:
    return [event for event in events if isinstance(event, model)]


def test_the_default_policy_measures_phq9_and_gad7_weekly_in_iop_with_a_window_of_two_days() -> None:
    assert MEASURES.window_days == 2
    assert [(r.instruments, r.every_days) for r in MEASURES.recurring[CareLevel.IOP]] == [(["phq9", "gad7"], 7)]
    assert MEASURES.alumni_days == [30, 90, 180]


def test_a_window_spans_whole_local_days_across_the_end_of_daylight_saving() -> None:
    # Due Tuesday 2026-11-03; New York leaves daylight saving on Sunday 2026-11-01.
    opened = window(date(2026, 11, 3), MEASURES, NEW_YORK, ())
    assert opened.opens_at == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # midnight EDT
    assert opened.closes_at == datetime(2026, 11, 6, 5, 0, tzinfo=UTC)  # midnight EST: 5 local days, 121 hours
    assert opened.closes_at - opened.opens_at == timedelta(days=5, hours=1)


def test_a_due_day_and_a_window_end_on_a_closure_move_to_the_next_open_day() -> None:
    closures = [date(2026, 12, 25), date(2026, 12, 26)]
    christmas = window(date(2026, 12, 25), MEASURES, NEW_YORK, closures)
    assert christmas.due_on == date(2026, 12, 27)
    ending = window(date(2026, 12, 22), MEASURES, NEW_YORK, closures)  # its last day, the 24th, is open
    assert ending.closes_at == datetime(2026, 12, 25, 5, 0, tzinfo=UTC)
    closing_on_closure = window(date(2026, 12, 23), MEASURES, NEW_YORK, closures)  # last day the 25th: closed
    assert closing_on_closure.closes_at == datetime(2026, 12, 28, 5, 0, tzinfo=UTC)


ZONES = ("America/New_York", "Europe/London", "Australia/Sydney", "UTC")


@given(
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
    closed=st.sets(st.integers(min_value=-3, max_value=10), max_size=8),
    days=st.integers(min_value=0, max_value=5),
    zone=st.sampled_from(ZONES),
)
def test_every_window_opens_and_closes_at_local_midnight_off_closures(
    day: date, closed: set[int], days: int, zone: str
) -> None:
    closures = {day + timedelta(days=n) for n in closed}
    policy = MeasurePolicy(window_days=days)
    opened = window(day, policy, zone, closures)
    local_open, local_close = opened.opens_at.astimezone(ZoneInfo(zone)), opened.closes_at.astimezone(ZoneInfo(zone))
    assert local_open.time() == time(0) and local_close.time() == time(0)
    assert opened.due_on >= day and opened.due_on not in closures
    assert all(day + timedelta(days=n) in closures for n in range((opened.due_on - day).days))
    assert local_open.date() == opened.due_on - timedelta(days=days)
    last_day = local_close.date() - timedelta(days=1)
    assert last_day not in closures and last_day >= opened.due_on + timedelta(days=days)
    assert opened.opens_at < opened.closes_at


def test_a_new_plan_asks_the_admission_measure_of_what_intake_did_not_score() -> None:
    plan, events = plan_with_measures()
    [due] = of(events, MeasureDue)
    assert isinstance(due, MeasureDue) and due.reason == "admission" and due.instruments == ["phq9", "gad7"]
    assert due.window_opens_at == datetime(2026, 10, 18, 4, 0, tzinfo=UTC)  # Sunday 00:00 New York
    assert [m.status for m in plan.measures] == ["due"]


def test_a_measure_goes_due_overdue_missed_or_done_when_its_instruments_are_recorded_in_the_window() -> None:
    plan, _ = plan_with_measures()
    closes = datetime(2026, 10, 23, 4, 0, tzinfo=UTC)
    plan, events = review_measures(plan, MEASURES, FULL.closures, closes)
    assert [type(e) for e in events] == [MeasureOverdue] and plan.measures[0].status == "overdue"
    weekly_opens = datetime(2026, 10, 25, 4, 0, tzinfo=UTC)  # due Tuesday 27th, a week after the level began
    plan, events = review_measures(plan, MEASURES, FULL.closures, weekly_opens)
    [weekly] = of(events, MeasureDue)
    assert isinstance(weekly, MeasureDue) and weekly.reason == "schedule"
    plan = measured(plan, weekly_opens + timedelta(days=1), scored("phq9"))
    plan, events = review_measures(plan, MEASURES, FULL.closures, weekly_opens + timedelta(days=1))
    assert events == [] and plan.measures[1].status == "due"  # GAD-7 still to come
    plan = measured(plan, weekly_opens + timedelta(days=2), scored("gad7"))
    plan, _ = review_measures(plan, MEASURES, FULL.closures, weekly_opens + timedelta(days=2))
    assert plan.measures[1].status == "done"
    plan, events = review_measures(plan, MEASURES, FULL.closures, closes + timedelta(days=7))
    assert plan.measures[0].status == "missed" and plan.measures[1].status == "done" and events == []


def test_a_score_recorded_after_the_window_does_not_settle_it() -> None:
    plan, _ = plan_with_measures()
    late = datetime(2026, 10, 23, 4, 0, tzinfo=UTC)
    plan = measured(plan, late, scored("phq9"), scored("gad7"))
    plan, _ = review_measures(plan, MEASURES, FULL.closures, late)
    assert plan.measures[0].status == "overdue"


def test_the_timers_fire_each_measure_once_at_local_midnight_across_dst() -> None:
    plan, events = plan_with_measures()
    now = ASSIGNED_AT
    announced: list[EventData] = list(of(events, MeasureDue))
    for _ in range(200):
        moment = next_check(plan, FULL, now)
        if moment is None or moment > datetime(2026, 11, 30, tzinfo=UTC):
            break
        now = moment
        plan, produced = review(plan, FULL, now)
        announced += [e for e in produced if isinstance(e, MeasureDue | MeasureOverdue)]
        assert review(plan, FULL, now)[1] == []  # reviewed again at once: nothing more
    dues = [e for e in announced if isinstance(e, MeasureDue)]
    assert [e.window_opens_at.astimezone(NY).time() for e in dues] == [time(0)] * len(dues)
    assert len({e.due_id for e in dues}) == len(dues)
    weekly = [e.window_opens_at.astimezone(NY).date() for e in dues if e.reason == "schedule"]
    assert weekly == [date(2026, 10, 25), date(2026, 11, 1), date(2026, 11, 8), date(2026, 11, 15), date(2026, 11, 22),
                      date(2026, 11, 29)]  # fmt: skip
    overdue = [e.due_id for e in announced if isinstance(e, MeasureOverdue)]
    assert len(overdue) == len(set(overdue)) and set(overdue) <= {e.due_id for e in dues}


def test_a_reliable_deterioration_is_a_step_up_input_with_its_rationale() -> None:
    plan, _ = plan_with_measures()
    at = ASSIGNED_AT + timedelta(days=6)
    worse = measured(plan, at, scored("phq9", "reliable_deterioration", score=16))
    [reason] = [r for r in step_up_triggers(worse, FULL.stepping, at) if r.code == "reliable_deterioration"]
    assert reason.text == "PHQ-9 16 on 2026-10-26 against a baseline of 8: a reliable deterioration."
    off = FULL.stepping.model_copy(
        update={"step_up": FULL.stepping.step_up.model_copy(update={"reliable_deterioration": False})}
    )
    assert not [r for r in step_up_triggers(worse, off, at) if r.code == "reliable_deterioration"]
    better = measured(worse, at + timedelta(days=1), scored("phq9", "no_reliable_change"))
    assert not [r for r in step_up_triggers(better, FULL.stepping, at) if r.code == "reliable_deterioration"]
    _, events = review(worse, FULL, at)
    assert any(getattr(e, "rationale", None) and reason in e.rationale for e in events)  # type: ignore[attr-defined]


def test_a_graduate_is_asked_at_30_90_and_180_days_and_a_discharged_episode_is_not() -> None:
    plan, _ = plan_with_measures()
    ended = datetime(2026, 12, 18, 17, 0, tzinfo=UTC)
    graduate = plan.model_copy(update={"status": "graduated", "ended_at": ended})
    opens = next_measure_check(graduate, MEASURES, FULL.closures, ended)
    assert opens is not None and opens.astimezone(NY) == datetime(2027, 1, 15, 0, 0, tzinfo=NY)  # 30 days less 2
    reviewed, _ = review(graduate, FULL, ended)
    assert (
        reviewed.follow_up_at == opens and next_check(reviewed, FULL, ended) is None
    )  # its own timer, not the episode's
    asked, events = review(graduate, FULL, opens)
    [due] = of(events, MeasureDue)
    assert isinstance(due, MeasureDue) and due.reason == "alumni"
    discharged = plan.model_copy(update={"status": "discharged", "ended_at": ended})
    assert next_check(discharged, FULL, ended) is None and review(discharged, FULL, opens)[1] == []
    assert asked.measures[-1].reason == "alumni"


def test_an_intake_assessment_that_scored_an_episode_instrument_is_the_admission_measure() -> None:
    scored_phq9 = assessment(CareLevel.IOP, "adult").model_copy(
        update={"instruments": [InstrumentResult(instrument="phq9", total=9, band="mild")]}
    )
    plan, events = assign_care_level(scored_phq9, FULL, NEW_YORK, ASSIGNED_AT, Joined(group("iop-am", FULL)))
    assert of(events, MeasureDue) == [] and plan.measures == [] and plan.admission_scored == ["phq9"]


def test_a_level_change_asks_the_episodes_instruments_and_restarts_the_weekly_series() -> None:
    plan, _ = plan_with_measures()
    moved_at = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 New York, after the end of DST
    history = [*plan.level_history, LevelPeriod(level=CareLevel.PHP, since=moved_at, reason="step_up")]
    moved = plan.model_copy(update={"level": CareLevel.PHP, "level_history": history})
    moved, events = review_measures(moved, MEASURES, FULL.closures, moved_at)
    asked = [(e.reason, e.window_opens_at) for e in of(events, MeasureDue) if isinstance(e, MeasureDue)]
    assert ("level_change", datetime(2026, 10, 31, 4, 0, tzinfo=UTC)) in asked  # Saturday 00:00 EDT
    # Next: the level-change window closes (Thursday 5th, 00:00 EST); then PHP's weekly series from the Monday it
    # began: due Monday 9th, its window opens Saturday 7th, 00:00 EST.
    assert next_measure_check(moved, MEASURES, FULL.closures, moved_at) == datetime(2026, 11, 5, 5, 0, tzinfo=UTC)
    [weekly, *_] = upcoming(moved, MEASURES, FULL.closures, moved_at)
    assert (weekly.reason, weekly.window.opens_at) == ("schedule", datetime(2026, 11, 7, 5, 0, tzinfo=UTC))


def test_a_planned_discharge_is_asked_the_policys_days_before_the_calendars_last_session() -> None:
    plan, _ = plan_with_measures()
    assert plan.schedule is not None
    last = max(session.starts_at for session in plan.schedule.sessions).astimezone(NY).date()
    [ask] = [a for a in wanted(plan, MEASURES, FULL.closures, ASSIGNED_AT) if a.reason == "planned_discharge"]
    assert ask.window.due_on == last - timedelta(days=3)


@given(offsets=st.lists(st.integers(min_value=0, max_value=60 * 24 * 70), min_size=1, max_size=12),
       closed=st.sets(st.integers(min_value=0, max_value=70), max_size=10))  # fmt: skip
def test_whenever_the_plan_is_reviewed_each_measure_is_announced_once_and_never_before_its_window(
    offsets: list[int], closed: set[int]
) -> None:
    closures = [date(2026, 10, 20) + timedelta(days=n) for n in closed]
    policy = FULL.model_copy(update={"closures": closures})
    plan, events = new_plan(Joined(group("iop-am", FULL)), policy=policy)
    announced = {e.due_id: ASSIGNED_AT for e in of(events, MeasureDue) if isinstance(e, MeasureDue)}
    for minutes in sorted(offsets):
        now = ASSIGNED_AT + timedelta(minutes=minutes)
        plan, produced = review(plan, policy, now)
        for due in (e for e in produced if isinstance(e, MeasureDue)):
            assert due.due_id not in announced and due.window_opens_at <= now
            assert due.window_opens_at.astimezone(NY).date() + timedelta(days=MEASURES.window_days) not in closures
            announced[due.due_id] = now
        moment = next_check(plan, policy, now)
        assert moment is None or moment >= now
    assert {m.due_id for m in plan.measures} == set(announced)


def test_a_discharge_cancels_what_the_episode_was_still_asked_and_keeps_what_it_answered() -> None:
    plan, _ = plan_with_measures()
    weekly_opens = datetime(2026, 10, 25, 4, 0, tzinfo=UTC)
    plan, _ = review_measures(plan, MEASURES, FULL.closures, weekly_opens)
    plan = measured(plan, weekly_opens + timedelta(hours=1), scored("phq9"), scored("gad7"))
    plan, _ = review_measures(plan, MEASURES, FULL.closures, weekly_opens + timedelta(hours=1))
    assert [m.status for m in plan.measures] == ["overdue", "done"]
    left = weekly_opens + timedelta(hours=2)
    discharged, events = review(plan.model_copy(update={"status": "discharged", "ended_at": left}), FULL, left)
    assert [(m.status, m.settled_at) for m in discharged.measures] == [
        ("cancelled", left), ("done", weekly_opens + timedelta(hours=1))]  # fmt: skip
    assert events == [] and next_measure_check(discharged, MEASURES, FULL.closures, left) is None
