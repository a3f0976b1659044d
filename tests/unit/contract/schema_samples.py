"""Samples of event data, valid and not, on which a JSON Schema validator must agree with Stepwise.

Each event's sample (tests/unit/contract/test_contract.py's ``make_data``) and, from it: every required field left
out, every field given an object where it takes none, every date-time naive or with a leap second, every enum a
word it does not know; and the attendance command's versions mixed up in every way its rule refuses. Left out on
purpose: what Stepwise reads beyond the schema (a number in a string, a date-time with a space), where the schema is
the stricter side.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from stepwise_contract import COMMAND_TYPES, EVENT_TYPES, EventData
from stepwise_contract.envelope import DEFAULT_SCHEMA_BASE, dataschema_url
from stepwise_contract.json_schema import all_schemas

from .test_contract import EPISODE, make_data

ALL = EVENT_TYPES | COMMAND_TYPES
SCHEMAS = all_schemas(DEFAULT_SCHEMA_BASE)
NOT_AN_OBJECT_FIELD = {"unexpected": ["object"]}
ENTRY = {"episode_id": EPISODE, "status": "attended"}
SHEET = {"schema_version": 2, "group_id": "iop-am", "session_id": "iop-am-20261021",
         "reported_at": "2026-10-21T17:00:00Z", "attendance": [ENTRY]}  # fmt: skip
SINGLE = {"episode_id": EPISODE, "session_id": "iop-am-20261021", "status": "attended",
          "reported_at": "2026-10-21T17:00:00Z"}  # fmt: skip


@dataclass(frozen=True)
class Sample:
    name: str
    event_type: str
    version: int
    value: Any

    @property
    def schema_id(self) -> str:
        return dataschema_url(self.event_type, self.version, DEFAULT_SCHEMA_BASE)

    def accepted_by_stepwise(self) -> bool:
        """What ``from_kafka`` does with the value (under headers that are right)."""
        model: type[EventData] = ALL[self.event_type]
        try:
            data = model.model_validate(self.value)
        except ValidationError:
            return False
        return data.schema_version == self.version


def _paths(value: Any, schema: dict[str, Any], defs: dict[str, Any], path: tuple[Any, ...] = ()) -> Iterator[Any]:
    """(path, field schema, required) of every field in ``value``'s objects, following the schema."""
    if "$ref" in schema:
        schema = defs[schema["$ref"].rpartition("/")[2]]
    if isinstance(value, dict):
        for name, field in schema.get("properties", {}).items():
            yield (*path, name), field, name in schema.get("required", ())
            if name in value:
                yield from _paths(value[name], _present(field), defs, (*path, name))
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _paths(item, schema["items"], defs, (*path, index))


def _present(field: dict[str, Any]) -> dict[str, Any]:
    """The branch of ``X | None`` that is not null."""
    branches = [branch for branch in field.get("anyOf", ()) if branch.get("type") != "null"]
    return branches[0] if len(branches) == 1 else field


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    changed = copy.deepcopy(value)
    target = changed
    for part in path[:-1]:
        target = target[part]
    if new is _DROP:
        del target[path[-1]]
    else:
        target[path[-1]] = new
    return changed


_DROP = object()


def _has(value: Any, path: tuple[Any, ...]) -> bool:
    for part in path:
        if not isinstance(value, dict | list) or (isinstance(value, dict) and part not in value):
            return False
        value = value[part]
    return True


def mutations(event_type: str, version: int, value: dict[str, Any]) -> Iterator[Sample]:
    schema = SCHEMAS[f"{event_type}.v{version}.json"]
    for path, field, required in _paths(value, schema, schema.get("$defs", {})):
        label = ".".join(map(str, path))
        if required and _has(value, path):
            yield Sample(f"{event_type} without {label}", event_type, version, _set(value, path, _DROP))
        if not _has(value, path[:-1]):
            continue
        yield Sample(f"{event_type} {label} an object", event_type, version, _set(value, path, NOT_AN_OBJECT_FIELD))
        present = _present(field)
        if present.get("format") == "date-time":
            for moment in ("2026-10-21T13:00:00", "2026-12-31T23:59:60Z", "2026-10-21T13:00:00+02:00"):
                yield Sample(f"{event_type} {label} {moment}", event_type, version, _set(value, path, moment))
        if "enum" in present:
            yield Sample(f"{event_type} {label} unknown word", event_type, version, _set(value, path, "zz_unknown"))


def attendance_samples() -> Iterator[Sample]:
    kind = "iop.attendance.reported"
    cases: list[tuple[str, int, dict[str, Any]]] = [
        ("v1", 1, SINGLE),
        ("v1 saying its version", 1, {**SINGLE, "schema_version": 1}),
        ("v1 with empty group_id and attendance", 1, {**SINGLE, "group_id": "", "attendance": []}),
        ("v1 without status", 1, {k: v for k, v in SINGLE.items() if k != "status"}),
        ("v1 with an empty episode_id", 1, {**SINGLE, "episode_id": ""}),
        ("v1 with a group_id", 1, {**SINGLE, "group_id": "iop-am"}),
        ("v1 with a sheet", 1, {**SINGLE, "attendance": [ENTRY]}),
        ("v1 saying version 2", 1, {**SINGLE, "schema_version": 2}),
        ("v2", 2, SHEET),
        ("v2 with an empty episode_id and null status", 2, {**SHEET, "episode_id": "", "status": None}),
        ("v2 without its version", 2, {k: v for k, v in SHEET.items() if k != "schema_version"}),
        ("v2 with an episode_id", 2, {**SHEET, "episode_id": EPISODE}),
        ("v2 with a status", 2, {**SHEET, "status": "attended"}),
        ("v2 without group_id", 2, {k: v for k, v in SHEET.items() if k != "group_id"}),
        ("v2 with an empty group_id", 2, {**SHEET, "group_id": ""}),
        ("v2 with an empty sheet", 2, {**SHEET, "attendance": []}),
        ("v2 with a line without episode_id", 2, {**SHEET, "attendance": [{"status": "late"}]}),
        ("v2 with a line of 721 minutes", 2, {**SHEET, "attendance": [{**ENTRY, "minutes": 721}]}),
        ("v2 saying version 3", 2, {**SHEET, "schema_version": 3}),
    ]
    for name, version, value in cases:
        yield Sample(f"{kind} {name}", kind, version, value)
    yield from mutations(kind, 2, SHEET)


def samples() -> list[Sample]:
    found = list(attendance_samples())
    for event_type in sorted(EVENT_TYPES):
        value = make_data(event_type).model_dump(mode="json")
        found.append(Sample(f"{event_type} sample", event_type, 1, value))
        found.extend(mutations(event_type, 1, value))
    return found
