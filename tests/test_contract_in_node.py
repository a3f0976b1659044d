"""The contract as a system in another language sees it: the JSON Schemas under ajv (Node), the AsyncAPI documents
under the official parser. The Node packages are pinned by tools/node/package-lock.json and installed into a cache on
first use (tools/dev/node.py)."""

from __future__ import annotations

import pytest

from tests.unit.contract.schema_samples import SCHEMAS, samples
from tools.dev import node
from tools.generate.asyncapi import render_all

pytestmark = pytest.mark.skipif(bool(node.missing()), reason=node.missing() or "")

ERROR, WARNING = 0, 1
"""Severities of the parser's diagnostics (Spectral's): 2 is information, 3 a hint."""


def ajv(values: list[tuple[str, object]]) -> dict[str, list[dict[str, object]]]:
    request = {"schemas": list(SCHEMAS.values()), "samples": [{"schema": s, "value": v} for s, v in values]}
    answer: dict[str, list[dict[str, object]]] = node.run("validate.cjs", request)
    return answer


def test_ajv_accepts_exactly_what_stepwise_accepts() -> None:
    found = samples()
    answer = ajv([(sample.schema_id, sample.value) for sample in found])
    assert answer["warnings"] == []  # ajv's strict mode has nothing to say about the schemas
    disagree = [
        (sample.name, result["errors"])
        for sample, result in zip(found, answer["results"], strict=True)
        if result["valid"] != sample.accepted_by_stepwise()
    ]
    assert disagree == []


def test_the_asyncapi_documents_parse_without_errors_or_warnings() -> None:
    diagnostics = node.run("asyncapi.cjs", {"documents": render_all()})
    assert set(diagnostics) == set(render_all())
    for name, found in diagnostics.items():
        serious = [d for d in found if d["severity"] in (ERROR, WARNING)]
        assert serious == [], name
        # What is left is the parser's note that AsyncAPI 3.1 exists (FastStream writes 3.0).
        assert {d["code"] for d in found} <= {"asyncapi-latest-version"}, name
