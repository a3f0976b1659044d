"""`make audit`: a known vulnerability in a pinned dependency fails the run unless an exception documents it."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tools.check.audit import judge, load_exceptions

TODAY = date(2026, 12, 4)
VULNERABLE = {"name": "jinja2", "version": "3.1.6", "vulns": [{"id": "GHSA-aaaa-bbbb-cccc", "fix_versions": ["3.1.7"]}]}
CLEAN = {"name": "httpx", "version": "0.28.1", "vulns": []}


def report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


def test_clean_pins_pass() -> None:
    verdict = judge(report(CLEAN), [], TODAY)
    assert verdict.ok and verdict.lines == ["audit: 1 pinned packages checked, 0 known vulnerabilities, pass"]


def test_a_known_vulnerability_fails_naming_it_and_its_fix() -> None:
    verdict = judge(report(CLEAN, VULNERABLE), [], TODAY)
    assert not verdict.ok
    assert "audit: GHSA-aaaa-bbbb-cccc in jinja2 3.1.6; fixed in 3.1.7" in verdict.lines


def test_a_documented_exception_lets_it_pass_until_it_expires() -> None:
    exception = {"id": "GHSA-aaaa-bbbb-cccc", "package": "Jinja2", "reason": "sandbox not used", "until": "2027-01-31"}
    assert judge(report(VULNERABLE), [exception], TODAY).ok
    expired = judge(report(VULNERABLE), [exception], date(2027, 2, 1))
    assert not expired.ok and "(its exception has expired)" in expired.lines[0]


def test_packages_the_service_could_not_look_up_are_not_a_pass() -> None:
    skipped = {"name": "aiokafka", "skip_reason": "Dependency not found on PyPI and could not be audited"}
    verdict = judge(report(CLEAN, skipped), [], TODAY)
    assert not verdict.ok and "audit: not looked up, so not checked: aiokafka" in verdict.lines


def test_a_service_out_of_reach_is_said_plainly_and_checks_nothing() -> None:
    skipped = [{"name": name, "skip_reason": "could not be audited"} for name in ("aiokafka", "httpx")]
    verdict = judge(report(*skipped), [], TODAY)
    assert verdict.ok and verdict.lines[0].startswith("audit: NOT CHECKED: the vulnerability service looked up none")


def test_an_exception_without_its_reason_stops_the_run(tmp_path: Path) -> None:
    path = tmp_path / "audit-exceptions.yaml"
    path.write_text("- {id: GHSA-aaaa-bbbb-cccc, package: jinja2, until: 2027-01-31}\n")
    with pytest.raises(SystemExit, match="exception 1 lacks reason"):
        load_exceptions(path)


def test_the_repositorys_exceptions_file_loads() -> None:
    assert load_exceptions(Path(__file__).resolve().parents[3] / "audit-exceptions.yaml") == []
