"""`make audit` (part of `make test`): known vulnerabilities in the pinned dependencies, by pip-audit.

    python -m tools.check.audit [--lock requirements.lock] [--exceptions audit-exceptions.yaml]

pip-audit checks every pin of requirements.lock against its vulnerability service (PyPI's, by default). A
known vulnerability fails the run unless `audit-exceptions.yaml` documents it: its id, the package, why it does
not apply or what is done about it, and until when the exception holds (an expired one fails again).

A package the service could not look up is not a pass: when it could look up none (the service is out of
reach, as on a machine whose network reaches only the package index), the run says so in one line and does
not fail, since nothing was checked; when it looked up some but not others, it fails naming them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Finding:
    package: str
    version: str
    vulnerability: str
    fixed_in: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    lines: list[str]


def findings(report: dict[str, Any]) -> tuple[list[Finding], list[str], int]:
    """(vulnerabilities found, packages that could not be looked up, packages looked up) of a pip-audit report."""
    found, unchecked, checked = [], [], 0
    for dependency in report.get("dependencies", []):
        if "skip_reason" in dependency:
            unchecked.append(dependency["name"])
            continue
        checked += 1
        for vulnerability in dependency.get("vulns", []):
            found.append(Finding(dependency["name"], dependency.get("version", "?"), vulnerability["id"],
                                 tuple(vulnerability.get("fix_versions", ()))))  # fmt: skip
    return found, unchecked, checked


def judge(report: dict[str, Any], exceptions: Sequence[dict[str, Any]], today: date) -> Verdict:
    """Whether the pinned dependencies pass, and the lines that say why."""
    found, unchecked, checked = findings(report)
    if checked == 0 and unchecked:
        said = (f"audit: NOT CHECKED: the vulnerability service looked up none of the {len(unchecked)} pinned "
                "packages (out of reach from this machine); run `make audit` where it answers")  # fmt: skip
        return Verdict(True, [said])
    excused = {(entry["id"], entry["package"].lower()): entry for entry in exceptions}
    lines, ok = [], True
    for finding in found:
        entry = excused.get((finding.vulnerability, finding.package.lower()))
        if entry is not None and date.fromisoformat(str(entry["until"])) >= today:
            lines.append(f"audit: excused {finding.vulnerability} in {finding.package} {finding.version} until "
                         f"{entry['until']}: {entry['reason']}")  # fmt: skip
            continue
        ok = False
        fix = f"; fixed in {', '.join(finding.fixed_in)}" if finding.fixed_in else ""
        expired = " (its exception has expired)" if entry is not None else ""
        lines.append(f"audit: {finding.vulnerability} in {finding.package} {finding.version}{fix}{expired}")
    if unchecked:
        ok = False
        lines.append(f"audit: not looked up, so not checked: {', '.join(sorted(unchecked))}")
    lines.append(f"audit: {checked} pinned packages checked, {len(found)} known vulnerabilities, "
                 f"{'pass' if ok else 'FAIL'}")  # fmt: skip
    return Verdict(ok, lines)


def load_exceptions(path: Path) -> list[dict[str, Any]]:
    """The documented exceptions; each needs an id, a package, a reason and an until date."""
    if not path.exists():
        return []
    entries = yaml.safe_load(path.read_text()) or []
    for number, entry in enumerate(entries, start=1):
        missing = [key for key in ("id", "package", "reason", "until") if not entry.get(key)]
        if missing:
            raise SystemExit(f"{path}: exception {number} lacks {', '.join(missing)}")
    return list(entries)


def run_pip_audit(lock: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "pip_audit", "--requirement", str(lock), "--no-deps", "--disable-pip",
         "--progress-spinner", "off", "--format", "json"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    try:
        report: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"pip-audit did not report (exit {result.returncode}):\n{result.stderr[-2000:]}") from None
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--exceptions", type=Path, default=ROOT / "audit-exceptions.yaml")
    args = parser.parse_args(argv)
    verdict = judge(run_pip_audit(args.lock), load_exceptions(args.exceptions), date.today())
    print("\n".join(verdict.lines))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
