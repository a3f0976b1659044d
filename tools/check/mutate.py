"""`make mutate` (not part of `make test`): mutation testing, by mutmut, of the modules that carry the guarantees.

    make mutate [MODULES="outbox idempotency"]
    python -m tools.check.mutate [--modules outbox,idempotency] [--jobs N] [--keep]

mutmut (configured in pyproject.toml, ``[tool.mutmut]``; the modules are its ``only_mutate``) copies the code into
``mutants/`` and makes every mutant of those modules: one small change each (an operator, a constant, an argument
left out ...). A first, clean run of the fast tiers (unit, service, the event checklist) records which tests reach
which function; each mutant then runs against those tests only. A mutant that no test fails survived, and fails
this run unless ``mutation-equivalents.yaml`` lists it, with the reason no test can tell it from the code.

An entry names the module, the function (``Class.method``) and the statement before and after the change, as
``ast.unparse`` writes them (no line numbers, comments or layout; mutmut's numbered mutant names change whenever
the function does), so it stays readable and true across refactors that leave the statement alone. An entry that
matches no surviving mutant of a module this run covered (a test kills it now, or its statement changed) fails
the run too, so the list stays true. The run prints, for every mutant not killed, the entry to paste if (and only
if) it is equivalent.

MODULES picks modules by the end of their dotted name (``outbox``, ``care_plan.changes``; ``changes`` is all
three). ``--keep`` reuses ``mutants/`` of the last run (its record of which test reaches which function, which a
changed test can make stale); by default the run starts afresh.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "mutants"
EQUIVALENTS = ROOT / "mutation-equivalents.yaml"
CONTRACT_LINK = ROOT / "stepwise_contract"
"""mutmut names a mutant by the path of its module, so the contract package is mutated through this link (made
for the run, removed after it) to be named ``stepwise_contract.…`` as it is imported."""
CONTRACT_PACKAGE = Path("shared") / "stepwise_contract"
PROGRESS_EVERY = 60.0
AGAIN = 2
"""How many times mutants mutmut gave no verdict on are run again."""

KILLED = frozenset({"killed", "timeout"})
"""A mutant whose tests fail, or never end (mutmut stops them at a CPU-time limit): detected."""
NOT_KILLED = frozenset({"survived", "no tests"})
"""What an entry may list: a mutant that every test reaching it passes, or one that no fast test reaches."""


@dataclass(frozen=True)
class Mutation:
    """What a mutant changed, keyed as ``mutation-equivalents.yaml`` lists it."""

    path: str
    function: str
    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    mutant: str
    """mutmut's name, e.g. ``services.common.outbox.xǁOutboxRelayǁ_relay_claimed__mutmut_12``."""
    status: str
    mutation: Mutation


@dataclass(frozen=True)
class Equivalent:
    mutation: Mutation
    why: str


@dataclass(frozen=True)
class Score:
    path: str
    total: int
    killed: int
    equivalent: int
    not_killed: int


@dataclass(frozen=True)
class Verdict:
    ok: bool
    scores: list[Score]
    lines: list[str]


def configured_modules(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The paths of the modules mutmut mutates (``[tool.mutmut] only_mutate``)."""
    return list(tomllib.loads(pyproject.read_text())["tool"]["mutmut"]["only_mutate"])


def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def select(paths: Sequence[str], wanted: Iterable[str]) -> list[str]:
    """The module paths named by ``wanted`` (each the end of a dotted module name, or a path); all when none."""
    words = [word for word in wanted if word]
    if not words:
        return list(paths)
    chosen = []
    for word in words:
        matches = [p for p in paths if p == word or f".{module_name(p)}".endswith(f".{word}")]
        if not matches:
            names = ", ".join(module_name(p) for p in paths)
            raise SystemExit(f"mutate: no module {word!r} is mutated; the modules are: {names}")
        chosen += [p for p in matches if p not in chosen]
    return [p for p in paths if p in chosen]


def function_of(mutant: str) -> str:
    """``Class.method`` or ``function``, from mutmut's mangled name of a mutant."""
    mangled = mutant.rpartition(".")[2].partition("__mutmut_")[0]
    if mangled.startswith("xǁ"):
        return mangled[2:].replace("ǁ", ".")
    return mangled.removeprefix("x_")


def _generated_functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    for node in tree.body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        for member in members:
            if isinstance(member, ast.FunctionDef | ast.AsyncFunctionDef):
                functions[member.name] = member
    return functions


def _statements(function: ast.FunctionDef | ast.AsyncFunctionDef, name: str) -> list[str]:
    function.name = name  # the original's and each mutant's under the function's own name
    function.decorator_list = []
    return [line.strip() for line in ast.unparse(function).splitlines()]


def describe(mutated_source: str, path: str, mutants: Iterable[str]) -> dict[str, Mutation]:
    """What each of ``mutants`` changed in its function, from the file mutmut wrote (which holds, for every
    function, the original as ``<mangled>__mutmut_orig`` and each mutant as ``<mangled>__mutmut_<n>``)."""
    generated = _generated_functions(ast.parse(mutated_source))
    described = {}
    for mutant in mutants:
        own = mutant.rpartition(".")[2]
        original = generated[own.partition("__mutmut_")[0] + "__mutmut_orig"]
        name = function_of(mutant).rpartition(".")[2]
        before, after = _statements(original, name), _statements(generated[own], name)
        removed: list[str] = []
        added: list[str] = []
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
            if tag != "equal":
                removed += before[i1:i2]
                added += after[j1:j2]
        described[mutant] = Mutation(path, function_of(mutant), tuple(removed), tuple(added))
    return described


def _lines(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(line) for line in value)


def load_equivalents(path: Path, modules: Sequence[str]) -> list[Equivalent]:
    """The listed equivalent mutants: per module path, entries with a function, from, to and why."""
    if not path.exists():
        return []
    listed = yaml.safe_load(path.read_text()) or {}
    equivalents = []
    for module, entries in listed.items():
        if module not in modules:
            raise SystemExit(f"{path}: {module} is not a mutated module (pyproject.toml, [tool.mutmut] only_mutate)")
        for number, entry in enumerate(entries or [], start=1):
            missing = [key for key in ("function", "from", "to", "why") if key not in entry or not entry["why"]]
            if missing:
                raise SystemExit(f"{path}: {module}, entry {number} lacks {', '.join(missing)}")
            mutation = Mutation(module, entry["function"], _lines(entry["from"]), _lines(entry["to"]))
            equivalents.append(Equivalent(mutation, str(entry["why"]).strip()))
    return equivalents


def entry_for(mutation: Mutation) -> dict[str, Any]:
    """The ``mutation-equivalents.yaml`` entry that lists ``mutation`` (its ``why`` left to write)."""

    def one_or_list(lines: tuple[str, ...]) -> str | list[str]:
        return lines[0] if len(lines) == 1 else list(lines)

    return {"function": mutation.function, "from": one_or_list(mutation.before),
            "to": one_or_list(mutation.after), "why": "TODO why no test can tell it from the code"}  # fmt: skip


SHOWN = 50
"""Characters shown either side of the change in a long statement (the entry to paste has it whole)."""


def _shown(mutation: Mutation) -> list[str]:
    if len(mutation.before) == 1 and len(mutation.after) == 1:
        before, after = mutation.before[0], mutation.after[0]
        same = _common(before, after)
        tail = _common(before[same:][::-1], after[same:][::-1])
        start = max(0, same - SHOWN)
        return [f"      - {_cut(before, start, len(before) - tail + SHOWN)}",
                f"      + {_cut(after, start, len(after) - tail + SHOWN)}"]  # fmt: skip
    return [f"      - {line}" for line in mutation.before] + [f"      + {line}" for line in mutation.after]


def _common(one: str, other: str) -> int:
    """How many characters the two start with alike."""
    return next((n for n, (a, b) in enumerate(zip(one, other, strict=False)) if a != b), min(len(one), len(other)))


def _cut(line: str, start: int, end: int) -> str:
    return ("…" if start > 0 else "") + line[start:end] + ("…" if end < len(line) else "")


def judge(outcomes: Sequence[Outcome], equivalents: Sequence[Equivalent], paths: Sequence[str]) -> Verdict:
    """Whether every mutant of the modules at ``paths`` was killed or is listed as equivalent, with their scores."""
    listed = {equivalent.mutation for equivalent in equivalents if equivalent.mutation.path in paths}
    matched: set[Mutation] = set()
    scores, lines, unlisted = [], [], []
    ok = True
    for path in paths:
        mine = [outcome for outcome in outcomes if outcome.mutation.path == path]
        killed = sum(outcome.status in KILLED for outcome in mine)
        equivalent = 0
        for outcome in mine:
            if outcome.status in KILLED:
                continue
            if outcome.status in NOT_KILLED and outcome.mutation in listed:
                matched.add(outcome.mutation)
                equivalent += 1
                continue
            ok = False
            unlisted.append(outcome)
            lines.append(f"mutate: NOT KILLED ({outcome.status}): {path} {outcome.mutation.function} "
                         f"[{outcome.mutant}]")  # fmt: skip
            lines += _shown(outcome.mutation)
        scores.append(Score(path, len(mine), killed, equivalent, len(mine) - killed - equivalent))
    for mutation in sorted(listed - matched, key=lambda m: (m.path, m.function)):
        ok = False
        lines.append(f"mutate: LISTED BUT NOT SURVIVING: {mutation.path} {mutation.function} (a test kills it now, "
                     f"or the statement changed): remove or update its entry in {EQUIVALENTS.name}")  # fmt: skip
        lines += _shown(mutation)
    for score in scores:
        share = f"{100 * score.killed / score.total:.1f}%" if score.total else "-"
        lines.append(f"mutate: {score.path}: {score.killed}/{score.total} killed ({share}), {score.equivalent} "
                     f"listed as equivalent, {score.not_killed} not killed")  # fmt: skip
    if unlisted:
        by_path: dict[str, list[dict[str, Any]]] = {}
        for outcome in unlisted:
            by_path.setdefault(outcome.mutation.path, []).append(entry_for(outcome.mutation))
        lines.append(f"mutate: kill each mutant not killed with a test; only one that no test can tell from the code "
                     f"goes in {EQUIVALENTS.name}, e.g.:")  # fmt: skip
        lines += yaml.safe_dump(by_path, sort_keys=False, allow_unicode=True, width=1000).splitlines()
    total = sum(score.total for score in scores)
    lines.append(f"mutate: {sum(s.killed for s in scores)}/{total} killed, {sum(s.equivalent for s in scores)} "
                 f"listed as equivalent, {'pass' if ok else 'FAIL'}")  # fmt: skip
    return Verdict(ok, scores, lines)


def read_outcomes(paths: Sequence[str], mutants_dir: Path = MUTANTS) -> list[Outcome]:
    """What mutmut recorded for every mutant of the modules at ``paths``."""
    from mutmut.stats import status_by_exit_code

    outcomes = []
    for path in paths:
        meta = mutants_dir / f"{path}.meta"
        if not meta.exists():
            raise SystemExit(f"mutate: mutmut recorded nothing for {path} ({meta} is missing)")
        exit_codes: Mapping[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        described = describe((mutants_dir / path).read_text(), path, exit_codes)
        outcomes += [
            Outcome(mutant, status_by_exit_code[code], described[mutant]) for mutant, code in exit_codes.items()
        ]
    return outcomes


def _link_contract() -> bool:
    """Make the link the contract's module is mutated through; False if it was there already."""
    if CONTRACT_LINK.is_symlink() and CONTRACT_LINK.resolve() == (ROOT / CONTRACT_PACKAGE).resolve():
        return False
    if CONTRACT_LINK.exists() or CONTRACT_LINK.is_symlink():
        raise SystemExit(f"mutate: {CONTRACT_LINK} is in the way (it should be a link to {CONTRACT_PACKAGE})")
    CONTRACT_LINK.symlink_to(CONTRACT_PACKAGE, target_is_directory=True)
    return True


def _mutmut() -> str:
    beside = Path(sys.executable).parent / "mutmut"
    found = str(beside) if beside.exists() else shutil.which("mutmut")
    if found is None:
        raise SystemExit("mutate: mutmut is not installed (make install)")
    return found


def unchecked(paths: Sequence[str], mutants_dir: Path = MUTANTS) -> list[str]:
    """The mutants of the modules at ``paths`` that mutmut has no verdict on."""
    names = []
    for path in paths:
        meta = mutants_dir / f"{path}.meta"
        if meta.exists():
            names += [name for name, code in json.loads(meta.read_text())["exit_code_by_key"].items() if code is None]
    return names


def run_mutmut(names: Sequence[str], jobs: int, log: TextIO) -> int:
    """``mutmut run`` for the mutants ``names`` (or patterns); its output goes to ``log``, a line of progress to
    the terminal every minute."""
    command = [_mutmut(), "run", "--max-children", str(jobs), *names]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        assert process.stdout is not None
        last, shown, pending = "", time.monotonic(), b""
        while chunk := os.read(process.stdout.fileno(), 4096):
            log.write(chunk.decode(errors="replace").replace("\r", "\n"))
            pending += chunk
            *done, pending = pending.replace(b"\r", b"\n").split(b"\n")
            last = next((line.decode(errors="replace").strip() for line in reversed(done) if line.strip()), last)
            if time.monotonic() - shown >= PROGRESS_EVERY:
                print(f"mutate: {last}", flush=True)
                shown = time.monotonic()
        return process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modules", default="", help="modules to mutate, by the end of their dotted name")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants run at once")
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ of the last run")
    args = parser.parse_args(argv)
    modules = configured_modules()
    paths = select(modules, args.modules.replace(",", " ").split())
    equivalents = load_equivalents(EQUIVALENTS, modules)
    if not args.keep:
        shutil.rmtree(MUTANTS, ignore_errors=True)
    MUTANTS.mkdir(exist_ok=True)
    linked = _link_contract()
    started = time.monotonic()
    try:
        with (MUTANTS / "mutmut.log").open("a") as log:
            print(f"mutate: {', '.join(paths)}; mutmut's output: {log.name}", flush=True)
            exit_code = run_mutmut([f"{module_name(path)}.*" for path in paths], args.jobs, log)
            for _ in range(AGAIN):
                left = unchecked(paths)
                if exit_code != 0 or not left:
                    break
                # mutmut 3.8 can end a run with mutants it handed to its fork server and never heard back about
                print(f"mutate: mutmut gave no verdict on {len(left)} mutants: running them again", flush=True)
                exit_code = run_mutmut(left, args.jobs, log)
    finally:
        if linked:
            CONTRACT_LINK.unlink()
    if exit_code != 0:
        print(f"mutate: mutmut failed (exit {exit_code}); see {MUTANTS / 'mutmut.log'}")
        return 1
    outcomes = read_outcomes(paths)
    verdict = judge(outcomes, equivalents, paths)
    print("\n".join(verdict.lines))
    kinds = Counter(outcome.status for outcome in outcomes)
    print(f"mutate: {dict(sorted(kinds.items()))} in {time.monotonic() - started:.0f} s")
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
