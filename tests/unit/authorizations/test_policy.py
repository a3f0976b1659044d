"""The utilization-review policy: its defaults agree with care_plan's, its payer rules name their source, and a
mistake in it is refused at load naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.authorizations.domain.policy import DEFAULT_POLICY_FILE, load_policy
from services.care_plan.domain.policy import load_policy as load_care_plan_policy
from services.common.policy_file import PolicyError


def test_the_default_codes_and_closures_are_care_plans() -> None:
    """One clinic, two files (services share none): the defaults must say the same."""
    ours, care_plan = load_policy(), load_care_plan_policy()
    assert ours.closures == frozenset(care_plan.closures)
    for level, settings in care_plan.levels.items():
        per_diem = [settings.per_diem.code] if settings.per_diem else []
        assert set(per_diem) <= set(ours.codes(level)), level
    session_codes = {code.code for kind in care_plan.session_kinds.values() for code in kind.codes}
    assert all(session_codes <= set(ours.codes(level)) for level in care_plan.levels)


def test_medicare_iop_certification_is_a_sourced_rule() -> None:
    medicare = load_policy().payer("medicare")
    assert medicare is not None and medicare.certification is not None
    rule = medicare.certification
    assert (rule.min_hours_per_week, rule.recertify_every_months) == (9, 2) and "424.24" in rule.source


def test_a_payer_id_not_in_lower_case_is_refused(tmp_path: Path) -> None:
    wrong = tmp_path / "policy.yaml"
    wrong.write_text(DEFAULT_POLICY_FILE.read_text().replace("  carelon:", "  Carelon:"))
    with pytest.raises(PolicyError, match="lower case"):
        load_policy(wrong)
