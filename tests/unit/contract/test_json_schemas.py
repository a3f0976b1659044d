"""The JSON Schemas of the events: generated from the models, named by ``ce_dataschema``, no more lenient than
Stepwise (checked here with a Rust validator, and with ajv in Node by tests/test_contract_in_node.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema_rs
import pytest

from stepwise_contract import (
    EVENT_TYPES,
    AttendanceReported,
    SessionMissed,
    envelope,
    from_kafka,
    json_schema,
    new_event,
    to_kafka,
)
from stepwise_contract.envelope import DEFAULT_SCHEMA_BASE, dataschema_url, parse_dataschema, set_schema_base
from tools.generate import schemas as generator

from .schema_samples import ALL, SCHEMAS, samples
from .test_contract import SOURCE, make_data


@pytest.fixture
def clinic_base() -> Iterator[str]:
    set_schema_base("https://stepwise.clinic.example/schemas/")
    yield "https://stepwise.clinic.example/schemas/"
    set_schema_base(DEFAULT_SCHEMA_BASE)


def test_the_shipped_schemas_are_what_the_models_generate() -> None:
    assert generator.stale() == [], "run `make schemas`"
    assert json_schema.shipped_names() == sorted(SCHEMAS)


def test_every_event_version_has_a_schema_whose_id_is_its_dataschema() -> None:
    for event_type, model in ALL.items():
        for version in json_schema.versions(model):
            schema = json_schema.load(dataschema_url(event_type, version))
            assert schema is not None, f"{event_type} v{version}"
            assert schema["$id"] == dataschema_url(event_type, version)
            assert schema["$schema"] == json_schema.DIALECT
            assert schema["properties"]["schema_version"]["const"] == version
    for event_type in EVENT_TYPES:
        event = new_event(make_data(event_type), source=SOURCE)
        assert json_schema.load(event.dataschema or "") == SCHEMAS[f"{event_type}.v1.json"]
    assert SessionMissed.dataschema() == "https://stepwise.invalid/schemas/iop.session.missed.v1.json"


def test_a_deployment_names_its_own_base_and_the_schemas_follow(clinic_base: str) -> None:
    event = new_event(make_data(SessionMissed.event_type), source=SOURCE)
    assert dict(to_kafka(event).headers)["ce_dataschema"] == f"{clinic_base}iop.session.missed.v1.json".encode()
    schema = json_schema.load(event.dataschema or "")
    assert schema is not None and schema["$id"] == event.dataschema


@pytest.mark.parametrize("base", ["http://x/schemas", "ftp://x/schemas/", "https://x/schemas/?v=1/", ""])
def test_a_schema_base_that_is_no_folder_url_is_refused(base: str) -> None:
    with pytest.raises(ValueError, match="schema base"):
        set_schema_base(base)
    assert envelope.schema_base() == DEFAULT_SCHEMA_BASE


def test_the_legacy_urn_still_names_its_schema_and_its_events_are_still_read() -> None:
    assert parse_dataschema("urn:stepwise:schema:iop.attendance.reported:v2") == ("iop.attendance.reported", 2)
    assert json_schema.load("urn:stepwise:schema:iop.session.missed:v1") == SCHEMAS["iop.session.missed.v1.json"]
    assert parse_dataschema("urn:other:iop.session.missed:v1") is None
    assert json_schema.load("https://x/schemas/iop.nothing.v1.json") is None
    record = to_kafka(new_event(make_data(SessionMissed.event_type), source=SOURCE))
    headers = [
        (n, b"urn:stepwise:schema:iop.session.missed:v1" if n == "ce_dataschema" else v) for n, v in record.headers
    ]
    assert from_kafka(headers, record.value, SessionMissed).dataschema == "urn:stepwise:schema:iop.session.missed:v1"


def test_the_attendance_commands_rule_is_in_its_schemas_as_one_branch_per_version() -> None:
    union = AttendanceReported.model_json_schema()["oneOf"]
    assert [branch["properties"]["schema_version"]["const"] for branch in union] == [1, 2]
    for version in (1, 2):
        assert SCHEMAS[f"iop.attendance.reported.v{version}.json"]["allOf"] == [union[version - 1]]


def test_a_rust_validator_accepts_exactly_what_stepwise_accepts() -> None:
    validators = {
        schema["$id"]: jsonschema_rs.Draft202012Validator(schema, validate_formats=True) for schema in SCHEMAS.values()
    }
    found = samples()
    disagree = [s.name for s in found if validators[s.schema_id].is_valid(s.value) != s.accepted_by_stepwise()]
    assert disagree == []
    assert sum(s.accepted_by_stepwise() for s in found) >= len(EVENT_TYPES) + 4  # both verdicts are sampled
    assert len(found) > 10 * len(EVENT_TYPES)


def test_the_schema_files_are_stable_json() -> None:
    for name, schema in SCHEMAS.items():
        assert json.loads(json_schema.render(schema)) == schema, name


def test_a_clinic_writes_the_schemas_under_its_own_base_for_hosting(tmp_path: Path) -> None:
    generator.write(tmp_path, "https://stepwise.clinic.example/schemas/")
    written = {path.name: json.loads(path.read_text()) for path in tmp_path.glob("*.json")}
    assert sorted(written) == sorted(SCHEMAS)
    assert (
        written["iop.session.missed.v1.json"]["$id"]
        == "https://stepwise.clinic.example/schemas/iop.session.missed.v1.json"
    )
    assert generator.stale(tmp_path) != []  # not the shipped files: those stay under the default base
