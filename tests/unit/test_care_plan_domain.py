"""Care-plan rules: the policy file, the session calendar, level assignment and attendance."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from services.care_plan.domain.care_plan import (
    AttendanceRecord,
    CarePlan,
    CarePlanError,
    assign_care_level,
    build_schedule,
    record_attendance,
)
from services.care_plan.domain.policy import (
    DEFAULT_POLICY_FILE,
    LevelSchedule,
    load_policy,
)
from services.common.policy_file import PolicyError
from stepwise_contract import AssessmentCompleted, CareLevel, CareLevelAssigned, DimensionRatings, Reason

NEW_YORK = "America/New_York"
NY = ZoneInfo(NEW_YORK)
POLICY = load_policy()


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    assert isinstance(raw, dict)
    return raw


def write_policy(tmp_path: Path, raw: dict[str, Any], name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


# --- policy -------------------------------------------------------------------------------------


def test_default_policy_loads() -> None:
    policy = load_policy()
    assert policy.version == "default-2026.11"
    assert policy.offered_levels == [CareLevel.OP, CareLevel.IOP, CareLevel.PHP]
    assert policy.default_track == "morning"
    iop = policy.levels[CareLevel.IOP]
    assert iop.weekdays == ["mon", "wed", "fri"]
    assert iop.hours_per_session == 3
    assert iop.weeks == 8
    assert iop.tracks == {"morning": time(9, 0), "evening": time(18, 0)}
    assert iop.weekly_hours == 9
    assert policy.levels[CareLevel.OP].tracks["morning"] == time(10, 0)
    assert policy.levels[CareLevel.PHP].weekly_hours == 25
    assert policy.min_weekly_hours[CareLevel.IOP] == {"adult": 9, "adolescent": 6}


def test_policy_loaded_from_a_copy_equals_default(tmp_path: Path) -> None:
    assert load_policy(write_policy(tmp_path, default_raw())) == POLICY


def test_iop_below_adult_minimum_hours_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    raw["levels"]["IOP"]["weekdays"] = ["tue", "thu"]  # 2 days x 3 h = 6 h/week < 9
    path = write_policy(tmp_path, raw)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid care-plan policy: ")
    assert "levels.IOP" in message
    assert "6 h/week" in message
    assert "9 h/week minimum for adult programs" in message


def test_duplicate_weekdays_do_not_count_twice(tmp_path: Path) -> None:
    raw = default_raw()
    raw["levels"]["IOP"]["weekdays"] = ["mon", "mon", "wed"]  # still only 2 distinct days
    with pytest.raises(PolicyError, match=r"levels\.IOP"):
        load_policy(write_policy(tmp_path, raw))


def test_minimum_hours_not_checked_for_a_level_not_offered(tmp_path: Path) -> None:
    raw = default_raw()
    raw["offered_levels"] = ["OP", "PHP"]
    raw["levels"]["IOP"]["weekdays"] = ["tue"]
    assert load_policy(write_policy(tmp_path, raw)).offered_levels == [CareLevel.OP, CareLevel.PHP]


def test_offered_level_without_schedule_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    del raw["levels"]["PHP"]
    path = write_policy(tmp_path, raw)
    with pytest.raises(PolicyError, match=r"levels\.PHP: an offered level needs a schedule") as caught:
        load_policy(path)
    assert str(path) in str(caught.value)


def test_default_track_missing_from_a_level_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    raw["levels"]["OP"]["tracks"] = {"evening": "18:00"}
    with pytest.raises(PolicyError, match=r"levels\.OP\.tracks: has no 'morning' track"):
        load_policy(write_policy(tmp_path, raw))


def test_unknown_policy_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    raw = default_raw()
    raw["levels"]["OP"]["room"] = "B"
    with pytest.raises(PolicyError, match=r"levels\.OP\.room: Extra inputs are not permitted"):
        load_policy(write_policy(tmp_path, raw))


@pytest.mark.parametrize(
    "content",
    [
        "version: [unclosed\n",  # YAML syntax error
        "- just\n- a list\n",  # valid YAML, not a mapping
        "",  # empty file
        "version: x\noffered_levels: [OP]\n",  # missing fields
    ],
)
def test_invalid_yaml_file_raises_policy_error_naming_the_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "clinic-policy.yaml"
    path.write_text(content)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_file_raises_policy_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "does-not-exist.yaml"
    with pytest.raises(PolicyError, match=r"cannot read care-plan policy") as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_directory_instead_of_file_raises_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(tmp_path)
    assert str(caught.value).startswith(f"{tmp_path}: cannot read care-plan policy")


def test_non_utf8_file_raises_policy_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81version: x\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_unquoted_track_time_is_read_as_that_time_or_rejected(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY_FILE.read_text().replace('evening: "18:00"', "evening: 18:00")
    assert "evening: 18:00}" in text
    path.write_text(text)
    try:
        policy = load_policy(path)
    except PolicyError as error:
        assert "tracks" in str(error)
    else:
        assert policy.levels[CareLevel.OP].tracks["evening"] == time(18, 0)


# --- build_schedule -----------------------------------------------------------------------------

IOP = POLICY.levels[CareLevel.IOP]


def test_schedule_dst_change_keeps_local_time() -> None:
    assigned_on = date(2026, 10, 20)  # a Tuesday; 2026-11-01 is the end of DST in New York
    schedule = build_schedule(IOP, "morning", NEW_YORK, assigned_on)

    assert schedule.timezone == NEW_YORK
    assert schedule.track == "morning"
    assert schedule.days_per_week == 3
    assert schedule.hours_per_session == 3
    assert schedule.weeks == 8
    assert len(schedule.sessions) == 8 * 3
    assert [s.session_id for s in schedule.sessions] == [f"s{n:03d}" for n in range(1, 25)]

    local_starts = [s.starts_at.astimezone(NY) for s in schedule.sessions]
    assert local_starts[0].date() == date(2026, 10, 21)  # Wednesday, strictly after the Tuesday
    assert local_starts[-1].date() == date(2026, 12, 14)
    assert all(start.date() > assigned_on for start in local_starts)
    assert {start.strftime("%a") for start in local_starts} == {"Mon", "Wed", "Fri"}
    assert all(start.time() == time(9, 0) for start in local_starts)
    assert local_starts == sorted(local_starts)

    utc_hours = {s.starts_at.astimezone(UTC).date(): s.starts_at.astimezone(UTC).hour for s in schedule.sessions}
    assert utc_hours[date(2026, 10, 30)] == 13  # EDT, UTC-4
    assert utc_hours[date(2026, 11, 2)] == 14  # EST, UTC-5
    for session in schedule.sessions:
        assert session.ends_at - session.starts_at == timedelta(hours=3)
        assert session.ends_at.astimezone(UTC) - session.starts_at.astimezone(UTC) == timedelta(hours=3)
        assert session.ends_at.astimezone(NY).time() == time(12, 0)


def test_schedule_first_session_strictly_after_a_matching_assignment_day() -> None:
    op = POLICY.levels[CareLevel.OP]  # Tuesdays only
    schedule = build_schedule(op, "evening", NEW_YORK, date(2026, 10, 20))  # a Tuesday
    first = schedule.sessions[0].starts_at.astimezone(NY)
    assert first == datetime(2026, 10, 27, 18, 0, tzinfo=NY)
    assert len(schedule.sessions) == 12
    assert schedule.sessions[0].ends_at - schedule.sessions[0].starts_at == timedelta(hours=1.5)


def test_schedule_from_a_monday_starts_on_wednesday() -> None:
    schedule = build_schedule(IOP, "morning", NEW_YORK, date(2026, 3, 2))  # a Monday
    assert schedule.sessions[0].starts_at.astimezone(NY).date() == date(2026, 3, 4)


def test_schedule_across_spring_forward() -> None:
    schedule = build_schedule(POLICY.levels[CareLevel.PHP], "evening", NEW_YORK, date(2026, 3, 1))
    assert len(schedule.sessions) == 4 * 5
    assert all(s.starts_at.astimezone(NY).time() == time(14, 0) for s in schedule.sessions)
    assert {s.starts_at.utcoffset() for s in schedule.sessions} == {timedelta(hours=-5), timedelta(hours=-4)}


weekday_sets = st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1)


@given(
    weekdays=weekday_sets,
    weeks=st.integers(min_value=1, max_value=10),
    hours=st.sampled_from([1.0, 1.5, 2.5, 3.0, 5.0]),
    assigned_on=st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)),
    zone=st.sampled_from([NEW_YORK, "Europe/Berlin", "Australia/Sydney", "UTC"]),
)
def test_schedule_properties(weekdays: set[str], weeks: int, hours: float, assigned_on: date, zone: str) -> None:
    ordered = [d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d in weekdays]
    level = LevelSchedule(weekdays=ordered, hours_per_session=hours, weeks=weeks, tracks={"morning": time(9, 30)})
    schedule = build_schedule(level, "morning", zone, assigned_on)
    tz = ZoneInfo(zone)
    local = [s.starts_at.astimezone(tz) for s in schedule.sessions]
    assert len(local) == weeks * len(weekdays)
    assert schedule.days_per_week == len(weekdays)
    assert all(start.date() > assigned_on for start in local)
    assert local[0].date() <= assigned_on + timedelta(days=7)
    assert all(start.strftime("%a").lower() in weekdays for start in local)
    assert all(start.time() == time(9, 30) for start in local)
    assert len({start.date() for start in local}) == len(local)
    for session in schedule.sessions:
        assert session.ends_at - session.starts_at == timedelta(hours=hours)


# --- assign_care_level --------------------------------------------------------------------------

NOW = datetime(2026, 10, 20, 15, 0, tzinfo=UTC)  # Tuesday 11:00 in New York


def assessment(level: CareLevel, episode_id: str = "ep-1") -> AssessmentCompleted:
    return AssessmentCompleted(
        episode_id=episode_id,
        assessment_id="as-1",
        kind="intake",
        program="adult",
        assessed_at=NOW - timedelta(hours=1),
        dimensions=DimensionRatings(withdrawal=0, biomedical=0, emotional=2, readiness=1, relapse=1, environment=0),
        recommended_level=level,
        rationale=[Reason(code="highest_dimension", text="Highest dimension rating is 2 (emotional): IOP.")],
        policy_version="simple-1",
    )


@pytest.mark.parametrize("level", [CareLevel.OP, CareLevel.IOP, CareLevel.PHP])
def test_offered_level_gives_an_active_plan_with_schedule(level: CareLevel) -> None:
    plan, event = assign_care_level(assessment(level), POLICY, NEW_YORK, NOW)
    assert plan.status == "active"
    assert plan.level is level
    assert plan.episode_id == "ep-1"
    assert plan.assessment_id == "as-1"
    assert plan.assigned_at == NOW
    assert plan.policy_version == "default-2026.11"
    assert plan.attendance == {}
    assert plan.schedule == build_schedule(POLICY.levels[level], "morning", NEW_YORK, date(2026, 10, 20))
    assert [r.code for r in plan.rationale] == ["highest_dimension", "level_offered"]
    assert isinstance(event, CareLevelAssigned)
    assert event.episode_id == plan.episode_id
    assert event.status == "active"
    assert event.level is level
    assert event.schedule == plan.schedule
    assert event.rationale == plan.rationale
    assert event.policy_version == plan.policy_version
    assert event.assigned_at == NOW
    assert event.assessment_id == "as-1"


@pytest.mark.parametrize("level", [CareLevel.RESIDENTIAL, CareLevel.INPATIENT])
def test_level_not_offered_is_referred_out(level: CareLevel) -> None:
    plan, event = assign_care_level(assessment(level), POLICY, NEW_YORK, NOW)
    assert plan.status == "referred_out"
    assert plan.level is level
    assert plan.schedule is None
    assert [r.code for r in plan.rationale] == ["highest_dimension", "level_not_offered"]
    assert level.value in plan.rationale[-1].text
    assert event.status == "referred_out"
    assert event.schedule is None
    assert event.rationale[-1].code == "level_not_offered"


def test_assignment_uses_the_local_date_of_the_program() -> None:
    # 02:00 UTC on Wednesday is still Tuesday 22:00 in New York: the first IOP session is that Wednesday.
    now = datetime(2026, 10, 21, 2, 0, tzinfo=UTC)
    plan, _ = assign_care_level(assessment(CareLevel.IOP), POLICY, NEW_YORK, now)
    assert plan.schedule is not None
    assert plan.schedule.sessions[0].starts_at.astimezone(NY) == datetime(2026, 10, 21, 9, 0, tzinfo=NY)


# --- record_attendance --------------------------------------------------------------------------


def active_plan() -> CarePlan:
    plan, _ = assign_care_level(assessment(CareLevel.IOP), POLICY, NEW_YORK, NOW)
    assert plan.schedule is not None and len(plan.schedule.sessions) == 24
    return plan


def apply(plan: CarePlan, session_id: str, status: str, now: datetime) -> tuple[CarePlan, Any]:
    attendance, event = record_attendance(plan, session_id, status, now)  # type: ignore[arg-type]
    return plan.model_copy(update={"attendance": attendance}), event


def test_unknown_session() -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(active_plan(), "s999", "attended", NOW)
    assert caught.value.code == "unknown_session"
    assert "s999" in str(caught.value)


def test_referred_out_plan_is_not_active() -> None:
    plan, _ = assign_care_level(assessment(CareLevel.RESIDENTIAL), POLICY, NEW_YORK, NOW)
    with pytest.raises(CarePlanError) as caught:
        record_attendance(plan, "s001", "missed", NOW)
    assert caught.value.code == "plan_not_active"
    assert "referred_out" in str(caught.value)


def test_same_status_twice_changes_nothing() -> None:
    first_at = NOW + timedelta(days=2)
    plan, event = apply(active_plan(), "s001", "missed", first_at)
    assert event is not None
    attendance, again = record_attendance(plan, "s001", "missed", first_at + timedelta(hours=5))
    assert again is None
    assert attendance == plan.attendance
    assert attendance["s001"] == AttendanceRecord(status="missed", recorded_at=first_at)


def test_attended_and_excused_publish_nothing() -> None:
    plan = active_plan()
    plan, attended = apply(plan, "s001", "attended", NOW)
    plan, excused = apply(plan, "s002", "excused", NOW)
    assert attended is None and excused is None
    assert {sid: rec.status for sid, rec in plan.attendance.items()} == {"s001": "attended", "s002": "excused"}


def test_missed_sessions_count_runs_and_totals() -> None:
    plan = active_plan()
    assert plan.schedule is not None
    at = NOW + timedelta(days=30)

    plan, e1 = apply(plan, "s001", "missed", at)
    assert (e1.consecutive_misses, e1.total_misses) == (1, 1)
    assert e1.session_id == "s001"
    assert e1.starts_at == plan.schedule.sessions[0].starts_at
    assert e1.detected == "reported"
    assert e1.recorded_at == at
    assert e1.episode_id == "ep-1"

    plan, e2 = apply(plan, "s002", "missed", at)
    assert (e2.consecutive_misses, e2.total_misses) == (2, 2)

    plan, e3 = apply(plan, "s003", "attended", at)
    assert e3 is None

    plan, e4 = apply(plan, "s004", "missed", at)
    assert (e4.consecutive_misses, e4.total_misses) == (1, 3)  # attended in between resets the run

    # An unrecorded session (s005) does not break the run.
    plan, e6 = apply(plan, "s006", "missed", at)
    assert (e6.consecutive_misses, e6.total_misses) == (2, 4)

    # Correcting an earlier attended session to missed joins the runs around it.
    plan, e3b = apply(plan, "s003", "missed", at)
    assert (e3b.consecutive_misses, e3b.total_misses) == (3, 5)

    # Missed → attended: no event, total drops for the next miss.
    plan, none = apply(plan, "s002", "attended", at)
    assert none is None
    plan, e7 = apply(plan, "s007", "missed", at)
    assert (e7.consecutive_misses, e7.total_misses) == (4, 5)  # s003, s004, s006, s007


def test_miss_recorded_out_of_calendar_order_counts_only_earlier_sessions() -> None:
    plan = active_plan()
    plan, _ = apply(plan, "s005", "missed", NOW)
    plan, event = apply(plan, "s002", "missed", NOW)
    assert (event.consecutive_misses, event.total_misses) == (1, 2)


STATUSES = ("attended", "missed", "excused")


def brute_force_run(order: list[str], attendance: dict[str, str], session_id: str) -> int:
    run = 0
    for sid in reversed(order[: order.index(session_id) + 1]):
        if sid not in attendance or attendance[sid] == "excused":
            continue  # an excused absence neither counts nor ends a run
        if attendance[sid] != "missed":
            break
        run += 1
    return run


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=9), st.sampled_from(STATUSES)), max_size=40))
def test_consecutive_misses_match_brute_force(recordings: list[tuple[int, str]]) -> None:
    plan = active_plan()
    assert plan.schedule is not None
    order = [s.session_id for s in plan.schedule.sessions]
    model: dict[str, str] = {}
    for step, (index, status) in enumerate(recordings):
        session_id = order[index]
        at = NOW + timedelta(minutes=step)
        previous = dict(plan.attendance)
        plan, event = apply(plan, session_id, status, at)
        if model.get(session_id) == status:
            assert event is None
            assert plan.attendance == previous
            continue
        model[session_id] = status
        assert {sid: rec.status for sid, rec in plan.attendance.items()} == model
        assert plan.attendance[session_id].recorded_at == at
        if status != "missed":
            assert event is None
            continue
        assert event is not None
        assert event.session_id == session_id
        assert event.consecutive_misses == brute_force_run(order, model, session_id)
        assert event.total_misses == sum(1 for s in model.values() if s == "missed")


def test_late_counts_as_attended_and_resets_the_run_of_misses() -> None:
    plan = active_plan()
    plan, first = apply(plan, "s001", "missed", NOW)
    plan, late = apply(plan, "s002", "late", NOW)
    plan, third = apply(plan, "s003", "missed", NOW)
    assert (first.consecutive_misses, late, third.consecutive_misses, third.total_misses) == (1, None, 1, 2)


def test_excused_absence_keeps_when_notice_was_given() -> None:
    notice = NOW - timedelta(hours=50)
    attendance, event = record_attendance(active_plan(), "s001", "excused", NOW, notice)
    assert event is None
    assert attendance["s001"] == AttendanceRecord(status="excused", recorded_at=NOW, notice_given_at=notice)


@pytest.mark.parametrize("status", ["attended", "late", "missed"])
def test_notice_goes_only_with_an_excused_absence(status: str) -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(active_plan(), "s001", status, NOW, NOW)  # type: ignore[arg-type]
    assert caught.value.code == "notice_without_excuse"
