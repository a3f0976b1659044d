"""The policy's groups (domain/policy.py): checked when loaded, and an older policy without groups."""

from __future__ import annotations

import copy
from datetime import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.care_plan.domain.policy import CarePolicy, load_policy
from services.common.policy_file import PolicyError
from stepwise_contract import CareLevel
from tests.unit.care_plan.helpers import group, ids, joined_plan
from tests.unit.care_plan.test_care_plan import default_raw, raw_group

# --- helpers ------------------------------------------------------------------------------------------------


def write(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


LEGACY_LEVELS: dict[str, dict[str, Any]] = {
    "OP": {"weeks": 12, "weekdays": ["tue"], "hours_per_session": 1.5,
           "tracks": {"morning": "10:00", "evening": "18:00"}},
    "IOP": {"weeks": 8, "weekdays": ["mon", "wed", "fri"], "hours_per_session": 3,
            "tracks": {"morning": "09:00", "evening": "18:00"}},
    "PHP": {"weeks": 4, "weekdays": ["mon", "tue", "wed", "thu", "fri"], "hours_per_session": 5,
            "tracks": {"morning": "09:00", "evening": "14:00"}},
}  # fmt: skip
"""The levels of the default policy before groups (default-2026.11)."""


def legacy_raw() -> dict[str, Any]:
    """The default policy written the older way: the calendar in the levels, no groups."""
    raw = default_raw()
    del raw["groups"]
    raw["levels"] = copy.deepcopy(LEGACY_LEVELS)
    return raw


# --- the policy's groups ------------------------------------------------------------------------------------


def test_a_group_id_used_twice_is_rejected(tmp_path: Path) -> None:
    raw = default_raw()
    raw["groups"].append({**raw_group(raw, "iop-am"), "name": "IOP morning group 2"})
    with pytest.raises(PolicyError, match=r"groups: each group_id once"):
        load_policy(write(tmp_path, raw))


def test_a_group_says_which_programs_it_takes(tmp_path: Path) -> None:
    """A group without ``programs`` would take every program's plans: adolescents among adults. A policy must say."""
    raw = default_raw()
    del raw_group(raw, "iop-am")["programs"]
    with pytest.raises(PolicyError, match=r"groups\.0\.programs: Field required"):
        load_policy(write(tmp_path, raw))


def test_a_policy_written_before_groups_keeps_every_program_together_as_before() -> None:
    policy = CarePolicy.model_validate(legacy_raw())
    assert {tuple(g.programs) for g in policy.groups} == {("adult", "adolescent")}


def test_a_groups_kind_must_be_a_session_kind(tmp_path: Path) -> None:
    raw = default_raw()
    raw_group(raw, "iop-am")["kind"] = "yoga"
    with pytest.raises(PolicyError, match=r"groups\.iop-am\.kind: 'yoga' is not in session_kinds"):
        load_policy(write(tmp_path, raw))
    raw["session_kinds"]["yoga"] = {"minutes": 60, "codes": [{"code": "X1"}]}
    assert group("iop-am", load_policy(write(tmp_path, raw))).kind == "yoga"


@pytest.mark.parametrize(
    ("group_id", "weekdays", "programs", "message"),
    [
        ("iop-am", ["tue", "thu"], ["adult", "adolescent"], "groups.iop-am: 6 h/week is below the 9 h/week minimum "
                                                            "for IOP adult programs"),
        ("php-pm", ["mon", "tue", "wed"], ["adolescent"], "groups.php-pm: 15 h/week is below the 20 h/week minimum "
                                                          "for PHP adolescent programs"),
        ("iop-pm", ["tue", "thu"], ["adolescent"], None),  # 6 h/week is the adolescents' IOP minimum
    ],
)  # fmt: skip
def test_a_group_below_its_levels_minimum_hours_for_a_program_it_takes_is_rejected(
    tmp_path: Path, group_id: str, weekdays: list[str], programs: list[str], message: str | None
) -> None:
    raw = default_raw()
    raw_group(raw, group_id).update(weekdays=weekdays, programs=programs)
    if message is None:
        assert group(group_id, load_policy(write(tmp_path, raw))).weekly_hours == 6
        return
    with pytest.raises(PolicyError) as caught:
        load_policy(write(tmp_path, raw))
    assert message in str(caught.value)


def test_an_offered_level_needs_a_group_of_the_default_track_for_every_program(tmp_path: Path) -> None:
    raw = default_raw()
    raw_group(raw, "iop-am")["programs"] = ["adolescent"]
    with pytest.raises(PolicyError, match=r"groups: IOP has no morning group for adult programs"):
        load_policy(write(tmp_path, raw))
    raw["default_track"] = "evening"
    assert load_policy(write(tmp_path, raw)).groups_for(CareLevel.IOP, "morning", "adult") == []


def test_the_calendar_fields_of_a_level_go_with_groups_only_in_an_older_policy(tmp_path: Path) -> None:
    raw = default_raw()
    raw["levels"]["IOP"]["weekdays"] = ["mon", "wed", "fri"]
    with pytest.raises(PolicyError, match=r"levels: weekdays, hours_per_session and tracks are set by groups"):
        load_policy(write(tmp_path, raw))


def test_an_older_policy_without_groups_loads_with_one_group_per_level_and_track(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, legacy_raw()))
    assert sorted(g.group_id for g in policy.groups) == [
        "iop-evening", "iop-morning", "op-evening", "op-morning", "php-evening", "php-morning",
    ]  # fmt: skip
    iop = group("iop-morning", policy)
    assert (iop.level, iop.track, iop.weekdays, iop.starts_at, iop.minutes) == (
        CareLevel.IOP, "morning", ["mon", "wed", "fri"], time(9, 0), 180,
    )  # fmt: skip
    assert (iop.capacity, iop.kind, iop.programs) == (None, "group", ["adult", "adolescent"])
    assert group("op-evening", policy).minutes == 90
    assert group("php-evening", policy).starts_at == time(14, 0)
    plan = joined_plan("iop-morning", policy=policy)
    assert ids(plan)[:2] == ["iop-morning-20261021", "iop-morning-20261023"]
    assert len(ids(plan)) == 24


def test_an_older_policy_needs_every_calendar_field_of_a_level(tmp_path: Path) -> None:
    raw = legacy_raw()
    del raw["levels"]["OP"]["hours_per_session"]
    with pytest.raises(PolicyError, match=r"levels\.OP: give weekdays, hours_per_session and tracks, or list groups"):
        load_policy(write(tmp_path, raw))


def test_an_older_policy_still_needs_the_default_track_at_each_offered_level(tmp_path: Path) -> None:
    raw = legacy_raw()
    raw["levels"]["OP"]["tracks"] = {"evening": "18:00"}
    with pytest.raises(PolicyError, match=r"groups: OP has no morning group for adult programs"):
        load_policy(write(tmp_path, raw))


def test_a_policy_file_written_before_groups_loads_as_it_was(tmp_path: Path) -> None:
    raw = legacy_raw()
    raw["version"] = "default-2026.11"
    del raw["session_kinds"]
    policy = load_policy(write(tmp_path, raw))
    assert [g.group_id for g in policy.groups_for(CareLevel.IOP, "morning", "adult")] == ["iop-morning"]
