"""The committed AsyncAPI documents are what the code generates (run `make asyncapi` after a change)."""

from __future__ import annotations

import pytest
import yaml

from stepwise_contract import COMMAND_TYPES, EVENT_TYPES
from stepwise_contract.envelope import ATTRIBUTES, HEADER_PREFIX, REQUIRED
from tools.generate.asyncapi import DOCS, render_all


@pytest.mark.parametrize("filename", sorted(render_all()))
def test_committed_document_matches_the_code(filename: str) -> None:
    committed = DOCS / filename
    assert committed.exists(), f"{committed} is missing: run `make asyncapi`"
    assert committed.read_text() == render_all()[filename], f"{filename} drifted from the code: run `make asyncapi`"


def test_every_event_type_is_documented_with_its_schema() -> None:
    channels: dict[str, set[str]] = {}
    schemas: set[str] = set()
    for text in render_all().values():
        document = yaml.safe_load(text)
        assert document["asyncapi"] == "3.0.0"
        for channel in document["channels"].values():
            channels.setdefault(channel["address"], set()).add(channel["address"])
        schemas |= set(document["components"]["schemas"])
    assert set(EVENT_TYPES) <= set(channels)
    assert {model.__name__ for model in EVENT_TYPES.values()} <= schemas


def test_every_message_names_its_ce_headers_its_key_and_its_data_schema() -> None:
    seen = set()
    for text in render_all().values():
        for name, message in yaml.safe_load(text)["components"]["messages"].items():
            event_type = name.partition(":")[0]
            seen.add(event_type)
            headers = message["headers"]
            assert set(headers["properties"]) >= {HEADER_PREFIX + attribute for attribute in ATTRIBUTES}, name
            assert headers["required"] == [HEADER_PREFIX + attribute for attribute in REQUIRED], name
            assert headers["properties"]["ce_type"]["const"] == event_type
            assert message["bindings"]["kafka"]["key"]["type"] == "string", name
            assert f"{event_type}.v1.json" in message["description"], name
    assert seen == set(EVENT_TYPES | COMMAND_TYPES)
