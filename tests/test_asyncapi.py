"""The committed AsyncAPI documents are what the code generates (run `make asyncapi` after a change)."""

from __future__ import annotations

import pytest
import yaml

from stepwise_contract import EVENT_TYPES
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
