"""`make run` gives its own services working credentials and routes to staff, whatever the developer set."""

from __future__ import annotations

from services.common.settings import parse_api_tokens
from services.notifications.domain.safety import StaffRoutes
from services.notifications.settings import NotificationsSettings
from tools.run import DEV_CARE_TEAM_EMAIL, DEV_ON_CALL_PHONE, credentials, dev_tokens, staff_routes

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


def test_make_run_gives_the_care_team_and_the_on_call_clinician_a_dev_route() -> None:
    assert staff_routes({}) == {"CARE_TEAM_EMAIL": DEV_CARE_TEAM_EMAIL, "ON_CALL_PHONE": DEV_ON_CALL_PHONE}
    assert staff_routes({"SMTP_HOST": "mail.clinic.test", "SMS_PROVIDER_URL": "https://sms.test"}) == staff_routes({})
    assert staff_routes({"CARE_TEAM_WEBHOOK_URL": "http://hook"})["CARE_TEAM_EMAIL"] == DEV_CARE_TEAM_EMAIL
    assert staff_routes({"CARE_TEAM_EMAIL": "mine@clinic.test", "ON_CALL_WEBHOOK_URL": "http://page"}) == {
        "CARE_TEAM_EMAIL": "mine@clinic.test"
    }
    assert staff_routes({"ON_CALL_PHONE": "+12025550123"}) == {"CARE_TEAM_EMAIL": DEV_CARE_TEAM_EMAIL}
    settings = NotificationsSettings(_env_file=None, sms_provider_url="http://sms", contact_hash_key="k",
                                     **{name.lower(): value for name, value in staff_routes({}).items()})  # fmt: skip
    routes = StaffRoutes(settings.care_team_email, settings.care_team_webhook_url, settings.on_call_phone,
                         settings.on_call_webhook_url, sms=True)  # make run always has an SMS provider  # fmt: skip
    assert routes.problems() == {}  # notifications is ready under make run
