"""`make run` gives its own services working credentials, whatever the developer set."""

from __future__ import annotations

from services.common.settings import parse_api_tokens
from tools.run import credentials, dev_tokens

TOKENS = dev_tokens()


def test_without_api_tokens_every_role_gets_a_dev_token() -> None:
    made = credentials({}, TOKENS)
    roles = parse_api_tokens(made["API_TOKENS"])
    assert set(roles.values()) == set(TOKENS) and roles[made["INTAKE_TOKEN"]] == "notifications"
    assert roles[made["CARE_PLAN_INTAKE_TOKEN"]] == "care_plan"


def test_your_api_tokens_without_a_notifications_token_get_ours() -> None:
    made = credentials({"API_TOKENS": "mine:clinician"}, TOKENS)
    roles = parse_api_tokens(made["API_TOKENS"])
    assert roles["mine"] == "clinician" and roles[made["INTAKE_TOKEN"]] == "notifications"


def test_your_notifications_token_is_used_for_the_lookups() -> None:
    made = credentials({"API_TOKENS": "mine:clinician,svc:notifications,plans:care_plan"}, TOKENS)
    assert made == {"API_TOKENS": "mine:clinician,svc:notifications,plans:care_plan", "INTAKE_TOKEN": "svc",
                    "CARE_PLAN_INTAKE_TOKEN": "plans"}  # fmt: skip


def test_an_intake_token_that_is_not_a_notifications_token_is_replaced_by_a_working_one() -> None:
    made = credentials({"API_TOKENS": "mine:clinician", "INTAKE_TOKEN": "mine"}, TOKENS)
    assert parse_api_tokens(made["API_TOKENS"])[made["INTAKE_TOKEN"]] == "notifications"
