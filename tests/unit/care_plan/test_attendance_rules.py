"""Missed-session rules, no-show detection and weekly utilization (services/care_plan/domain/attendance_rules.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, get_args
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.care_plan.domain.attendance_rules import (
    MissedSessionPolicy,
    MissedSessionRule,
    RuleTriggered,
    UtilizationShortfall,
    next_no_show_check,
    next_utilization_check,
    no_shows,
    triggered_rules,
    utilization_shortfalls,
)
from services.care_plan.domain.model import AttendanceRecord, AttendanceStatus, RuleFiring
from services.care_plan.domain.policy import DEFAULT_POLICY_FILE, load_policy
from services.common.policy_file import PolicyError
from stepwise_contract import Reason, Schedule, ScheduledSession

NEW_YORK = "America/New_York"
NY = ZoneInfo(NEW_YORK)
T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
STATUS: dict[str, AttendanceStatus] = {"A": "attended", "L": "late", "M": "missed", "X": "excused"}


# --- helpers ------------------------------------------------------------------------------------------------


def daily(count: int, first: date = date(2026, 11, 2), hours: float = 3) -> Schedule:
    """``count`` sessions on consecutive days at 09:00 New York time, ids s001…"""
    sessions: list[ScheduledSession] = []
    for number in range(1, count + 1):
        start = datetime.combine(first + timedelta(days=number - 1), time(9), tzinfo=NY)
        sessions.append(session(f"s{number:03d}", start, start + timedelta(hours=hours)))
    return Schedule(
        timezone=NEW_YORK, track="morning", days_per_week=7, hours_per_session=hours, weeks=1, sessions=sessions
    )


def session(session_id: str, starts_at: datetime, ends_at: datetime) -> ScheduledSession:
    """A group session (the calendar of a program group: kind ``group``)."""
    return ScheduledSession(session_id=session_id, starts_at=starts_at, ends_at=ends_at, kind="group")


def record(status: AttendanceStatus) -> AttendanceRecord:
    return AttendanceRecord(status=status, recorded_at=T0)


def marks(pattern: str) -> dict[str, AttendanceRecord]:
    """A=attended, L=late, M=missed, X=excused, '.'=no record; position i is session s00(i+1)."""
    return {f"s{i:03d}": record(STATUS[c]) for i, c in enumerate(pattern, start=1) if c != "."}


def statuses_to_attendance(statuses: Sequence[AttendanceStatus]) -> dict[str, AttendanceRecord]:
    return {f"s{i:03d}": record(status) for i, status in enumerate(statuses, start=1)}


def consecutive(
    count: int, code: str = "in_a_row", action: str = "outreach", text: str | None = None
) -> dict[str, Any]:
    return {
        "code": code,
        "kind": "consecutive",
        "count": count,
        "action": action,
        "text": text or "{consecutive} sessions missed in a row.",
    }


def window(count: int, size: int, code: str = "in_window", action: str = "attendance_contract") -> dict[str, Any]:
    return {
        "code": code,
        "kind": "window",
        "count": count,
        "window": size,
        "action": action,
        "text": "{misses} of the last {window} sessions missed (limit {count}).",
    }


def policy(*rules: dict[str, Any]) -> MissedSessionPolicy:
    return MissedSessionPolicy.model_validate({"rules": list(rules)})


def fired_at(pattern: str, rules: MissedSessionPolicy, firings: Sequence[RuleFiring] = ()) -> list[str]:
    return [t.session_id for t in triggered_rules(daily(len(pattern)), marks(pattern), firings, rules)]


def firing(code: str, session_id: str) -> RuleFiring:
    return RuleFiring(rule_code=code, session_id=session_id, at=T0)


def record_in_order(
    statuses: Sequence[AttendanceStatus], rules: MissedSessionPolicy, order: Sequence[int] | None = None
) -> list[RuleTriggered]:
    """Record the statuses one at a time (in ``order``), keeping what fires as firings, like the service does."""
    schedule = daily(len(statuses))
    attendance: dict[str, AttendanceRecord] = {}
    firings: list[RuleFiring] = []
    fired: list[RuleTriggered] = []
    for index in order if order is not None else range(len(statuses)):
        attendance[f"s{index + 1:03d}"] = record(statuses[index])
        new = triggered_rules(schedule, attendance, firings, rules)
        firings.extend(firing(t.rule_code, t.session_id) for t in new)
        fired.extend(new)
    return fired


# --- policy -------------------------------------------------------------------------------------------------


def test_default_policy_has_the_four_rules() -> None:
    rules = load_policy().missed_sessions.rules
    assert [(r.kind, r.count, r.window, r.action) for r in rules] == [
        ("consecutive", 2, None, "outreach"),
        ("window", 2, 6, "attendance_contract"),
        ("window", 3, 6, "care_team_review"),
        ("consecutive", 3, None, "discharge_review"),
    ]
    assert rules[0].text == "2 sessions missed in a row: reach out to the patient today."
    assert rules[3].text == "3 sessions missed in a row without notice: discharge review."


def test_default_policy_fires_on_a_burst_of_misses_in_rule_order() -> None:
    rules = load_policy().missed_sessions
    fired = triggered_rules(daily(3), marks("MMM"), [], rules)
    codes = [r.code for r in rules.rules]
    assert [(t.session_id, t.rule_code) for t in fired] == [
        ("s002", codes[0]),
        ("s002", codes[1]),
        ("s003", codes[2]),
        ("s003", codes[3]),
    ]
    assert [t.action for t in fired] == ["outreach", "attendance_contract", "care_team_review", "discharge_review"]


def test_the_empty_policy_fires_nothing() -> None:
    assert MissedSessionPolicy().rules == []
    assert triggered_rules(daily(4), marks("MMMM"), [], MissedSessionPolicy()) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"rules": [{**window(2, 6), "window": None}]}, "a window rule needs a window"),
        ({"rules": [{k: v for k, v in window(2, 6).items() if k != "window"}]}, "a window rule needs a window"),
        ({"rules": [window(3, 2)]}, "window 2 is smaller than count 3"),
        ({"rules": [{**consecutive(2), "window": 6}]}, "a consecutive rule takes no window"),
        ({"rules": [consecutive(2, text="{consecutive} missed; call {patient_name}.")]}, "unknown template field"),
        ({"rules": [consecutive(2, text="{count} missed, see {window}.")]}, "{window} is only for window rules"),
        ({"rules": [consecutive(2, text="{} missed.")]}, "must be a plain name"),
        ({"rules": [consecutive(2, text="{count.real} missed.")]}, "must be a plain name"),
        ({"rules": [consecutive(2, text="{count missed.")]}, "not a valid template"),
        ({"rules": [consecutive(2, text="{count:q} missed.")]}, "does not format"),
        ({"rules": [consecutive(2), consecutive(3)]}, "code 'in_a_row' is used twice"),
        ({"rules": [consecutive(2, code="Missed-Two")]}, "String should match pattern"),
        ({"rules": [consecutive(0)]}, "greater than or equal to 1"),
        ({"rules": [consecutive(2, action="call_police")]}, "Input should be"),
        ({"rules": [{**consecutive(2), "severity": "high"}]}, "Extra inputs are not permitted"),
    ],
)
def test_policy_validation_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MissedSessionPolicy.model_validate(raw)
    assert message in str(caught.value)


def test_a_policy_file_error_names_the_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))
    raw["missed_sessions"]["rules"][1].pop("window")
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(PolicyError, match=r"missed_sessions\.rules\.1: Value error, a window rule needs a window"):
        load_policy(path)


def test_rules_are_frozen() -> None:
    rule = MissedSessionRule.model_validate(consecutive(2))
    with pytest.raises(ValidationError, match="frozen"):
        rule.count = 3  # type: ignore[misc]


# --- consecutive rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("", []),
        ("M", []),
        ("MM", ["s002"]),
        ("MMM", ["s002"]),
        ("AMM", ["s003"]),
        ("MAM", []),
        ("MLM", []),  # late is attendance: it ends the run
        ("MXM", ["s003"]),  # excused neither counts nor ends the run
        ("XXM", []),
        ("XMXXM", ["s005"]),
        ("M.M", ["s003"]),  # a session with no record yet is left out
        ("MMAMM", ["s002", "s005"]),  # a new run after attendance fires again
        ("MMMAMMM", ["s002", "s006"]),
    ],
)
def test_consecutive_rule_count_2(pattern: str, expected: list[str]) -> None:
    assert fired_at(pattern, policy(consecutive(2))) == expected


@pytest.mark.parametrize(
    ("count", "pattern", "expected"),
    [
        (1, "AMAM", ["s002", "s004"]),
        (1, "MXM", ["s001"]),
        (3, "MM", []),
        (3, "MMM", ["s003"]),
        (3, "MMXM", ["s004"]),
        (3, "MMAMMM", ["s006"]),
    ],
)
def test_consecutive_rule_at_its_boundary(count: int, pattern: str, expected: list[str]) -> None:
    assert fired_at(pattern, policy(consecutive(count))) == expected


def test_a_triggered_rule_carries_counts_and_a_rationale() -> None:
    rules = policy(consecutive(2, text="{consecutive} in a row (rule: {count}); {misses} misses."))
    [triggered] = triggered_rules(daily(4), marks("AMXM"), [], rules)
    assert triggered == RuleTriggered(
        rule_code="in_a_row",
        action="outreach",
        session_id="s004",
        rationale=[Reason(code="in_a_row", text="2 in a row (rule: 2); 2 misses.")],
        consecutive_misses=2,
        misses_in_window=2,
    )


def test_an_earlier_firing_at_the_session_suppresses_it() -> None:
    rules = policy(consecutive(2))
    assert fired_at("MM", rules, [firing("in_a_row", "s002")]) == []
    assert fired_at("MM", rules, [firing("other_rule", "s002")]) == ["s002"]
    assert fired_at("MMAMM", rules, [firing("in_a_row", "s002")]) == ["s005"]
    assert fired_at("MM", rules, [firing("in_a_row", "s999")]) == ["s002"]  # not in the calendar: ignored


def test_fires_once_while_the_run_goes_on() -> None:
    rules = policy(consecutive(2))
    fired = record_in_order([STATUS[c] for c in "MMMMXMAMM"], rules)
    assert [t.session_id for t in fired] == ["s002", "s009"]


def test_a_late_report_of_an_earlier_miss_does_not_fire_the_same_run_again() -> None:
    rules = policy(consecutive(2))
    fired = fired_at("M.M", rules)
    assert fired == ["s003"]
    # s002 is reported missed afterwards: the run now crosses 2 at s002, but it already fired at s003.
    assert fired_at("MMM", rules, [firing("in_a_row", "s003")]) == []
    # Corrected to attended: two runs of 1, nothing new.
    assert fired_at("MAM", rules, [firing("in_a_row", "s003")]) == []


def test_a_correction_to_excused_does_not_fire_the_same_run_again() -> None:
    rules = policy(consecutive(2))
    # Fired at s002; s001 is then corrected to excused, so the run reaches 2 only at s003.
    assert fired_at("XMM", rules, [firing("in_a_row", "s002")]) == []


# --- window rules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "size", "pattern", "expected"),
    [
        (2, 6, "M", []),
        (2, 6, "MM", ["s002"]),
        (2, 6, "MMMM", ["s002"]),
        (2, 6, "MAAAAM", ["s006"]),  # 2 in the last 6
        (2, 6, "MAAAAAM", []),  # s001 has left the window
        (2, 6, "MXXXXM", ["s006"]),  # an excused session takes its place in the window
        (2, 6, "MXXXXXM", []),
        (2, 6, "MLLM", ["s004"]),  # late does not reset a window
        (2, 6, "M.M", ["s003"]),  # unrecorded sessions are not in the window
        (2, 6, "MMAAAAAAMM", ["s002", "s010"]),  # back below 2, then a new crossing
        (2, 6, "MAMAAAAM", ["s003", "s008"]),  # W: 1,1,2,2,2,2,1,2: crosses again at s008
        (3, 3, "MM", []),
        (3, 3, "MMM", ["s003"]),
        (3, 3, "MMXM", []),
        (3, 6, "MAMAM", ["s005"]),
        (1, 1, "MAM", ["s001", "s003"]),
    ],
)
def test_window_rule_crossings(count: int, size: int, pattern: str, expected: list[str]) -> None:
    assert fired_at(pattern, policy(window(count, size))) == expected


def test_window_rule_counts_and_rationale() -> None:
    [triggered] = triggered_rules(daily(6), marks("MAAMXM"), [], policy(window(3, 6)))
    assert (triggered.session_id, triggered.consecutive_misses, triggered.misses_in_window) == ("s006", 2, 3)
    assert triggered.rationale == [Reason(code="in_window", text="3 of the last 6 sessions missed (limit 3).")]


def test_window_rule_fires_once_per_crossing() -> None:
    rules = policy(window(2, 6))
    assert fired_at("MM", rules, [firing("in_window", "s002")]) == []
    # A late report moves the crossing to an earlier session of the same stretch: nothing new.
    assert fired_at("MMM", rules, [firing("in_window", "s003")]) == []
    fired = record_in_order([STATUS[c] for c in "MMMAAAAAAMMM"], rules)
    assert [t.session_id for t in fired] == ["s002", "s011"]


# --- properties ---------------------------------------------------------------------------------------------

statuses_strategy = st.lists(st.sampled_from(get_args(AttendanceStatus)), max_size=30)


def qualifying_runs(statuses: Sequence[AttendanceStatus], count: int) -> int:
    """Brute force: maximal runs of misses (excused left out, attended/late split) of length >= count."""
    kept = [s for s in statuses if s != "excused"]
    runs = [len(list(group)) for missed, group in itertools.groupby(kept, key=lambda s: s == "missed") if missed]
    return sum(1 for run in runs if run >= count)


def window_crossings(statuses: Sequence[AttendanceStatus], count: int, size: int) -> list[str]:
    """Brute force: sessions where misses among the last ``size`` reach ``count`` from below."""

    def misses(end: int) -> int:
        return sum(1 for s in statuses[max(0, end - size + 1) : end + 1] if s == "missed") if end >= 0 else 0

    return [f"s{i + 1:03d}" for i in range(len(statuses)) if misses(i) >= count > misses(i - 1)]


@given(statuses=statuses_strategy, count=st.integers(1, 4))
def test_consecutive_rule_fires_once_per_qualifying_run(statuses: list[AttendanceStatus], count: int) -> None:
    rules = policy(consecutive(count))
    fired = record_in_order(statuses, rules)
    assert len(fired) == qualifying_runs(statuses, count)
    assert all(statuses[int(t.session_id[1:]) - 1] == "missed" for t in fired)
    assert all(t.consecutive_misses == count for t in fired)
    # Evaluating everything at once gives the same firings as recording one session at a time.
    assert triggered_rules(daily(len(statuses)), statuses_to_attendance(statuses), [], rules) == fired


@given(data=st.data(), statuses=statuses_strategy, count=st.integers(1, 4))
def test_consecutive_rule_fires_at_most_once_per_run_whatever_the_recording_order(
    data: st.DataObject, statuses: list[AttendanceStatus], count: int
) -> None:
    order = data.draw(st.permutations(range(len(statuses))))
    fired = record_in_order(statuses, policy(consecutive(count)), order)
    # The final run each firing belongs to: attended/late sessions before it.
    runs = [sum(1 for s in statuses[: int(t.session_id[1:])] if s in ("attended", "late")) for t in fired]
    assert len(runs) == len(set(runs))
    assert all(statuses[int(t.session_id[1:]) - 1] == "missed" for t in fired)


@given(data=st.data(), statuses=statuses_strategy, count=st.integers(1, 4), extra=st.integers(0, 4))
def test_window_firings_never_repeat_for_a_session(
    data: st.DataObject, statuses: list[AttendanceStatus], count: int, extra: int
) -> None:
    rules = policy(window(count, count + extra))
    in_order = record_in_order(statuses, rules)
    assert [t.session_id for t in in_order] == window_crossings(statuses, count, count + extra)
    assert triggered_rules(daily(len(statuses)), statuses_to_attendance(statuses), [], rules) == in_order
    order = data.draw(st.permutations(range(len(statuses))))
    shuffled = [t.session_id for t in record_in_order(statuses, rules, order)]
    assert len(shuffled) == len(set(shuffled))


# --- no-shows -----------------------------------------------------------------------------------------------

GRACE = timedelta(minutes=30)


def test_no_shows_after_the_end_plus_grace_in_calendar_order() -> None:
    schedule = daily(4)
    reversed_schedule = schedule.model_copy(update={"sessions": list(reversed(schedule.sessions))})
    end_3 = schedule.sessions[2].ends_at
    attendance = marks("A")
    assert no_shows(schedule, attendance, end_3 + GRACE - timedelta(seconds=1), GRACE) == ["s002"]
    assert no_shows(reversed_schedule, attendance, end_3 + GRACE, GRACE) == ["s002", "s003"]
    assert no_shows(schedule, marks("AAAA"), end_3 + timedelta(days=9), GRACE) == []
    assert no_shows(schedule, {}, schedule.sessions[0].starts_at, GRACE) == []


def test_next_no_show_check_is_the_earliest_unrecorded_end_plus_grace() -> None:
    schedule = daily(4)
    assert next_no_show_check(schedule, {}, GRACE) == schedule.sessions[0].ends_at + GRACE
    assert next_no_show_check(schedule, marks("A.A"), GRACE) == schedule.sessions[1].ends_at + GRACE
    assert next_no_show_check(schedule, marks("MMMM"), GRACE) is None
    found = next_no_show_check(schedule, marks("A"), timedelta(0))
    assert found is not None and found.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("ends_at", "due_utc"),
    [
        # Fall back (2026-11-01): 01:30 EDT is 05:30 UTC; one hour later is 01:30 EST, not 02:30 EST.
        (datetime(2026, 11, 1, 1, 30, tzinfo=NY), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        (datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=NY), datetime(2026, 11, 1, 7, 30, tzinfo=UTC)),
        # Spring forward (2026-03-08): 01:30 EST is 06:30 UTC; one hour later is 03:30 EDT.
        (datetime(2026, 3, 8, 1, 30, tzinfo=NY), datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
    ],
)
def test_no_show_grace_across_a_dst_change(ends_at: datetime, due_utc: datetime) -> None:
    grace = timedelta(hours=1)
    schedule = Schedule(
        timezone=NEW_YORK,
        track="evening",
        days_per_week=1,
        hours_per_session=1,
        weeks=1,
        sessions=[session("s001", ends_at - timedelta(hours=1), ends_at)],
    )
    assert next_no_show_check(schedule, {}, grace) == due_utc
    assert no_shows(schedule, {}, due_utc - timedelta(seconds=1), grace) == []
    assert no_shows(schedule, {}, due_utc, grace) == ["s001"]
    assert no_shows(schedule, {}, due_utc.astimezone(NY), grace) == ["s001"]  # ``now`` in local time is the same


# --- weekly utilization -------------------------------------------------------------------------------------


def iop(first: date, weeks: int = 2, skip: Sequence[date] = ()) -> Schedule:
    """IOP: Mon/Wed/Fri 09:00-12:00 New York, from ``first``, for ``weeks`` weeks counted from its Monday."""
    monday = first - timedelta(days=first.weekday())
    days = [
        monday + timedelta(days=7 * week + weekday)
        for week in range(weeks)
        for weekday in (0, 2, 4)
        if monday + timedelta(days=7 * week + weekday) >= first
    ]
    sessions: list[ScheduledSession] = []
    for day in days:
        if day in skip:
            continue
        start = datetime.combine(day, time(9), tzinfo=NY)
        sessions.append(session(f"s{len(sessions) + 1:03d}", start, start + timedelta(hours=3)))
    return Schedule(
        timezone=NEW_YORK, track="morning", days_per_week=3, hours_per_session=3, weeks=weeks, sessions=sessions
    )


WEEK_1 = date(2026, 11, 9)  # a Monday
END_OF_WEEK_1 = datetime(2026, 11, 16, tzinfo=NY)
LATER = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("AAA", []),
        ("ALA", []),  # late counts as attended
        ("AA", [UtilizationShortfall(WEEK_1, 6.0, 9.0, {"group": 6.0})]),
        ("AAX", [UtilizationShortfall(WEEK_1, 6.0, 9.0, {"group": 6.0})]),  # excused is not hours attended
        ("AMA", [UtilizationShortfall(WEEK_1, 6.0, 9.0, {"group": 6.0})]),
        ("", [UtilizationShortfall(WEEK_1, 0.0, 9.0, {})]),  # no hours: no kind
    ],
)
def test_a_full_week_below_or_at_the_minimum(pattern: str, expected: list[UtilizationShortfall]) -> None:
    schedule = iop(WEEK_1, weeks=1)
    assert utilization_shortfalls(schedule, marks(pattern), 9, [], LATER) == expected


def test_a_partial_first_week_is_pro_rated() -> None:
    schedule = iop(date(2026, 11, 4), weeks=2)  # Wed, Fri; then Mon, Wed, Fri
    first_week = date(2026, 11, 2)
    assert utilization_shortfalls(schedule, marks("AAAAA"), 9, [], LATER) == []
    assert utilization_shortfalls(schedule, marks("AMAAA"), 9, [], LATER) == [
        UtilizationShortfall(first_week, 3.0, 6.0, {"group": 3.0})
    ]
    assert utilization_shortfalls(schedule, marks("AMAAM"), 9, [], LATER) == [
        UtilizationShortfall(first_week, 3.0, 6.0, {"group": 3.0}),
        UtilizationShortfall(WEEK_1, 6.0, 9.0, {"group": 6.0}),
    ]


def test_a_week_with_a_closure_is_pro_rated_and_the_minimum_never_exceeds_the_full_one() -> None:
    closed = iop(WEEK_1, weeks=1, skip=[date(2026, 11, 11)])
    assert utilization_shortfalls(closed, marks("AA"), 9, [], LATER) == []
    assert utilization_shortfalls(closed, marks("A"), 9, [], LATER) == [
        UtilizationShortfall(WEEK_1, 3.0, 6.0, {"group": 3.0})
    ]
    crowded = closed.model_copy(update={"days_per_week": 1})
    assert utilization_shortfalls(crowded, marks("A"), 9, [], LATER) == [
        UtilizationShortfall(WEEK_1, 3.0, 9.0, {"group": 3.0})
    ]


def test_flagged_weeks_are_not_reported_again() -> None:
    schedule = iop(WEEK_1, weeks=2)
    assert [s.week_start for s in utilization_shortfalls(schedule, {}, 9, [], LATER)] == [
        WEEK_1,
        date(2026, 11, 16),
    ]
    assert utilization_shortfalls(schedule, {}, 9, [WEEK_1], LATER) == [
        UtilizationShortfall(date(2026, 11, 16), 0.0, 9.0)
    ]


def test_a_week_is_reported_only_once_it_is_over_in_local_time() -> None:
    schedule = iop(WEEK_1, weeks=2)
    assert utilization_shortfalls(schedule, {}, 9, [], END_OF_WEEK_1 - timedelta(seconds=1)) == []
    assert utilization_shortfalls(schedule, {}, 9, [], END_OF_WEEK_1) == [UtilizationShortfall(WEEK_1, 0.0, 9.0)]
    assert utilization_shortfalls(schedule, {}, 9, [], END_OF_WEEK_1.astimezone(UTC)) == [
        UtilizationShortfall(WEEK_1, 0.0, 9.0)
    ]


def test_weeks_without_sessions_are_skipped() -> None:
    schedule = iop(WEEK_1, weeks=1)
    later = iop(date(2026, 11, 30), weeks=1)
    gap = schedule.model_copy(update={"sessions": [*schedule.sessions, *[
        s.model_copy(update={"session_id": f"t{i}"}) for i, s in enumerate(later.sessions)
    ]]})  # fmt: skip
    weeks = [s.week_start for s in utilization_shortfalls(gap, {}, 9, [], LATER)]
    assert weeks == [WEEK_1, date(2026, 11, 30)]
    assert next_utilization_check(gap, [WEEK_1], END_OF_WEEK_1) == datetime(2026, 12, 7, 5, tzinfo=UTC)


def test_next_utilization_check_is_the_end_of_the_earliest_week_not_over() -> None:
    schedule = iop(WEEK_1, weeks=2)
    assert next_utilization_check(schedule, [], T0) == END_OF_WEEK_1.astimezone(UTC)
    assert next_utilization_check(schedule, [], END_OF_WEEK_1) == datetime(2026, 11, 23, 5, tzinfo=UTC)
    assert next_utilization_check(schedule, [WEEK_1], T0) == datetime(2026, 11, 23, 5, tzinfo=UTC)
    assert next_utilization_check(schedule, [], LATER) is None


def test_a_week_spanning_the_dst_change_ends_at_local_midnight() -> None:
    # The week of 2026-10-26 holds the fall-back night: it ends Monday 2026-11-02 00:00 EST = 05:00 UTC.
    schedule = iop(date(2026, 10, 26), weeks=1)
    end = datetime(2026, 11, 2, 5, tzinfo=UTC)
    assert next_utilization_check(schedule, [], T0 - timedelta(days=9)) == end
    assert utilization_shortfalls(schedule, marks("AAA"), 9, [], end) == []
    assert utilization_shortfalls(schedule, marks("AA"), 9, [], end - timedelta(seconds=1)) == []
    assert utilization_shortfalls(schedule, marks("AA"), 9, [], end) == [
        UtilizationShortfall(date(2026, 10, 26), 6.0, 9.0, {"group": 6.0})
    ]


def test_hours_are_real_elapsed_hours_across_a_dst_change() -> None:
    # A session from 00:30 EDT to 02:30 EST on the fall-back night lasts 3 hours, not 2.
    start = datetime(2026, 11, 1, 0, 30, tzinfo=NY)
    schedule = Schedule(
        timezone=NEW_YORK,
        track="evening",
        days_per_week=1,
        hours_per_session=3,
        weeks=1,
        sessions=[session("s001", start, datetime(2026, 11, 1, 2, 30, tzinfo=NY))],
    )
    assert utilization_shortfalls(schedule, marks("A"), 4, [], LATER) == [
        UtilizationShortfall(date(2026, 10, 26), 3.0, 4.0, {"group": 3.0})
    ]
