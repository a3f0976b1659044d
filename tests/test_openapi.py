"""Each service's OpenAPI document describes every endpoint, with examples of what intake takes and gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi import FastAPI

from services.authorizations.app import create_app as authorizations_app
from services.care_plan.app import create_app as care_plan_app
from services.care_plan.domain.policy import DEFAULT_POLICY_FILE, load_policy
from services.care_plan.settings import CarePlanSettings
from services.caseload.app import create_app as caseload_app
from services.intake.app import create_app as intake_app
from services.intake.settings import IntakeSettings
from services.notifications.app import create_app as notifications_app

APPS: dict[str, Callable[[], FastAPI]] = {
    "intake": intake_app,
    "care_plan": care_plan_app,
    "notifications": notifications_app,
    "authorizations": authorizations_app,
    "caseload": caseload_app,
}


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
    without_consumers = intake_app(IntakeSettings(_env_file=None, kafka_consumers_enabled=False))
    assert "/v1/set-aside-events" not in {path for _, path, _ in operations(without_consumers)}


def test_intake_examples_are_valid_bodies() -> None:
    from pydantic import BaseModel

    from services.intake import schemas

    models = [m for m in vars(schemas).values() if isinstance(m, type) and issubclass(m, BaseModel)]
    checked = 0
    for model in models:
        extra = model.model_config.get("json_schema_extra")
        examples = extra.get("examples", []) if isinstance(extra, dict) else []
        assert isinstance(examples, list), model
        for example in examples:
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
    # An object declares its type; a fragment without one (under allOf, anyOf, if/then/else or not) constrains the
    # properties of the object it sits in (the C-SSRS skip logic, a recipient's email or phone), which is checked.
    is_object = "properties" in schema and "type" in schema
    found = [path] if is_object and schema.get("additionalProperties") is not False else []
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


def _schemas(service: str) -> dict[str, Any]:
    return APPS[service]().openapi()["components"]["schemas"]  # type: ignore[no-any-return]


def test_the_documents_state_the_rules_across_fields() -> None:
    """What schemathesis found the APIs enforcing beyond their documents, now in them: each shape of a body by
    its discriminator, what one shape takes and another does not, the follow-up answers, at least one field."""
    care_plan, intake, notifications = _schemas("care_plan"), _schemas("intake"), _schemas("notifications")
    attendance = care_plan["AttendanceIn"]
    assert attendance["discriminator"]["propertyName"] == "status"
    assert set(attendance["discriminator"]["mapping"]) == {"attended", "late", "excused", "missed"}
    assert care_plan["MissedIn"]["properties"]["notice_given_at"]["type"] == "null"
    assert care_plan["MissedIn"]["properties"]["minutes"]["type"] == "null"
    assert care_plan["AttendedIn"]["properties"]["notice_given_at"]["type"] == "null"
    assert care_plan["ScheduleIn"]["properties"]["weekdays"]["uniqueItems"] is True
    consent = intake["ConsentIn"]
    assert consent["discriminator"]["propertyName"] == "recipient_kind"
    assert "recipient" in intake["SupportConsentIn"]["required"]
    assert "recipient" not in intake["AlumniGroupConsentIn"].get("required", [])
    assert intake["SupportConsentIn"]["properties"]["scopes"]["uniqueItems"] is True
    assert {tuple(option["required"]) for option in intake["RecipientIn"]["anyOf"]} == {("email",), ("phone",)}
    assert intake["PatientUpdate"]["minProperties"] == 1
    follow_ups = intake["CssrsAnswers"]["allOf"]
    assert [rule["if"]["properties"] for rule in follow_ups] == [{"q2": {"const": True}}, {"q6": {"const": True}}]
    assert follow_ups[0]["then"]["required"] == ["q3", "q4", "q5"]
    assert intake["InstrumentAnswers"]["not"]["required"] == ["audit", "audit_c"]
    assert intake["PatientIn"]["properties"]["timezone"]["anyOf"][0]["$ref"] == "#/components/schemas/TimeZoneName"
    assert "America/Chicago" in intake["TimeZoneName"]["enum"]
    opt_out = notifications["OptOutIn"]
    assert opt_out["discriminator"]["propertyName"] == "recipient_kind"
    assert set(opt_out["discriminator"]["mapping"]) == {"patient", "alumni", "family", "designated_support"}
    assert "consent_id" in notifications["SupportOptOutIn"]["required"]
    assert notifications["PersonOptOutIn"]["properties"]["consent_id"]["type"] == "null"


def test_care_plans_document_lists_the_session_kinds_of_its_loaded_policy(tmp_path: Path) -> None:
    kinds = care_plan_app().openapi()["components"]["schemas"]["SessionKind"]
    assert kinds["enum"] == sorted(load_policy().session_kinds) == ["education", "family", "group", "individual"]
    policy = DEFAULT_POLICY_FILE.read_text().replace(
        "session_kinds:\n", "session_kinds:\n  art_therapy: {minutes: 60, codes: [{code: H2019}]}\n", 1
    )
    (tmp_path / "policy.yaml").write_text(policy)
    settings = CarePlanSettings(_env_file=None, care_plan_policy_file=tmp_path / "policy.yaml")
    spec = care_plan_app(settings).openapi()
    assert "art_therapy" in spec["components"]["schemas"]["SessionKind"]["enum"]
    kind = spec["components"]["schemas"]["AppointmentIn"]["properties"]["kind"]
    assert kind["$ref"] == "#/components/schemas/SessionKind"


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_rule_beyond_the_schema_is_named_in_the_operations_422(service: str) -> None:
    """A rule no schema keyword states (the moment, the record, a phone number's length for its region) is named
    with the ``type`` of its 422 entries, in ``x-rules`` and in words in the 422's description."""
    named = 0
    for method, path, op in operations(APPS[service]()):
        for rule, meaning in op.get("x-rules", {}).items():
            assert f"`{rule}`: {meaning}" in op["responses"]["422"]["description"], f"{method} {path}: {rule}"
            named += 1
    assert named


@pytest.mark.parametrize("service", sorted(APPS))
def test_every_request_example_is_valid_by_its_schema(service: str) -> None:
    spec = APPS[service]().openapi()
    checked = 0
    for method, path, op in operations_of(spec):
        if "requestBody" not in op:
            continue
        body = op["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema_rs.validator_for({**body, "components": spec["components"]})
        for example in schema_of(spec, op["requestBody"]["content"]).get("examples", []):
            assert validator.is_valid(example), f"{method} {path}: {example}"
            checked += 1
    assert checked
