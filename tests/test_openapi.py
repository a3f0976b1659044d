"""Each service's OpenAPI document describes every endpoint, with examples of what intake takes and gives."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI

from services.care_plan.app import create_app as care_plan_app
from services.intake.app import create_app as intake_app
from services.intake.settings import IntakeSettings
from services.notifications.app import create_app as notifications_app

APPS = {"intake": intake_app, "care_plan": care_plan_app, "notifications": notifications_app}


def operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in app.openapi()["paths"].items() for method, op in ops.items()]


def schema_of(spec: dict[str, Any], content: dict[str, Any]) -> dict[str, Any]:
    schema = content["application/json"]["schema"]
    schema = schema.get("items", schema)
    name = schema.get("$ref", "").rsplit("/", 1)[-1]
    return spec["components"]["schemas"][name] if name else schema  # type: ignore[no-any-return]


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_operation_is_summarised_and_every_request_body_has_an_example(service: str) -> None:
    app = APPS[service]()
    spec = app.openapi()
    for method, path, op in operations(app):
        assert op.get("summary"), f"{method} {path} has no summary"
        if "requestBody" in op:
            assert schema_of(spec, op["requestBody"]["content"]).get("examples"), f"{method} {path}: no example"


def test_every_intake_response_has_an_example() -> None:
    app = intake_app()
    spec = app.openapi()
    for method, path, op in operations(app):
        if not path.startswith("/v1/"):
            continue
        success = next(response for code, response in op["responses"].items() if code.startswith("2"))
        assert schema_of(spec, success["content"]).get("examples"), f"{method} {path}: response has no example"


def test_set_aside_events_are_served_only_where_events_are_consumed() -> None:
    paths = {name: {path for _, path, _ in operations(make())} for name, make in APPS.items()}
    assert "/v1/set-aside-events" in paths["care_plan"] and "/v1/set-aside-events" in paths["notifications"]
    assert "/v1/set-aside-events" in paths["intake"]  # intake consumes the end of an episode (graduation, discharge)
    without_consumers = intake_app(IntakeSettings(_env_file=None, kafka_consumers_enabled=False))  # type: ignore[call-arg]
    assert "/v1/set-aside-events" not in {path for _, path, _ in operations(without_consumers)}


def test_intake_examples_are_valid_bodies() -> None:
    from pydantic import BaseModel

    from services.intake import schemas

    models = [m for m in vars(schemas).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    checked = 0
    for model in models:
        extra = model.model_config.get("json_schema_extra")
        for example in extra.get("examples", []) if isinstance(extra, dict) else []:
            model.model_validate(example)
            checked += 1
    assert checked >= 12


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_422_is_documented_in_its_one_shape_and_the_edge_answers_are_listed(service: str) -> None:
    spec = APPS[service]().openapi()
    error = spec["components"]["schemas"]["ValidationError"]
    assert set(error["properties"]) == {"loc", "msg", "type"} and error["additionalProperties"] is False
    for method, path, op in operations(APPS[service]()):
        if "422" in op["responses"]:
            assert "never the value" in op["responses"]["422"]["description"], f"{method} {path}"
        if path.startswith("/v1/"):
            assert "429" in op["responses"], f"{method} {path}"
            assert ("413" in op["responses"]) == ("requestBody" in op), f"{method} {path}"


def _lenient_objects(spec: dict[str, Any], schema: Any, path: str, seen: set[str]) -> list[str]:
    """Where in a request body's schema an object with fields takes fields it does not declare."""
    if isinstance(schema, list):
        return [found for item in schema for found in _lenient_objects(spec, item, path, seen)]
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return []
        seen.add(name)
        return _lenient_objects(spec, spec["components"]["schemas"][name], name, seen)
    found = [path] if "properties" in schema and schema.get("additionalProperties") is not False else []
    return found + [f for key, value in schema.items() if key != "examples"
                    for f in _lenient_objects(spec, value, path, seen)]  # fmt: skip


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_request_body_and_every_object_in_one_refuses_unknown_fields(service: str) -> None:
    spec = APPS[service]().openapi()
    bodies = [(f"{method} {path}", op["requestBody"]["content"]["application/json"]["schema"])
              for method, path, op in operations_of(spec) if "requestBody" in op]  # fmt: skip
    assert bodies
    lenient = {f"{where}: {name}" for where, schema in bodies for name in _lenient_objects(spec, schema, "body", set())}
    assert not lenient, f"{service}: these take fields they do not declare (base them on RequestBody): {lenient}"


def operations_of(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
