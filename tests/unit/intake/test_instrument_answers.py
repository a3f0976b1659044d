"""The instrument input models as the HTTP API sees them: 422 locations, skip logic, and ``score()``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from services.intake.domain.instruments import INSTRUMENTS_EXAMPLE, InstrumentAnswers
from stepwise_contract import InstrumentResult


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instruments: InstrumentAnswers = Field(default_factory=InstrumentAnswers)


app = FastAPI()


@app.post("/score")
async def score(body: Body) -> list[InstrumentResult]:
    return body.instruments.score()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http


BAM_ALL_ZERO = {f"item{n}": 0 for n in range(1, 18) if n != 7}
CSSRS_Q2_YES = {"q1": True, "q2": True, "q3": False, "q4": False, "q5": False, "q6": False}
AUDIT_ZERO = [0] * 10

BODY = ["body", "instruments"]


@pytest.mark.parametrize(
    ("instruments", "loc", "error_type", "msg"),
    [
        # Missing items
        ({"phq9": [0] * 8}, [*BODY, "phq9"], "too_short", "List should have at least 9 items after validation, not 8"),
        ({"gad7": [0] * 8}, [*BODY, "gad7"], "too_long", "List should have at most 7 items after validation, not 8"),
        ({"audit": {"items": [0] * 9}}, [*BODY, "audit", "items", 9], "missing", "Field required"),
        ({"audit": {"sex": "male"}}, [*BODY, "audit", "items"], "missing", "Field required"),
        ({"audit_c": {"items": [1, 1]}}, [*BODY, "audit_c", "items"], "too_short", None),
        ({"dast10": [False] * 9}, [*BODY, "dast10"], "too_short", None),
        ({"bam": {k: v for k, v in BAM_ALL_ZERO.items() if k != "item4"}}, [*BODY, "bam", "item4"], "missing", None),
        ({"cssrs": {"q2": False, "q6": False}}, [*BODY, "cssrs", "q1"], "missing", "Field required"),
        ({"cssrs": {"q1": False, "q2": False}}, [*BODY, "cssrs", "q6"], "missing", "Field required"),
        # Out-of-range items
        ({"phq9": [0] * 8 + [4]}, [*BODY, "phq9", 8], "less_than_equal", "Input should be less than or equal to 3"),
        ({"gad7": [0] * 6 + [-1]}, [*BODY, "gad7", 6], "greater_than_equal", None),
        ({"audit": {"items": [5, *AUDIT_ZERO[1:]]}}, [*BODY, "audit", "items", 0], "less_than_equal", None),
        (
            {"audit": {"items": [0] * 8 + [3, 0]}},
            [*BODY, "audit", "items", 8],
            "literal_error",
            "Input should be 0, 2 or 4",
        ),
        (
            {"audit": {"items": [0] * 9 + [1]}},
            [*BODY, "audit", "items", 9],
            "literal_error",
            "Input should be 0, 2 or 4",
        ),
        ({"audit": {"items": [0] * 8 + [6, 0]}}, [*BODY, "audit", "items", 8], "literal_error", None),
        ({"audit": {"items": AUDIT_ZERO, "sex": "other"}}, [*BODY, "audit", "sex"], "literal_error", None),
        ({"audit_c": {"items": [0, 5, 0]}}, [*BODY, "audit_c", "items", 1], "less_than_equal", None),
        ({"bam": {**BAM_ALL_ZERO, "item5": 5}}, [*BODY, "bam", "item5"], "less_than_equal", None),
        ({"bam": {**BAM_ALL_ZERO, "item7": [""]}}, [*BODY, "bam", "item7", 0], "string_too_short", None),
        ({"bam": {**BAM_ALL_ZERO, "item7": "alcohol"}}, [*BODY, "bam", "item7"], "list_type", None),
        ({"bam": {**BAM_ALL_ZERO, "item18": 1}}, [*BODY, "bam", "item18"], "extra_forbidden", None),
        # Only JSON integers and booleans: nothing is coerced
        ({"phq9": [0, "2", 0, 0, 0, 0, 0, 0, 0]}, [*BODY, "phq9", 1], "int_type", None),
        ({"phq9": [0, 0, True, 0, 0, 0, 0, 0, 0]}, [*BODY, "phq9", 2], "int_type", None),
        ({"audit": {"items": [0] * 8 + [2.0, 0]}}, [*BODY, "audit", "items", 8], "int_type", None),
        ({"dast10": [False, False, "yes", *[False] * 7]}, [*BODY, "dast10", 2], "bool_type", None),
        ({"dast10": [1, *[False] * 9]}, [*BODY, "dast10", 0], "bool_type", None),
        ({"dast10": [None, *[False] * 9]}, [*BODY, "dast10", 0], "bool_type", None),
        ({"cssrs": {"q1": "no", "q2": False, "q6": False}}, [*BODY, "cssrs", "q1"], "bool_type", None),
        # C-SSRS skip logic
        ({"cssrs": {"q1": True, "q2": False, "q3": False, "q6": False}}, [*BODY, "cssrs", "q3"], "not_asked", None),
        ({"cssrs": {"q1": True, "q2": False, "q4": True, "q6": False}}, [*BODY, "cssrs", "q4"], "not_asked", None),
        (
            {"cssrs": {"q1": True, "q2": False, "q5": False, "q6": False}},
            [*BODY, "cssrs", "q5"],
            "not_asked",
            "must be empty when q2 is no",
        ),
        (
            {"cssrs": {**CSSRS_Q2_YES, "q5": None}},
            [*BODY, "cssrs", "q5"],
            "follow_up_required",
            "required when q2 is yes",
        ),
        (
            {"cssrs": {k: v for k, v in CSSRS_Q2_YES.items() if k != "q3"}},
            [*BODY, "cssrs", "q3"],
            "follow_up_required",
            "required when q2 is yes",
        ),
        (
            {"cssrs": {**CSSRS_Q2_YES, "q6": True}},
            [*BODY, "cssrs", "q6_within_3_months"],
            "follow_up_required",
            "required when q6 is yes",
        ),
        (
            {"cssrs": {**CSSRS_Q2_YES, "q6_within_3_months": False}},
            [*BODY, "cssrs", "q6_within_3_months"],
            "not_asked",
            "must be empty when q6 is no",
        ),
        # A gate that fails its own validation is the only error reported.
        ({"cssrs": {"q1": True, "q2": "yes", "q3": True, "q6": False}}, [*BODY, "cssrs", "q2"], "bool_type", None),
        ({"cssrs": {**CSSRS_Q2_YES, "q7": False}}, [*BODY, "cssrs", "q7"], "extra_forbidden", None),
        # Unknown instrument, AUDIT-C both on its own and inside AUDIT
        ({"madrs": [1]}, [*BODY, "madrs"], "extra_forbidden", "Extra inputs are not permitted"),
        (
            {"audit": {"items": AUDIT_ZERO}, "audit_c": {"items": [0, 0, 0]}},
            [*BODY, "audit_c"],
            "scored_from_audit",
            "must be empty when audit is given (scored from its items)",
        ),
    ],
)
async def test_invalid_answers_are_a_422_naming_the_instrument_and_item(
    client: httpx.AsyncClient, instruments: dict[str, Any], loc: list[str | int], error_type: str, msg: str | None
) -> None:
    response = await client.post("/score", json={"instruments": instruments})
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(error["loc"], error["type"]) for error in errors] == [(loc, error_type)]
    if msg is not None:
        assert errors[0]["msg"] == msg


async def test_several_missing_follow_ups_are_each_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/score", json={"instruments": {"cssrs": {"q1": True, "q2": True, "q6": True}}})
    assert response.status_code == 422
    assert [error["loc"][-1] for error in response.json()["detail"]] == ["q3", "q4", "q5", "q6_within_3_months"]


async def test_the_documented_example_scores_every_instrument(client: httpx.AsyncClient) -> None:
    response = await client.post("/score", json={"instruments": INSTRUMENTS_EXAMPLE})
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"instrument": "phq9", "total": 11, "band": "moderate", "flags": [], "subscales": {}},
        {"instrument": "gad7", "total": 7, "band": "mild", "flags": [], "subscales": {}},
        {"instrument": "audit", "total": 7, "band": "low", "flags": [], "subscales": {}},
        {"instrument": "audit_c", "total": 4, "band": "positive", "flags": [], "subscales": {}},
        {"instrument": "dast10", "total": 1, "band": "low", "flags": [], "subscales": {}},
        {"instrument": "cssrs", "total": None, "band": "moderate", "flags": ["clinician_review"], "subscales": {}},
        {
            "instrument": "bam",
            "total": None,
            "band": "reported",
            "flags": ["use_reported"],
            "subscales": {"use": 2, "risk": 8, "protective": 15},
        },
    ]


def test_the_openapi_docs_show_the_example() -> None:
    schema = app.openapi()["components"]["schemas"]["InstrumentAnswers"]
    assert schema["examples"] == [INSTRUMENTS_EXAMPLE]
    audit_items = app.openapi()["components"]["schemas"]["AuditAnswers"]["properties"]["items"]
    assert [item.get("enum") for item in audit_items["prefixItems"]] == [None] * 8 + [[0, 2, 4], [0, 2, 4]]


@pytest.mark.parametrize(
    ("instruments", "scored"),
    [
        ({}, []),
        ({"phq9": None, "audit": None}, []),
        ({"bam": BAM_ALL_ZERO, "phq9": [0] * 9}, ["phq9", "bam"]),
        ({"cssrs": {"q1": False, "q2": False, "q6": False}, "audit_c": {"items": [0, 0, 0]}}, ["audit_c", "cssrs"]),
        (
            {"dast10": [False] * 10, "audit": {"items": AUDIT_ZERO}, "gad7": [0] * 7},
            ["gad7", "audit", "audit_c", "dast10"],
        ),
    ],
)
def test_score_returns_the_answered_instruments_in_a_stable_order(
    instruments: dict[str, Any], scored: list[str]
) -> None:
    results = InstrumentAnswers.model_validate(instruments).score()
    assert [result.instrument for result in results] == scored


def test_audit_sex_reaches_the_audit_c_result() -> None:
    items = [1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    by_sex = {
        sex: InstrumentAnswers.model_validate({"audit": {"items": items, "sex": sex}}).score()[1]
        for sex in ("male", "female", "unspecified")
    }
    assert {sex: (r.instrument, r.band, r.flags) for sex, r in by_sex.items()} == {
        "male": ("audit_c", "negative", []),
        "female": ("audit_c", "positive", []),
        "unspecified": ("audit_c", "positive", ["cutoff_sex_unspecified"]),
    }
