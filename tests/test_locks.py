"""The production lock (requirements.prod.lock, `make lock`) covers every runtime dependency, each with its hashes,
at the version every install runs (requirements.lock); the contract ships its licence and schemas."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools.generate.prod_lock import CONTRACT, DEV_LOCK, LOCK, ROOT

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", re.MULTILINE)


def pins(path: Path) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(path.read_text())}


def runtime_closure() -> set[str]:
    """Every distribution the installed services and contract need at run time (no extras of their own), by name."""
    found: set[str] = set()
    wanted = [Requirement(text) for text in metadata.requires("stepwise") or []]
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        for extra in requirement.extras:  # what the extra brings, e.g. pyjwt[crypto]: cryptography
            wanted += [brought(text) for text in metadata.requires(name) or [] if brings(text, extra)]
        if name not in found:
            found.add(name)
            wanted += [Requirement(text) for text in metadata.requires(name) or []]
    return found


def brings(text: str, extra: str) -> bool:
    marker = Requirement(text).marker
    return marker is not None and marker.evaluate({"extra": extra}) and not marker.evaluate({"extra": ""})


def brought(text: str) -> Requirement:
    requirement = Requirement(text)
    requirement.marker = None
    return requirement


def test_the_production_lock_pins_every_runtime_dependency_with_hashes_at_the_dev_locks_versions() -> None:
    locked = pins(LOCK)
    needed = runtime_closure() - {canonicalize_name(CONTRACT), "stepwise"}
    assert "pydantic-core" in needed and "aiokafka" in needed and "cryptography" in needed  # the closure is deep
    assert needed - set(locked) == set(), "run `make lock`"
    assert set(locked) - needed == set(), "the production lock holds what nothing needs at run time: `make lock`"
    dev = pins(DEV_LOCK)
    assert {name: version for name, version in locked.items() if dev.get(name) != version} == {}
    for name, version in locked.items():
        assert metadata.version(name) == version, name
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    unhashed = [entry.split("==")[0] for entry in entries if entry.strip() and "--hash=sha256:" not in entry]
    assert unhashed == []


def test_the_licence_is_at_the_root_and_in_the_contract() -> None:
    licence = (ROOT / "LICENSE").read_text()
    assert licence.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in licence
    assert (ROOT / "shared" / "LICENSE").read_text() == licence
    contract = metadata.metadata(CONTRACT)
    assert contract["License-Expression"] == "Apache-2.0"
    assert (ROOT / "shared" / "CHANGELOG.md").read_text().startswith("# Changelog")
    assert f"## {metadata.version(CONTRACT)}" in (ROOT / "shared" / "CHANGELOG.md").read_text()
