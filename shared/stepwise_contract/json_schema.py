"""JSON Schemas (draft 2020-12) of every event version's data, generated from the models.

The files ship in this package (``stepwise_contract/schemas/<type>.v<version>.json``), each with ``$id`` equal to
the ``ce_dataschema`` its events carry under the default base; ``make schemas`` writes them and a test fails when
they drift. A system in another language validates a record's value against the file its ``ce_dataschema`` names.

The schemas are no more lenient than Stepwise: a value valid under its schema is accepted by ``from_kafka``. (The
reverse need not hold: Stepwise also reads some spellings the schema leaves out, such as a date-time with a space.)
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, get_args

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from .envelope import DEFAULT_SCHEMA_BASE, EventData, dataschema_url, parse_dataschema, schema_base, schema_file_name
from .events import COMMAND_TYPES, EVENT_TYPES

DIALECT = "https://json-schema.org/draft/2020-12/schema"
DATE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
"""RFC 3339's date-time as Stepwise writes it, a ``T`` and seconds below 60 (``format: date-time`` alone lets a leap
second through, which Python's datetime refuses)."""
PACKAGE_DIRECTORY = "schemas"


class _Generator(GenerateJsonSchema):
    def datetime_schema(self, schema: core_schema.DatetimeSchema) -> JsonSchemaValue:
        return {**super().datetime_schema(schema), "pattern": DATE_TIME_PATTERN}


def versions(model: type[EventData]) -> tuple[int, ...]:
    """The major versions a model reads: the values its ``schema_version`` takes."""
    return tuple(get_args(model.model_fields["schema_version"].annotation))


def event_schema(model: type[EventData], version: int, base: str | None = None) -> dict[str, Any]:
    """The JSON Schema of ``model``'s data at ``version``; ``$id`` is its ``ce_dataschema`` under ``base``."""
    generated = model.model_json_schema(schema_generator=_Generator)
    branches = generated.pop("oneOf", None)
    properties = generated["properties"]
    properties["schema_version"] = {**properties["schema_version"], "const": version, "default": version}
    properties["schema_version"].pop("enum", None)
    if version != model.model_fields["schema_version"].default:
        generated["required"] = [*generated.get("required", ()), "schema_version"]
    if branches is not None:
        generated["allOf"] = [branches[versions(model).index(version)]]
    return {"$schema": DIALECT, "$id": dataschema_url(model.event_type, version, base), **generated}


def all_schemas(base: str = DEFAULT_SCHEMA_BASE) -> dict[str, dict[str, Any]]:
    """Every event's and command's schema, by file name (the shipped files: under the default base)."""
    schemas = {}
    for event_type, model in sorted((EVENT_TYPES | COMMAND_TYPES).items()):
        for version in versions(model):
            schemas[schema_file_name(event_type, version)] = event_schema(model, version, base)
    return schemas


def render(schema: dict[str, Any]) -> str:
    """A schema file's text: stable, so the committed files can be compared with what the models generate."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def shipped_names() -> list[str]:
    """The schema files this package ships."""
    folder = resources.files(__package__).joinpath(PACKAGE_DIRECTORY)
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".json"))


def load(dataschema: str) -> dict[str, Any] | None:
    """The shipped schema a ``ce_dataschema`` names (a URL under any base, or the legacy URN), with ``$id`` set to
    the current base's URL; None when it names none."""
    named = parse_dataschema(dataschema)
    if named is None:
        return None
    name = schema_file_name(*named)
    if name not in shipped_names():
        return None
    text = resources.files(__package__).joinpath(PACKAGE_DIRECTORY, name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    schema["$id"] = dataschema_url(*named, base=schema_base())
    return schema
