"""`make mutate`: a mutant that survives fails the run unless mutation-equivalents.yaml lists it, keyed by module,
function and the statement before and after (no line numbers, no mutmut ids), and a listed one that no longer
survives fails it too."""

from __future__ import annotations

import subprocess
import tomllib

import pytest
from mutmut.mutation.file_mutation import mutate_file_contents

from tools.check.mutate import (
    EQUIVALENTS,
    ROOT,
    Equivalent,
    Mutation,
    Outcome,
    configured_modules,
    describe,
    function_of,
    judge,
    load_equivalents,
    select,
)

SOURCE = '''
import asyncio


def pending(count: int) -> bool:
    """A docstring."""
    return count > 0  # a comment


class Relay:
    async def publish(self, records: list[str]) -> int:
        sent = 0
        for record in records:
            await asyncio.sleep(0)
            sent += 1
        return sent
'''
PATH = "services/common/example.py"


def mutations() -> dict[str, Mutation]:
    mutated = mutate_file_contents(PATH, SOURCE)
    names = [f"services.common.example.{name}" for name in mutated.mutant_names]
    return describe(mutated.code, PATH, names)


def test_a_mutant_is_described_by_its_function_and_statement_as_written_by_ast_unparse() -> None:
    described = set(mutations().values())
    assert Mutation(PATH, "pending", ("return count > 0",), ("return count >= 0",)) in described
    assert Mutation(PATH, "Relay.publish", ("sent += 1",), ("sent -= 1",)) in described
    assert Mutation(PATH, "Relay.publish", ("sent += 1",), ("sent = 1",)) in described
    assert all(m.before and m.before != m.after for m in described), "every mutant changes a statement"


def test_function_names_read_from_mutmut_names() -> None:
    assert function_of("services.common.outbox.xǁOutboxRelayǁ_relay_claimed__mutmut_12") == "OutboxRelay._relay_claimed"
    assert function_of("stepwise_contract.envelope.x_to_kafka__mutmut_3") == "to_kafka"


def outcome(status: str, mutation: Mutation, number: int = 1) -> Outcome:
    return Outcome(f"services.common.example.x_pending__mutmut_{number}", status, mutation)


SURVIVOR = Mutation(PATH, "pending", ("return count > 0",), ("return count >= 0",))
KILLED = Mutation(PATH, "pending", ("return count > 0",), ("return count > 1",))


def test_killed_and_timed_out_mutants_pass_and_are_scored() -> None:
    verdict = judge([outcome("killed", KILLED), outcome("timeout", SURVIVOR, 2)], [], [PATH])
    assert verdict.ok
    assert [(s.killed, s.total, s.equivalent) for s in verdict.scores] == [(2, 2, 0)]


def test_a_survivor_not_listed_fails_the_run_with_the_entry_to_write() -> None:
    verdict = judge([outcome("killed", KILLED), outcome("survived", SURVIVOR, 2)], [], [PATH])
    assert not verdict.ok
    text = "\n".join(verdict.lines)
    assert "NOT KILLED (survived): services/common/example.py pending" in text
    assert "      - return count > 0\n      + return count >= 0" in text
    assert "- function: pending\n  from: return count > 0\n  to: return count >= 0\n  why: TODO" in text
    assert verdict.lines[-1].endswith("FAIL")


def test_a_listed_survivor_passes_and_counts_as_equivalent() -> None:
    verdict = judge([outcome("survived", SURVIVOR)], [Equivalent(SURVIVOR, "because")], [PATH])
    assert verdict.ok
    assert [(s.killed, s.equivalent, s.not_killed) for s in verdict.scores] == [(0, 1, 0)]


def test_a_listed_mutant_that_no_longer_survives_fails_the_run() -> None:
    verdict = judge([outcome("killed", SURVIVOR)], [Equivalent(SURVIVOR, "because")], [PATH])
    assert not verdict.ok
    assert any("LISTED BUT NOT SURVIVING" in line for line in verdict.lines)


def test_entries_of_modules_not_run_are_not_judged() -> None:
    assert judge([], [Equivalent(SURVIVOR, "because")], ["services/common/other.py"]).ok


def test_a_suspicious_or_unchecked_mutant_cannot_be_listed_away() -> None:
    verdict = judge([outcome("not checked", SURVIVOR)], [Equivalent(SURVIVOR, "because")], [PATH])
    assert not verdict.ok


def test_modules_are_picked_by_the_end_of_their_dotted_name() -> None:
    modules = configured_modules()
    assert select(modules, ["outbox"]) == ["services/common/outbox.py"]
    assert select(modules, ["care_plan.changes"]) == ["services/care_plan/changes.py"]
    assert len(select(modules, ["changes"])) == 3
    assert select(modules, []) == modules
    with pytest.raises(SystemExit, match="no module 'box'"):
        select(modules, ["box"])


def test_the_modules_that_carry_the_guarantees_are_mutated() -> None:
    assert set(configured_modules()) == {
        "services/common/outbox.py", "services/common/change_path.py", "services/common/consumer.py",
        "services/common/idempotency.py", "services/common/replay.py", "services/notifications/dispatcher.py",
        "services/intake/changes.py",
        "services/care_plan/changes.py", "services/notifications/changes.py", "stepwise_contract/envelope.py",
    }  # fmt: skip


def test_every_listed_equivalent_names_a_mutated_module_and_says_why() -> None:
    for equivalent in load_equivalents(EQUIVALENTS, configured_modules()):
        assert equivalent.why and "TODO" not in equivalent.why, equivalent
        assert equivalent.mutation.before, equivalent


def test_no_mutant_is_hidden_by_a_pragma() -> None:
    """Equivalents are listed, with their reason, in mutation-equivalents.yaml; never skipped in the code."""
    for path in configured_modules():
        source = ROOT / path if path.startswith("services") else ROOT / "shared" / path
        assert "no mutate" not in source.read_text(), path


def test_mutmuts_copy_is_kept_out_of_git_and_the_tools() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "mutants/services/common/outbox.py"], cwd=ROOT, check=False)
    assert ignored.returncode == 0
    # Never the contract's link: hatchling reads .gitignore, and would leave shared/stepwise_contract out of the
    # editable install (the link is made and removed by each run instead).
    patterns = [line for line in (ROOT / ".gitignore").read_text().splitlines() if not line.startswith("#")]
    assert not [pattern for pattern in patterns if "stepwise_contract" in pattern]
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert {"mutants", "./stepwise_contract"} <= set(config["ruff"]["extend-exclude"])
    assert "mutants" in config["pytest"]["ini_options"]["norecursedirs"]
    assert {"^mutants/", "^stepwise_contract/"} <= set(config["mypy"]["exclude"])
