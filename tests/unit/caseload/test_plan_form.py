"""The treatment plan's form (pure): a version's rows round-trip through the form's fields to care_plan's body,
rows are added and removed by their place, and care_plan's 422 ``loc`` names the form field it is about."""

from __future__ import annotations

import copy
from typing import Any

from services.care_plan.schemas_plan import EXAMPLE_PLAN
from services.caseload.console.plan_form import (
    added,
    blank,
    body,
    field_of,
    from_form,
    from_version,
    removed,
    without_blank_interventions,
)


def fields_of(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The form's fields, as the template names them."""
    form: dict[str, str] = {}

    def walk(rows: list[dict[str, Any]], prefix: str, kinds: str) -> None:
        for number, row in enumerate(rows):
            place = f"{prefix}{kinds[0]}{number}"
            for name, value in row.items():
                if isinstance(value, list):
                    walk(value, f"{place}.", kinds[1:])
                else:
                    form[f"{place}.{name}"] = value

    walk(rows, "", "pgoi")
    return form


def test_a_version_round_trips_through_the_forms_fields_to_care_plans_body() -> None:
    rows = from_version(EXAMPLE_PLAN["problems"])
    form = fields_of(rows) | {"csrf": "x", "do": "save", "p9.g0.statement": "not a goal's field"}
    again = from_form(form)
    assert again == rows
    sent = body(again)["problems"][0]["goals"][0]["objectives"][0]
    assert sent["target"] == {"instrument": "phq9", "below": "10", "in_a_row": "2"}
    assert sent["interventions"][0] == {"modality": "group", "per_week": "3", "responsible_role": "counsellor"}


def test_rows_are_added_and_removed_by_their_place_and_blank_interventions_are_left_out() -> None:
    rows = from_version(EXAMPLE_PLAN["problems"])
    grown = added(copy.deepcopy(rows), "p0.g0.o0.i")
    assert grown[0]["goals"][0]["objectives"][0]["interventions"][-1] == blank("i")
    assert len(added(copy.deepcopy(rows), "p")) == 2 and added(copy.deepcopy(rows), "p7.g") == rows
    assert added(copy.deepcopy(rows), "p0.x") == rows and added(copy.deepcopy(rows), "g") == rows
    fewer = removed(copy.deepcopy(rows), "p0.g0.o0.i0")
    assert [i["modality"] for i in fewer[0]["goals"][0]["objectives"][0]["interventions"]] == ["individual"]
    assert removed(copy.deepcopy(rows), "p0") == [blank("p")]  # the last problem is emptied
    assert without_blank_interventions(added(copy.deepcopy(rows), "p0.g0.o0.i")) == rows
    objective = blank("o") | {"instrument": ""}
    assert "target" not in body([{"statement": "s", "goals": [{"in_own_words": "w", "objectives": [objective]}]}])[
        "problems"][0]["goals"][0]["objectives"][0]  # fmt: skip


def test_care_plans_loc_names_the_form_field() -> None:
    objective = ["body", "problems", 1, "goals", 0, "objectives", 2]
    assert field_of([*objective, "target_date"]) == "p1.g0.o2.target_date"
    assert field_of([*objective, "target", "below"]) == "p1.g0.o2.below"
    assert field_of([*objective, "target"]) == "p1.g0.o2.instrument"
    assert field_of([*objective, "interventions", 0, "per_week"]) == "p1.g0.o2.i0.per_week"
    assert field_of(["body", "problems", 0, "goals"]) == "p0.goals"
    assert field_of(["body", "problems"]) == "" and field_of(["body"]) == "" and field_of([]) == ""
