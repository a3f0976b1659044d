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
    graduate_by_clinician,
    record_attendance,
)
from services.care_plan.domain.groups import Joined, build_schedule
from services.care_plan.domain.measures import without_measures
from services.care_plan.domain.model import GroupPlace
from services.care_plan.domain.policy import (
    DEFAULT_POLICY_FILE,
    CarePolicy,
    GraduationRules,
    PerDiem,
    ProgramGroup,
    load_policy,
)
from services.care_plan.domain.review import next_check
from services.common.policy_file import PolicyError
from stepwise_contract import AssessmentCompleted, CareLevel, CareLevelAssigned, DimensionRatings, Reason

NEW_YORK = "America/New_York"
NY = ZoneInfo(NEW_YORK)
POLICY = without_measures(load_policy())  # due measures: test_measures.py


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    assert isinstance(raw, dict)
    return raw


def raw_group(raw: dict[str, Any], group_id: str) -> dict[str, Any]:
    found = next(g for g in raw["groups"] if g["group_id"] == group_id)
    assert isinstance(found, dict)
    return found


def group(group_id: str, policy: CarePolicy = POLICY) -> ProgramGroup:
    found = policy.group(group_id)
    assert found is not None, group_id
    return found


def write_policy(tmp_path: Path, raw: dict[str, Any], name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


# --- policy -------------------------------------------------------------------------------------


def test_default_policy_loads() -> None:
    policy = load_policy()
    assert policy.version == "default-2027.01"  # 2027.01: adolescent groups, graduation minimums
    assert policy.offered_levels == [CareLevel.OP, CareLevel.IOP, CareLevel.PHP]
    assert policy.default_track == "morning"
    iop = policy.levels[CareLevel.IOP]
    assert iop.weeks == 8
    assert iop.per_diem == PerDiem(code="H0015", min_hours=3)
    assert (iop.weekdays, iop.hours_per_session, iop.tracks) == (None, None, None)  # set by the groups
    adults = [g.group_id for g in policy.groups if "adult" in g.programs]
    assert adults == ["iop-am", "iop-pm", "php-am", "php-pm", "op-am", "op-pm"]
    teens = [g.group_id for g in policy.groups if "adolescent" in g.programs]
    assert teens == ["iop-teen-am", "iop-teen-pm", "php-teen-am", "php-teen-pm", "op-teen-am", "op-teen-pm"]
    assert not set(adults) & set(teens)  # adults and adolescents meet apart
    assert policy.graduation.min_attended_sessions == {CareLevel.OP: 4, CareLevel.IOP: 12, CareLevel.PHP: 10}
    iop_am = group("iop-am")
    assert iop_am.weekdays == ["mon", "wed", "fri"]
    assert iop_am.minutes == 180
    assert (iop_am.level, iop_am.track, iop_am.kind, iop_am.capacity) == (CareLevel.IOP, "morning", "group", 12)
    assert iop_am.starts_at == time(9, 0)
    assert group("iop-pm").starts_at == time(18, 0)
    assert iop_am.weekly_hours == 9
    assert group("op-am").starts_at == time(10, 0)
    assert group("php-am").weekly_hours == 25
    assert policy.min_weekly_hours[CareLevel.IOP] == {"adult": 9, "adolescent": 6}
    assert set(policy.session_kinds) == {"group", "individual", "family", "education"}


def test_policy_loaded_from_a_copy_equals_default(tmp_path: Path) -> None:
    assert load_policy(write_policy(tmp_path, default_raw())) == load_policy()


def test_iop_group_below_adult_minimum_hours_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    raw_group(raw, "iop-am")["weekdays"] = ["tue", "thu"]  # 2 days x 3 h = 6 h/week < 9
    path = write_policy(tmp_path, raw)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid care-plan policy: ")
    assert "groups.iop-am: 6 h/week is below the 9 h/week minimum for IOP adult programs" in message


def test_duplicate_weekdays_do_not_count_twice(tmp_path: Path) -> None:
    raw = default_raw()
    raw_group(raw, "iop-am")["weekdays"] = ["mon", "mon", "wed"]  # still only 2 distinct days
    with pytest.raises(PolicyError, match=r"groups\.iop-am: 6 h/week"):
        load_policy(write_policy(tmp_path, raw))


def test_minimum_hours_not_checked_for_a_level_not_offered(tmp_path: Path) -> None:
    raw = default_raw()
    raw["offered_levels"] = ["OP", "PHP"]
    raw_group(raw, "iop-am")["weekdays"] = ["tue"]
    assert load_policy(write_policy(tmp_path, raw)).offered_levels == [CareLevel.OP, CareLevel.PHP]


def test_offered_level_without_an_entry_in_levels_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    del raw["levels"]["PHP"]
    raw["groups"] = [g for g in raw["groups"] if g["level"] != "PHP"]
    path = write_policy(tmp_path, raw)
    with pytest.raises(PolicyError, match=r"levels\.PHP: an offered level needs an entry") as caught:
        load_policy(path)
    assert str(path) in str(caught.value)


def test_a_group_of_a_level_without_an_entry_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    del raw["levels"]["PHP"]
    with pytest.raises(PolicyError, match=r"groups\.php-am\.level: PHP has no entry in levels"):
        load_policy(write_policy(tmp_path, raw))


def test_offered_level_without_a_group_of_the_default_track_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    raw["groups"] = [g for g in raw["groups"] if g["group_id"] != "op-am"]  # OP keeps only its evening group
    with pytest.raises(PolicyError, match=r"groups: OP has no morning group for adult programs"):
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


def test_unquoted_start_time_is_read_as_that_time(tmp_path: Path) -> None:
    """YAML 1.1 reads an unquoted 18:00 as the number 1080 (sexagesimal minutes): the policy takes it as 18:00."""
    path = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY_FILE.read_text().replace('starts_at: "18:00"', "starts_at: 18:00")
    assert "starts_at: 18:00," in text
    path.write_text(text)
    policy = load_policy(path)
    assert group("iop-pm", policy).starts_at == time(18, 0)
    assert group("op-pm", policy).starts_at == time(18, 0)


def test_an_unquoted_number_that_is_no_clock_time_is_rejected_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY_FILE.read_text().replace('starts_at: "18:00"', "starts_at: 25:00", 1)  # read as 1500
    assert "starts_at: 25:00," in text
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert "starts_at" in str(caught.value) and 'must be a clock time such as "18:00"' in str(caught.value)


# --- build_schedule -----------------------------------------------------------------------------

IOP_WEEKS = POLICY.levels[CareLevel.IOP].weeks


def test_schedule_dst_change_keeps_local_time() -> None:
    assigned_on = date(2026, 10, 20)  # a Tuesday; 2026-11-01 is the end of DST in New York
    schedule = build_schedule(group("iop-am"), IOP_WEEKS, NEW_YORK, assigned_on)

    assert schedule.timezone == NEW_YORK
    assert schedule.track == "morning"
    assert schedule.days_per_week == 3
    assert schedule.hours_per_session == 3
    assert schedule.weeks == 8
    assert len(schedule.sessions) == 8 * 3
    local_starts = [s.starts_at.astimezone(NY) for s in schedule.sessions]
    assert [s.session_id for s in schedule.sessions] == [f"iop-am-{start:%Y%m%d}" for start in local_starts]
    assert schedule.sessions[0].session_id == "iop-am-20261021"
    assert {(s.kind, s.group_id) for s in schedule.sessions} == {("group", "iop-am")}

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
    op_pm = group("op-pm")  # Tuesdays only
    schedule = build_schedule(op_pm, POLICY.levels[CareLevel.OP].weeks, NEW_YORK, date(2026, 10, 20))  # a Tuesday
    first = schedule.sessions[0].starts_at.astimezone(NY)
    assert first == datetime(2026, 10, 27, 18, 0, tzinfo=NY)
    assert schedule.sessions[0].session_id == "op-pm-20261027"
    assert len(schedule.sessions) == 12
    assert schedule.sessions[0].ends_at - schedule.sessions[0].starts_at == timedelta(hours=1.5)


def test_schedule_from_a_monday_starts_on_wednesday() -> None:
    schedule = build_schedule(group("iop-am"), IOP_WEEKS, NEW_YORK, date(2026, 3, 2))  # a Monday
    assert schedule.sessions[0].starts_at.astimezone(NY).date() == date(2026, 3, 4)


def test_schedule_across_spring_forward() -> None:
    schedule = build_schedule(group("php-pm"), POLICY.levels[CareLevel.PHP].weeks, NEW_YORK, date(2026, 3, 1))
    assert len(schedule.sessions) == 4 * 5
    assert all(s.starts_at.astimezone(NY).time() == time(14, 0) for s in schedule.sessions)
    assert {s.starts_at.utcoffset() for s in schedule.sessions} == {timedelta(hours=-5), timedelta(hours=-4)}


weekday_sets = st.sets(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), min_size=1)


@given(
    weekdays=weekday_sets,
    weeks=st.integers(min_value=1, max_value=10),
    minutes=st.sampled_from([60, 90, 150, 180, 300]),
    assigned_on=st.dates(min_value=date(2025, 1, 1), max_value=date(2030, 12, 31)),
    zone=st.sampled_from([NEW_YORK, "Europe/Berlin", "Australia/Sydney", "UTC"]),
)
def test_schedule_properties(weekdays: set[str], weeks: int, minutes: int, assigned_on: date, zone: str) -> None:
    ordered = [d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if d in weekdays]
    level_group = ProgramGroup.model_validate(
        {"group_id": "g-1", "name": "G", "level": "IOP", "track": "morning", "programs": ["adult"], "weekdays": ordered,
         "starts_at": "09:30", "minutes": minutes}
    )  # fmt: skip
    schedule = build_schedule(level_group, weeks, zone, assigned_on)
    tz = ZoneInfo(zone)
    local = [s.starts_at.astimezone(tz) for s in schedule.sessions]
    assert len(local) == weeks * len(weekdays)
    assert schedule.days_per_week == len(weekdays)
    assert schedule.weeks == weeks
    assert all(start.date() > assigned_on for start in local)
    assert local[0].date() <= assigned_on + timedelta(days=7)
    assert all(start.strftime("%a").lower() in weekdays for start in local)
    assert all(start.time() == time(9, 30) for start in local)
    assert len({start.date() for start in local}) == len(local)
    assert [s.session_id for s in schedule.sessions] == [f"g-1-{start:%Y%m%d}" for start in local]
    for session in schedule.sessions:
        assert session.ends_at - session.starts_at == timedelta(minutes=minutes)


# --- assign_care_level --------------------------------------------------------------------------

NOW = datetime(2026, 10, 20, 15, 0, tzinfo=UTC)  # Tuesday 11:00 in New York
MORNING_GROUP = {CareLevel.OP: "op-am", CareLevel.IOP: "iop-am", CareLevel.PHP: "php-am"}


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
    joined = group(MORNING_GROUP[level])
    plan, events = assign_care_level(assessment(level), POLICY, NEW_YORK, NOW, Joined(joined))
    assert plan.status == "active"
    assert plan.level is level
    assert plan.episode_id == "ep-1"
    assert plan.assessment_id == "as-1"
    assert plan.assigned_at == NOW
    assert plan.policy_version == "default-2027.01"
    assert plan.attendance == {}
    assert plan.group == GroupPlace(group_id=joined.group_id, joined_at=NOW)
    assert plan.waitlist is None
    expected = build_schedule(joined, POLICY.levels[level].weeks, NEW_YORK, date(2026, 10, 20), POLICY.closures)
    assert plan.schedule == expected
    assert [r.code for r in plan.rationale] == ["highest_dimension", "level_offered"]
    [event] = events
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
    plan, events = assign_care_level(assessment(level), POLICY, NEW_YORK, NOW, None)
    assert plan.status == "referred_out"
    assert plan.level is level
    assert plan.schedule is None
    assert (plan.group, plan.waitlist) == (None, None)
    assert [r.code for r in plan.rationale] == ["highest_dimension", "level_not_offered"]
    assert level.value in plan.rationale[-1].text
    [event] = events
    assert isinstance(event, CareLevelAssigned)
    assert event.status == "referred_out"
    assert event.schedule is None
    assert event.rationale[-1].code == "level_not_offered"


def test_assignment_uses_the_local_date_of_the_program() -> None:
    # 02:00 UTC on Wednesday is still Tuesday 22:00 in New York: the first IOP session is that Wednesday.
    now = datetime(2026, 10, 21, 2, 0, tzinfo=UTC)
    plan, _ = assign_care_level(assessment(CareLevel.IOP), POLICY, NEW_YORK, now, Joined(group("iop-am")))
    assert plan.schedule is not None
    assert plan.schedule.sessions[0].starts_at.astimezone(NY) == datetime(2026, 10, 21, 9, 0, tzinfo=NY)
    assert plan.schedule.sessions[0].session_id == "iop-am-20261021"


# --- record_attendance --------------------------------------------------------------------------

# The first sessions of the IOP morning group after Tuesday 2026-10-20 (Mon, Wed, Fri).
WED_21, FRI_23, MON_26, WED_28, FRI_30, MON_02, WED_04 = (
    "iop-am-20261021",
    "iop-am-20261023",
    "iop-am-20261026",
    "iop-am-20261028",
    "iop-am-20261030",
    "iop-am-20261102",
    "iop-am-20261104",
)


def active_plan() -> CarePlan:
    plan, _ = assign_care_level(assessment(CareLevel.IOP), POLICY, NEW_YORK, NOW, Joined(group("iop-am")))
    assert plan.schedule is not None and len(plan.schedule.sessions) == 24
    assert [s.session_id for s in plan.schedule.sessions[:7]] == [WED_21, FRI_23, MON_26, WED_28, FRI_30, MON_02,
                                                                  WED_04]  # fmt: skip
    return plan


AFTER_THEM = NOW + timedelta(days=30)
"""A month on: the calendar's first ten sessions are over, so their attendance can be recorded."""
LATEST = NOW + timedelta(days=70)
"""Ten weeks on: every session of the 8-week calendar is over."""


def apply(plan: CarePlan, session_id: str, status: str, now: datetime) -> tuple[CarePlan, Any]:
    attendance, event = record_attendance(plan, session_id, status, now)  # type: ignore[arg-type]
    return plan.model_copy(update={"attendance": attendance}), event


def test_unknown_session() -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(active_plan(), "iop-am-20261022", "attended", NOW)  # a Thursday: no meeting
    assert caught.value.code == "unknown_session"
    assert "iop-am-20261022" in str(caught.value)


def test_referred_out_plan_is_not_active() -> None:
    plan, _ = assign_care_level(assessment(CareLevel.RESIDENTIAL), POLICY, NEW_YORK, NOW, None)
    with pytest.raises(CarePlanError) as caught:
        record_attendance(plan, WED_21, "missed", NOW)
    assert caught.value.code == "plan_not_active"
    assert "referred_out" in str(caught.value)


def test_same_status_twice_changes_nothing() -> None:
    first_at = NOW + timedelta(days=2)
    plan, event = apply(active_plan(), WED_21, "missed", first_at)
    assert event is not None
    attendance, again = record_attendance(plan, WED_21, "missed", first_at + timedelta(hours=5))
    assert again is None
    assert attendance == plan.attendance
    assert attendance[WED_21] == AttendanceRecord(status="missed", recorded_at=first_at)


def test_attended_and_excused_publish_nothing() -> None:
    plan = active_plan()
    plan, attended = apply(plan, WED_21, "attended", AFTER_THEM)
    plan, excused = apply(plan, FRI_23, "excused", AFTER_THEM)
    assert attended is None and excused is None
    assert {sid: rec.status for sid, rec in plan.attendance.items()} == {WED_21: "attended", FRI_23: "excused"}


def test_missed_sessions_count_runs_and_totals() -> None:
    plan = active_plan()
    assert plan.schedule is not None
    first_start = plan.schedule.sessions[0].starts_at
    at = NOW + timedelta(days=30)

    plan, e1 = apply(plan, WED_21, "missed", at)
    assert (e1.consecutive_misses, e1.total_misses) == (1, 1)
    assert e1.session_id == WED_21
    assert e1.starts_at == first_start
    assert e1.detected == "reported"
    assert e1.recorded_at == at
    assert e1.episode_id == "ep-1"

    plan, e2 = apply(plan, FRI_23, "missed", at)
    assert (e2.consecutive_misses, e2.total_misses) == (2, 2)

    plan, e3 = apply(plan, MON_26, "attended", at)
    assert e3 is None

    plan, e4 = apply(plan, WED_28, "missed", at)
    assert (e4.consecutive_misses, e4.total_misses) == (1, 3)  # attended in between resets the run

    # An unrecorded session (FRI_30) does not break the run.
    plan, e6 = apply(plan, MON_02, "missed", at)
    assert (e6.consecutive_misses, e6.total_misses) == (2, 4)

    # Correcting an earlier attended session to missed joins the runs around it.
    plan, e3b = apply(plan, MON_26, "missed", at)
    assert (e3b.consecutive_misses, e3b.total_misses) == (3, 5)

    # Missed → attended: no event, total drops for the next miss.
    plan, none = apply(plan, FRI_23, "attended", at)
    assert none is None
    plan, e7 = apply(plan, WED_04, "missed", at)
    assert (e7.consecutive_misses, e7.total_misses) == (4, 5)  # MON_26, WED_28, MON_02, WED_04


def test_miss_recorded_out_of_calendar_order_counts_only_earlier_sessions() -> None:
    plan = active_plan()
    plan, _ = apply(plan, FRI_30, "missed", AFTER_THEM)
    plan, event = apply(plan, FRI_23, "missed", AFTER_THEM)
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
        at = AFTER_THEM + timedelta(minutes=step)
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
    plan, first = apply(plan, WED_21, "missed", AFTER_THEM)
    plan, late = apply(plan, FRI_23, "late", AFTER_THEM)
    plan, third = apply(plan, MON_26, "missed", AFTER_THEM)
    assert (first.consecutive_misses, late, third.consecutive_misses, third.total_misses) == (1, None, 1, 2)


@pytest.mark.parametrize("status", ["attended", "late", "missed"])
def test_attendance_before_the_session_starts_is_refused_naming_its_start(status: str) -> None:
    plan = active_plan()  # WED_21 meets Wednesday 2026-10-21 09:00-12:00 New York
    start = datetime(2026, 10, 21, 9, 0, tzinfo=NY)
    for now in (NOW, start - timedelta(seconds=1)):  # on Tuesday; a second before it begins
        with pytest.raises(CarePlanError) as caught:
            apply(plan, WED_21, status, now)
        assert caught.value.code == "session_not_started"
        assert "starts at 2026-10-21T09:00:00-04:00" in str(caught.value)
    recorded, _ = apply(plan, WED_21, status, start)  # from its start on
    assert recorded.attendance[WED_21].status == status


def test_an_excused_absence_may_be_recorded_ahead() -> None:
    recorded, event = apply(active_plan(), MON_02, "excused", NOW)
    assert event is None and recorded.attendance[MON_02].status == "excused"


def test_excused_absence_keeps_when_notice_was_given() -> None:
    notice = NOW - timedelta(hours=50)
    attendance, event = record_attendance(active_plan(), WED_21, "excused", NOW, notice)
    assert event is None
    assert attendance[WED_21] == AttendanceRecord(status="excused", recorded_at=NOW, notice_given_at=notice)


@pytest.mark.parametrize("status", ["attended", "late", "missed"])
def test_notice_goes_only_with_an_excused_absence(status: str) -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(active_plan(), WED_21, status, NOW, NOW)  # type: ignore[arg-type]
    assert caught.value.code == "notice_without_excuse"


# --- graduation by a clinician ------------------------------------------------------------------


def test_graduating_below_the_levels_minimum_of_attended_sessions_needs_a_reason() -> None:
    plan = active_plan()
    with pytest.raises(CarePlanError) as caught:
        graduate_by_clinician(plan, POLICY, AFTER_THEM, "dr-a", None)
    assert (caught.value.code, caught.value.field) == ("reason_required", ("body", "reason"))
    assert "0 session(s) attended, fewer than the 12 a graduation from IOP takes" in str(caught.value)
    with pytest.raises(CarePlanError):
        graduate_by_clinician(plan, POLICY, AFTER_THEM, "dr-a", "   ")  # blank is no reason
    ended, event = graduate_by_clinician(plan, POLICY, AFTER_THEM, "dr-a", "moving away")
    assert (ended.status, ended.end_note, ended.ended_by, event.by) == ("graduated", "moving away", "dr-a", "clinician")


def test_graduating_at_the_minimum_needs_no_reason_and_late_counts_as_attended() -> None:
    plan = active_plan()
    assert plan.schedule is not None
    for n, session in enumerate(plan.schedule.sessions[:12]):
        plan, _ = apply(plan, session.session_id, "late" if n % 2 else "attended", LATEST)
    ended, _ = graduate_by_clinician(plan, POLICY, LATEST, "dr-a", None)
    assert ended.status == "graduated" and ended.end_note is None
    no_minimum = POLICY.model_copy(update={"graduation": GraduationRules(min_attended_sessions={})})
    assert graduate_by_clinician(active_plan(), no_minimum, NOW, "dr-a", None)[0].status == "graduated"


def test_a_plan_whose_every_session_is_recorded_is_looked_at_again_when_the_last_one_is_over() -> None:
    plan = active_plan()
    assert plan.schedule is not None
    last = plan.schedule.sessions[-1]
    during_last = last.starts_at + timedelta(minutes=5)  # Monday 2026-12-14, 09:05 New York
    for session in plan.schedule.sessions:
        plan, _ = apply(plan, session.session_id, "attended", during_last)
    over = datetime(2026, 12, 14, 17, 30, tzinfo=UTC)  # its end, 12:00 New York, and the 30-minute grace
    assert next_check(plan, POLICY, during_last) == over  # then it may graduate on completion
    assert next_check(plan, POLICY, over) == datetime(2026, 12, 21, 5, 0, tzinfo=UTC)  # only the week's end left
