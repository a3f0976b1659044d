"""The services' code stays in short, simple functions: none rated D or worse for cyclomatic complexity (radon),
none over 40 lines unless a comment says why.

A function's length counts from its ``def`` line to its last line (decorators left out). A longer one is allowed
when the line just above it (above its decorators, if any) is a comment starting ``# Long because``, or its
docstring says ``Long because …``: the why is written where the next reader looks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radon.complexity import cc_rank, cc_visit

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"
MOST_LINES = 40
WHY = "long because"


def _sources() -> list[Path]:
    return sorted(path for path in SERVICES.rglob("*.py") if "__pycache__" not in path.parts)


def _where(path: Path, line: int, name: str) -> str:
    return f"{path.relative_to(ROOT)}:{line} {name}"


def _rated(blocks: list[Any]) -> Iterator[tuple[int, str, int]]:
    """Line, name and complexity of every function radon rated, methods and nested functions included."""
    for block in blocks:
        if hasattr(block, "closures"):  # a function (a class has none)
            yield block.lineno, block.name, block.complexity
            yield from _rated(block.closures)


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _says_why(function: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    first = min([function.lineno, *(decorator.lineno for decorator in function.decorator_list)])
    above = lines[first - 2].strip().lower() if first >= 2 else ""
    docstring = (ast.get_docstring(function) or "").lower()
    return above.startswith(f"# {WHY}") or WHY in docstring


def test_no_function_in_services_is_rated_d_or_worse() -> None:
    offenders = [
        f"{_where(path, line, name)}: {cc_rank(complexity)} ({complexity})"
        for path in _sources()
        for line, name, complexity in _rated(cc_visit(path.read_text()))
        if cc_rank(complexity) >= "D"
    ]
    assert not offenders, "split these into named steps (radon cc, rank D or worse):\n" + "\n".join(offenders)


def test_no_function_in_services_is_over_40_lines_without_saying_why() -> None:
    offenders = []
    for path in _sources():
        text = path.read_text()
        lines = text.splitlines()
        for function in _functions(ast.parse(text)):
            length = (function.end_lineno or function.lineno) - function.lineno + 1
            if length > MOST_LINES and not _says_why(function, lines):
                offenders.append(f"{_where(path, function.lineno, function.name)}: {length} lines")
    assert not offenders, (
        f"split these (over {MOST_LINES} lines), or say why just above the def (`# Long because …`):\n"
        + "\n".join(offenders)
    )


def test_a_long_function_passes_only_with_its_why_above_it_or_in_its_docstring() -> None:
    body = "".join(f"    x{n} = {n}\n" for n in range(MOST_LINES))
    plain = f"def f() -> None:\n{body}"
    cases = {
        plain: False,
        f"# Long because one table reads better whole.\n{plain}": True,
        f"# Long because of the decorator too.\n@decorated\n{plain}": True,
        f'def f() -> None:\n    """Long because one table reads better whole."""\n{body}': True,
        f"# a comment that says nothing\n{plain}": False,
    }
    for source, allowed in cases.items():
        [function] = _functions(ast.parse(source))
        assert _says_why(function, source.splitlines()) is allowed, source.splitlines()[0]
