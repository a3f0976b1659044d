"""The treatment-plan form (pure): the plan care_plan answers as the form's rows, the submitted form back as rows
(with a row added or removed), the rows as the body of care_plan's ``PUT …/treatment-plan``, and care_plan's field
errors (422 ``loc``) as the form fields they name.

A row's fields are named by its place: ``p0.statement`` (problem 1), ``p0.g1.in_own_words`` (its goal 2),
``p0.g1.o0.target_date`` (that goal's objective 1), ``p0.g1.o0.i2.modality`` (that objective's intervention 3).
The form holds no rule of the plan's: what was typed goes to care_plan as typed, and care_plan says what is wrong,
field by field. Only an intervention row left wholly blank is left out (an objective may have none), and an
objective measured by no instrument has no target."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Rows = list[dict[str, Any]]
"""Problems, each with its ``goals``, each with its ``objectives``, each with its ``interventions``: text as typed."""

LEVELS = ("p", "g", "o", "i")
CHILDREN = {"p": "goals", "g": "objectives", "o": "interventions"}
"""Each row kind's rows beneath it."""
FIELDS = {
    "p": ("statement",),
    "g": ("in_own_words",),
    "o": ("statement", "target_date", "instrument", "below", "in_a_row"),
    "i": ("modality", "per_week", "responsible_role"),
}
TARGET = ("instrument", "below", "in_a_row")
FIELD = re.compile(r"^p(\d{1,2})(?:\.g(\d{1,2}))?(?:\.o(\d{1,2}))?(?:\.i(\d{1,2}))?\.([a-z_]+)$")
PLACE = re.compile(r"^p\d{1,2}(?:\.g\d{1,2})?(?:\.o\d{1,2})?(?:\.i\d{1,2})?$")
MOST = 20
"""Rows of one kind under one parent the form keeps (care_plan's own bounds are lower: it says so)."""


def blank(kind: str) -> dict[str, Any]:
    """An empty row of ``kind`` with one empty row of each kind beneath it."""
    row: dict[str, Any] = dict.fromkeys(FIELDS[kind], "")
    if kind in CHILDREN:
        row[CHILDREN[kind]] = [blank(LEVELS[LEVELS.index(kind) + 1])]
    return row


def empty_plan() -> Rows:
    return [blank("p")]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def from_version(problems: Sequence[Mapping[str, Any]]) -> Rows:
    """The rows of a version care_plan answered (``current.problems``)."""
    return [{"statement": _text(problem.get("statement")), "goals": [_goal(goal) for goal in problem.get("goals", [])]}
            for problem in problems] or empty_plan()  # fmt: skip


def _goal(goal: Mapping[str, Any]) -> dict[str, Any]:
    return {"in_own_words": _text(goal.get("in_own_words")),
            "objectives": [_objective(objective) for objective in goal.get("objectives", [])]}  # fmt: skip


def _objective(objective: Mapping[str, Any]) -> dict[str, Any]:
    target = objective.get("target") or {}
    row = {name: _text(objective.get(name)) for name in ("statement", "target_date")}
    row |= {name: _text(target.get(name)) for name in TARGET}
    given = objective.get("interventions", [])
    return row | {"interventions": [{name: _text(each.get(name)) for name in FIELDS["i"]} for each in given]}


def from_form(form: Mapping[str, str]) -> Rows:
    """The rows the submitted form holds, in their places' order (a place's number orders; gaps close up)."""
    tree: dict[int, dict[str, Any]] = {}
    for name, value in form.items():
        found = FIELD.match(name)
        if found is None:
            continue
        *places, field = found.groups()
        numbers = [int(place) for place in places if place is not None]
        if places[: len(numbers)] == [str(n) for n in numbers] and field in FIELDS[LEVELS[len(numbers) - 1]]:
            _node(tree, numbers)[field] = value
    return _rows(tree, "p") or empty_plan()


def _node(tree: dict[int, dict[str, Any]], numbers: list[int]) -> dict[str, Any]:
    level: dict[int, dict[str, Any]] = tree
    node: dict[str, Any] = {}
    for number in numbers:
        node = level.setdefault(number, {"_": {}})
        level = node["_"]
    return node


def _rows(level: dict[int, dict[str, Any]], kind: str) -> Rows:
    rows = []
    for number in sorted(level)[:MOST]:
        node = level[number]
        row = {name: node.get(name, "") for name in FIELDS[kind]}
        if kind in CHILDREN:
            row[CHILDREN[kind]] = _rows(node["_"], LEVELS[LEVELS.index(kind) + 1])
        rows.append(row)
    return rows


def _parent_and_kind(place: str) -> tuple[list[int], str]:
    parts = place.split(".")
    return [int(part[1:]) for part in parts[:-1]], parts[-1][0]


def _children(rows: Rows, numbers: list[int]) -> Rows | None:
    """The rows under the row at ``numbers`` (the problems under none)."""
    found: Rows = rows
    for depth, number in enumerate(numbers):
        if number >= len(found):
            return None
        found = found[number][CHILDREN[LEVELS[depth]]]
    return found


def added(rows: Rows, place: str) -> Rows:
    """The rows with a blank row more where ``place`` says: ``p`` a problem, ``p0.g`` a goal of problem 1, …"""
    if not re.fullmatch(r"(?:p\d{1,2}\.)?(?:g\d{1,2}\.)?(?:o\d{1,2}\.)?[pgoi]", place):
        return rows
    numbers, kind = _parent_and_kind(place + "0")
    under = _children(rows, numbers)
    if under is not None and LEVELS.index(kind) == len(numbers) and len(under) < MOST:
        under.append(blank(kind))
    return rows


def removed(rows: Rows, place: str) -> Rows:
    """The rows without the row at ``place`` (``p0.g1``); the last problem is emptied, not removed."""
    if not PLACE.fullmatch(place):
        return rows
    numbers, _ = _parent_and_kind(place)
    under = _children(rows, numbers)
    index = int(place.rsplit(".", maxsplit=1)[-1][1:])
    if under is not None and index < len(under):
        del under[index]
    return rows or empty_plan()


def without_blank_interventions(rows: Rows) -> Rows:
    """An intervention row left wholly blank is no intervention (an objective may have none)."""
    for problem in rows:
        for goal in problem["goals"]:
            for objective in goal["objectives"]:
                objective["interventions"] = [row for row in objective["interventions"] if _typed(row)]
    return rows


def _typed(row: dict[str, Any]) -> bool:
    return any(str(row.get(name, "")).strip() for name in FIELDS["i"])


def body(rows: Rows) -> dict[str, Any]:
    """care_plan's ``PUT …/treatment-plan`` body: the text as typed (care_plan parses and judges it)."""
    return {"problems": [{"statement": problem["statement"], "goals": [_goal_body(goal) for goal in problem["goals"]]}
                         for problem in rows]}  # fmt: skip


def _goal_body(goal: dict[str, Any]) -> dict[str, Any]:
    return {"in_own_words": goal["in_own_words"], "objectives": [_objective_body(o) for o in goal["objectives"]]}


def _objective_body(objective: dict[str, Any]) -> dict[str, Any]:
    sent: dict[str, Any] = {"statement": objective["statement"], "target_date": objective["target_date"]}
    if objective["instrument"]:
        target = {"instrument": objective["instrument"], "below": objective["below"]}
        sent["target"] = target | ({"in_a_row": objective["in_a_row"]} if objective["in_a_row"] else {})
    sent["interventions"] = [{name: row[name] for name in FIELDS["i"]} for row in objective["interventions"]]
    return sent


def field_of(loc: Sequence[Any]) -> str:
    """The form field a 422 entry's ``loc`` names (``body.problems.0.goals.1.statement`` → ``p0.g1.statement``);
    ``""`` for the whole form."""
    name, parts = "", list(loc[1:] if loc and loc[0] == "body" else loc)
    kinds = {"problems": "p", "goals": "g", "objectives": "o", "interventions": "i"}
    while parts:
        part = parts.pop(0)
        if part in kinds and parts and isinstance(parts[0], int):
            name += f"{'.' if name else ''}{kinds[part]}{parts.pop(0)}"
        elif part == "target":
            continue
        else:
            return f"{name}.{part}" if name else ""
    return f"{name}.instrument" if loc and loc[-1] == "target" else name


def field_errors(detail: Any) -> dict[str, str]:
    """care_plan's 422 ``detail`` as each field's message (the first for a field; ``""``: the whole form's)."""
    errors: dict[str, str] = {}
    for entry in detail if isinstance(detail, list) else []:
        if isinstance(entry, dict):
            errors.setdefault(field_of(entry.get("loc", ())), str(entry.get("msg", "invalid")))
    return errors
