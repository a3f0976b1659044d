"""The placement policy file: the default, a clinic's own file, and clear errors for a file that cannot be used."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.policy_file import PolicyError
from services.intake.domain.placement import (
    DEFAULT_PLACEMENT_POLICY,
    PlacementPolicy,
    load_placement_policy,
    recommend_level,
)
from stepwise_contract import CareLevel, DimensionRatings, InstrumentResult

ZEROS = DimensionRatings(withdrawal=0, biomedical=0, emotional=0, readiness=0, relapse=0, environment=0)
PHQ9_SEVERE = InstrumentResult(instrument="phq9", total=22, band="severe")


def default_raw() -> dict[str, Any]:
    raw = yaml.safe_load(DEFAULT_PLACEMENT_POLICY.read_text(encoding="utf-8"))
    assert isinstance(raw, dict)
    return raw


def write_policy(tmp_path: Path, raw: object, name: str = "placement.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def rule(raw: dict[str, Any], code: str) -> dict[str, Any]:
    found = [candidate for candidate in raw["instrument_rules"] if candidate["code"] == code]
    assert len(found) == 1
    rule: dict[str, Any] = found[0]
    return rule


def load_error(path: Path) -> str:
    with pytest.raises(PolicyError) as caught:
        load_placement_policy(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def changed(tmp_path: Path, change: Any) -> str:
    """Apply change(raw) to a copy of the default policy, write it, and return the load error."""
    raw = copy.deepcopy(default_raw())
    change(raw)
    return load_error(write_policy(tmp_path, raw))


# --- the default and a clinic's own file ------------------------------------------------------------


def test_default_policy_loads() -> None:
    policy = load_placement_policy()
    assert policy.version == "placement-default-2026.11"
    assert policy.levels_by_rating == {
        0: CareLevel.OP,
        1: CareLevel.OP,
        2: CareLevel.IOP,
        3: CareLevel.PHP,
        4: CareLevel.RESIDENTIAL,
    }
    assert [(r.code, r.dimensions, r.rating_at_least, r.minimum_level) for r in policy.dimension_rules] == [
        ("medical_severe", ("withdrawal", "biomedical"), 4, CareLevel.INPATIENT)
    ]
    summary = [(r.code, r.instrument, r.bands, r.total_at_least, r.minimum_level) for r in policy.instrument_rules]
    assert summary == [
        ("cssrs_high", "cssrs", ("high",), None, CareLevel.INPATIENT),
        ("cssrs_moderate", "cssrs", ("moderate",), None, CareLevel.IOP),
        ("phq9_severe", "phq9", ("severe",), None, CareLevel.PHP),
        ("phq9_moderately_severe", "phq9", ("moderately_severe",), None, CareLevel.IOP),
        ("gad7_severe", "gad7", ("severe",), None, CareLevel.IOP),
        ("dast10_substantial", "dast10", None, 6, CareLevel.IOP),
        ("audit_possible_dependence", "audit", None, 20, CareLevel.IOP),
    ]
    assert all(r.programs == ("adult", "adolescent") for r in policy.instrument_rules)
    co_occurring = policy.co_occurring
    assert co_occurring is not None
    assert co_occurring.emotional_at_least == 2
    assert co_occurring.raise_by == 1
    assert co_occurring.cap is CareLevel.RESIDENTIAL
    assert [(c.instrument, c.bands, c.total_at_least) for c in co_occurring.substance_results] == [
        ("audit", None, 16),
        ("dast10", None, 3),
        ("audit_c", ("positive",), None),
    ]


def test_default_policy_round_trips_through_a_written_file(tmp_path: Path) -> None:
    assert load_placement_policy(write_policy(tmp_path, default_raw())) == load_placement_policy()


def test_policy_round_trips_through_json() -> None:
    policy = load_placement_policy()
    assert PlacementPolicy.model_validate_json(policy.model_dump_json()) == policy


def test_policy_is_frozen() -> None:
    policy = load_placement_policy()
    with pytest.raises(ValueError, match="frozen"):
        policy.version = "other"  # type: ignore[misc]


def test_a_clinic_policy_changes_the_recommendation(tmp_path: Path) -> None:
    raw = default_raw()
    raw["version"] = "clinic-7"
    rule(raw, "phq9_severe")["minimum_level"] = "RESIDENTIAL"
    rule(raw, "phq9_severe")["text"] = "PHQ-9 {band} ({total}): {minimum_level}."
    policy = load_placement_policy(write_policy(tmp_path, raw))

    default = recommend_level(ZEROS, [PHQ9_SEVERE], "adult", load_placement_policy())
    clinic = recommend_level(ZEROS, [PHQ9_SEVERE], "adult", policy)
    assert (default.level, default.refer_out, default.policy_version) == (
        CareLevel.PHP,
        False,
        "placement-default-2026.11",
    )
    assert (clinic.level, clinic.refer_out, clinic.policy_version) == (CareLevel.RESIDENTIAL, True, "clinic-7")
    assert clinic.rationale[1].text == "PHQ-9 severe (22): RESIDENTIAL."


def test_a_clinic_can_map_ratings_differently(tmp_path: Path) -> None:
    raw = default_raw()
    raw["levels_by_rating"] = {0: "OP", 1: "IOP", 2: "IOP", 3: "PHP", 4: "RESIDENTIAL"}
    policy = load_placement_policy(write_policy(tmp_path, raw))
    ones = DimensionRatings(withdrawal=0, biomedical=0, emotional=0, readiness=1, relapse=0, environment=0)
    assert recommend_level(ones, [], "adult", policy).level is CareLevel.IOP


def test_rule_programs_default_to_both_and_can_be_limited(tmp_path: Path) -> None:
    raw = default_raw()
    assert "programs" not in rule(raw, "gad7_severe")
    rule(raw, "phq9_severe")["programs"] = ["adolescent"]
    policy = load_placement_policy(write_policy(tmp_path, raw))
    gad7 = next(r for r in policy.instrument_rules if r.code == "gad7_severe")
    assert gad7.programs == ("adult", "adolescent")
    assert recommend_level(ZEROS, [PHQ9_SEVERE], "adult", policy).level is CareLevel.OP
    assert recommend_level(ZEROS, [PHQ9_SEVERE], "adolescent", policy).level is CareLevel.PHP


def test_quoted_rating_keys_are_ratings(tmp_path: Path) -> None:
    path = tmp_path / "placement.yaml"
    text = DEFAULT_PLACEMENT_POLICY.read_text(encoding="utf-8").replace("  2: IOP", '  "2": IOP')
    assert '"2": IOP' in text
    path.write_text(text, encoding="utf-8")
    assert load_placement_policy(path).levels_by_rating[2] is CareLevel.IOP


# --- files that cannot be used -------------------------------------------------------------------


def test_unknown_level(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "gad7_severe").update(minimum_level="LEVEL_2_1"))
    assert "instrument_rules.4.minimum_level" in message
    assert "'IOP'" in message


def test_unknown_level_in_rating_map(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["levels_by_rating"].update({3: "php"}))
    assert "levels_by_rating.3" in message


def test_unknown_cap(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["co_occurring"].update(cap="HOSPITAL"))
    assert "co_occurring.cap" in message


def test_unknown_instrument(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").update(instrument="phq8"))
    assert "instrument_rules.2.instrument" in message
    assert "'phq9'" in message


def test_unknown_band(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").update(bands=["moderatly_severe"]))
    assert "instrument_rules.2.bands" in message
    assert "'moderatly_severe' is not a band of phq9" in message


def test_band_of_another_instrument(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "cssrs_high").update(bands=["severe"]))
    assert "instrument_rules.0.bands" in message
    assert "not a band of cssrs" in message


def test_unknown_flag(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "cssrs_high").update(flag="same_day_review"))
    assert "instrument_rules.0.flag" in message
    assert "not a flag of cssrs" in message


def test_total_on_an_instrument_without_total(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "cssrs_high").update(total_at_least=1))
    assert "instrument_rules.0.total_at_least" in message
    assert "cssrs has no total" in message


def test_total_out_of_range(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "dast10_substantial").update(total_at_least=11))
    assert "instrument_rules.5.total_at_least" in message
    assert "0–10" in message


def test_rule_without_condition(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").pop("bands"))
    assert "instrument_rules.2" in message
    assert "rule 'phq9_severe' needs at least one of: bands, total_at_least, flag" in message


def test_co_occurring_condition_without_condition(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["co_occurring"]["substance_results"][1].pop("total_at_least"))
    assert "co_occurring.substance_results.1" in message
    assert "a condition needs at least one of" in message


def test_co_occurring_needs_substance_instruments(tmp_path: Path) -> None:
    message = changed(
        tmp_path,
        lambda raw: raw["co_occurring"]["substance_results"].append({"instrument": "phq9", "total_at_least": 10}),
    )
    assert "co_occurring.substance_results" in message
    assert "phq9 is not a substance-use instrument" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PHQ-9 {score}: at least PHP.", "unknown field {score}"),
        ("PHQ-9 {}: at least PHP.", "unknown field {}"),
        ("PHQ-9 {band.upper}: at least PHP.", "unknown field {band.upper}"),
        ("PHQ-9 {total: at least PHP.", "not a valid template"),
        ("PHQ-9 {band:d}: at least PHP.", "does not format"),
    ],
)
def test_bad_template(tmp_path: Path, text: str, expected: str) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").update(text=text))
    assert "instrument_rules.2.text" in message
    assert expected in message


def test_total_in_template_of_an_instrument_without_total(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "cssrs_high").update(text="C-SSRS {total}."))
    assert "instrument_rules.0.text" in message
    assert "unknown field {total}" in message


def test_bad_template_in_dimension_rule(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["dimension_rules"][0].update(text="{dimension} rated {rating}."))
    assert "dimension_rules.0.text" in message
    assert "unknown field {dimension}" in message


def test_bad_template_in_co_occurring_rule(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["co_occurring"].update(text="{minimum_level}"))
    assert "co_occurring.text" in message


def test_total_in_co_occurring_template_needs_totals_for_every_condition(tmp_path: Path) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["co_occurring"]["substance_results"].append({"instrument": "bam", "flag": "use_reported"})
        raw["co_occurring"]["text"] = "{instrument} total {total}."

    message = changed(tmp_path, change)
    assert "co_occurring.text" in message
    assert "unknown field {total}" in message


def test_missing_version(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw.pop("version"))
    assert "version: Field required" in message


def test_unquoted_numeric_version_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "placement.yaml"
    text = DEFAULT_PLACEMENT_POLICY.read_text(encoding="utf-8").replace(
        'version: "placement-default-2026.11"', "version: 2026.11"
    )
    path.write_text(text, encoding="utf-8")
    message = load_error(path)
    assert "version" in message
    assert "quote it" in message


def test_yaml_boolean_band_is_rejected(tmp_path: Path) -> None:
    # dast10 "none" is safe, but a bare no/off/yes/on in a band list is read as a boolean.
    path = tmp_path / "placement.yaml"
    text = DEFAULT_PLACEMENT_POLICY.read_text(encoding="utf-8").replace("bands: [moderate]", "bands: [off]", 1)
    path.write_text(text, encoding="utf-8")
    message = load_error(path)
    assert "instrument_rules.1.bands.0" in message
    assert "quote it" in message


def test_boolean_rating_key_is_rejected(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw.update(levels_by_rating={True: "OP", **raw["levels_by_rating"]}))
    assert "levels_by_rating" in message


def test_missing_rating(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["levels_by_rating"].pop(2))
    assert "levels_by_rating" in message
    assert "missing [2]" in message


def test_decreasing_rating_map(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["levels_by_rating"].update({3: "OP"}))
    assert "levels_by_rating" in message
    assert "rating 3 maps to OP, below IOP" in message


def test_rating_threshold_out_of_range(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["dimension_rules"][0].update(rating_at_least=5))
    assert "dimension_rules.0.rating_at_least" in message


def test_unknown_dimension(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["dimension_rules"][0].update(dimensions=["medical"]))
    assert "dimension_rules.0.dimensions.0" in message


def test_unknown_program(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").update(programs=["children"]))
    assert "instrument_rules.2.programs.0" in message


def test_unknown_field(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").update(minimum="PHP"))
    assert "instrument_rules.2.minimum: Extra inputs are not permitted" in message


def test_duplicate_code(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "gad7_severe").update(code="phq9_severe"))
    assert "instrument_rules.4.code: 'phq9_severe' is already used by instrument_rules.2.code" in message


def test_reserved_code(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: raw["co_occurring"].update(code="recommended_level"))
    assert "co_occurring.code: 'recommended_level' is reserved" in message


def test_bad_code(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").update(code="PHQ-9 severe"))
    assert "instrument_rules.2.code" in message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = tmp_path / "placement.yaml"
    text = DEFAULT_PLACEMENT_POLICY.read_text(encoding="utf-8").replace(
        "    minimum_level: PHP\n", "    minimum_level: PHP\n    minimum_level: OP\n", 1
    )
    path.write_text(text, encoding="utf-8")
    message = load_error(path)
    assert "cannot read placement policy" in message
    assert "duplicate key 'minimum_level'" in message


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81version: x\n")
    assert "cannot read placement policy" in load_error(path)


def test_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: [unclosed\nlevels_by_rating: {0: OP\n", encoding="utf-8")
    assert "cannot read placement policy" in load_error(path)


@pytest.mark.parametrize("content", ["", "just a sentence\n", "- a\n- list\n"])
def test_yaml_that_is_not_a_policy(tmp_path: Path, content: str) -> None:
    path = tmp_path / "placement.yaml"
    path.write_text(content, encoding="utf-8")
    assert "invalid placement policy: (root)" in load_error(path)


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read placement policy" in load_error(tmp_path / "absent.yaml")


def test_a_directory(tmp_path: Path) -> None:
    assert "cannot read placement policy" in load_error(tmp_path)


def test_empty_band_list(tmp_path: Path) -> None:
    message = changed(tmp_path, lambda raw: rule(raw, "phq9_severe").update(bands=[]))
    assert "instrument_rules.2.bands: Value error, list at least one band" in message
