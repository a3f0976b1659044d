"""record_attendance with groups: sheets, corrections, minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from services.care_plan.domain.care_plan import record_attendance
from services.care_plan.domain.model import AttendanceRecord, AttendanceStatus, CarePlanError
from stepwise_contract import SessionMissed
from tests.unit.care_plan.helpers import RECORDED, WED_21, attend, book, joined_plan, ny


def test_a_sheet_line_must_name_the_sessions_group() -> None:
    plan, individual = book(joined_plan(), "individual", ny(2026, 10, 22, 14))
    attendance, _ = record_attendance(plan, WED_21, "attended", RECORDED, group_id="iop-am")
    assert attendance[WED_21].status == "attended"
    for session_id, group_id in [(WED_21, "iop-pm"), (individual, "iop-am"), ("iop-pm-20261021", "iop-pm")]:
        with pytest.raises(CarePlanError) as caught:
            record_attendance(plan, session_id, "attended", RECORDED, group_id=group_id)
        assert caught.value.code == "unknown_session"


def test_a_sheet_does_not_overwrite_a_different_record_made_by_staff() -> None:
    plan = attend(joined_plan(), WED_21, "excused", RECORDED)
    with pytest.raises(CarePlanError) as caught:
        record_attendance(plan, WED_21, "missed", RECORDED, group_id="iop-am", correction=False)
    assert caught.value.code == "recorded_differently"
    assert "excused" in str(caught.value)
    unchanged, event = record_attendance(plan, WED_21, "excused", RECORDED, group_id="iop-am", correction=False)
    assert (unchanged, event) == (plan.attendance, None)
    corrected, _ = record_attendance(plan, WED_21, "attended", RECORDED)  # the episode's own call corrects
    assert corrected[WED_21].status == "attended"


def test_a_sheet_replaces_a_miss_detected_by_no_record() -> None:
    plan = joined_plan()
    attendance, missed = record_attendance(plan, WED_21, "missed", RECORDED, detected="no_record")
    assert isinstance(missed, SessionMissed)
    plan = plan.model_copy(update={"attendance": attendance})
    later = RECORDED + timedelta(hours=3)
    attendance, event = record_attendance(plan, WED_21, "attended", later, group_id="iop-am", correction=False)
    assert event is None
    assert attendance[WED_21] == AttendanceRecord(status="attended", recorded_at=later)


@pytest.mark.parametrize("status", ["missed", "excused"])
def test_minutes_go_only_with_attended_or_late(status: AttendanceStatus) -> None:
    with pytest.raises(CarePlanError) as caught:
        record_attendance(joined_plan(), WED_21, status, RECORDED, minutes=30)
    assert caught.value.code == "minutes_without_attendance"


def test_minutes_are_kept_and_a_change_of_minutes_is_a_correction() -> None:
    plan = attend(joined_plan(), WED_21, "late", RECORDED, minutes=120)
    assert plan.attendance[WED_21].minutes == 120
    attendance, _ = record_attendance(plan, WED_21, "late", RECORDED + timedelta(hours=1), minutes=120)
    assert attendance == plan.attendance
    attendance, _ = record_attendance(plan, WED_21, "late", RECORDED + timedelta(hours=1), minutes=150)
    assert attendance[WED_21].minutes == 150
