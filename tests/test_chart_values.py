"""The Helm chart's values (deploy/helm/stepwise/values.yaml) agree with the services' settings, checked without
helm (`make chart` lints and renders the chart for real; it is not part of `make test`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from services.authorizations.settings import AuthorizationsSettings
from services.care_plan.settings import CarePlanSettings
from services.caseload.settings import CaseloadSettings
from services.common.settings import ServiceSettings
from services.intake.settings import IntakeSettings
from services.notifications.domain.messages import MESSAGE_EVENTS
from services.notifications.domain.policy import DEFAULT_POLICY_FILE, load_policy
from services.notifications.domain.safety import StaffRoutes
from services.notifications.settings import NotificationsSettings
from tests import strict_yaml

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "stepwise"
SETTINGS: dict[str, type[ServiceSettings]] = {
    "intake": IntakeSettings,
    "care-plan": CarePlanSettings,
    "notifications": NotificationsSettings,
    "authorizations": AuthorizationsSettings,
    "caseload": CaseloadSettings,
}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    document = strict_yaml.load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def configmap(values: dict[str, Any], service: str) -> dict[str, str]:
    """What templates/configmap.yaml gives a service from the values (common env, its env, its secret files)."""
    config = values["services"][service]
    files = {setting: f"/run/secrets/{key}" for setting, key in config["secretFiles"].items()}
    return {**values["common"]["env"], **config["env"], **files}


def test_every_service_is_in_the_chart(values: dict[str, Any]) -> None:
    assert set(values["services"]) == set(SETTINGS)


@pytest.mark.parametrize("service", SETTINGS)
def test_a_service_that_calls_another_is_told_where_it_is_and_may_reach_it(
    values: dict[str, Any], service: str
) -> None:
    config, env = values["services"][service], configmap(values, service)
    fields = SETTINGS[service].model_fields
    callees = {name for name in SETTINGS if f"{name.replace('-', '_')}_url" in fields}
    for callee in callees:
        url = f"http://stepwise-{callee}:{values['services'][callee]['port']}"  # _helpers.tpl's stepwise.name
        assert env.get(f"{callee.replace('-', '_').upper()}_URL") == url, f"{service} is not told where {callee} is"
    assert set(config["calls"]) == callees, f"{service}'s NetworkPolicy egress differs from the services it calls"


def known_variables(settings_class: type[ServiceSettings]) -> set[str]:
    return {field.upper() for field in settings_class.model_fields} | {
        f"{name.upper()}_FILE" for name in settings_class.SECRETS
    }


@pytest.mark.parametrize("service", SETTINGS)
def test_the_configmap_names_only_real_settings(values: dict[str, Any], service: str) -> None:
    """A service's own env and files are its settings; the common env is some service's (the rest ignore it)."""
    config = values["services"][service]
    own = set(config["env"]) | set(config["secretFiles"])
    assert own <= known_variables(SETTINGS[service])
    assert set(values["common"]["env"]) <= set().union(*map(known_variables, SETTINGS.values()))


def test_notifications_names_every_staff_route_the_default_policy_needs(values: dict[str, Any]) -> None:
    """An install that fills in every mailbox and webhook the chart lists is ready (no route reaches nobody)."""
    env = values["services"]["notifications"]["env"]
    for variable in ("CARE_TEAM_EMAIL", "UR_TEAM_EMAIL"):
        assert env.get(variable) == "", f"{variable} is not listed for the clinic to set, or has a default"
    given = {name: f"the clinic's {name}" for name, value in env.items() if value == ""}
    policy = load_policy(DEFAULT_POLICY_FILE, frozenset(MESSAGE_EVENTS))
    routes = StaffRoutes(given.get("CARE_TEAM_EMAIL"), given.get("CARE_TEAM_WEBHOOK_URL"), given.get("ON_CALL_PHONE"),
                         given.get("ON_CALL_WEBHOOK_URL"), ur_team_email=given.get("UR_TEAM_EMAIL"),
                         ur_purposes=policy.ur_purposes())  # fmt: skip
    assert policy.ur_purposes(), "the default policy routes nothing to ur_team: this test checks nothing"
    assert routes.problems() == {}


def test_topics_are_made_for_three_brokers(values: dict[str, Any]) -> None:
    kafka = values["kafka"]
    assert (kafka["topicReplication"], kafka["topicMinInsyncReplicas"]) == (3, 2)
    template = (CHART / "templates" / "configmap.yaml").read_text(encoding="utf-8")
    for setting, value in (("KAFKA_TOPIC_REPLICATION", "topicReplication"),
                           ("KAFKA_TOPIC_MIN_INSYNC_REPLICAS", "topicMinInsyncReplicas")):  # fmt: skip
        assert re.search(rf"^  {setting}: {{{{ \$\.Values\.kafka\.{value} \| quote }}}}$", template, re.MULTILINE)


def test_every_service_logs_json(values: dict[str, Any]) -> None:
    assert values["common"]["env"]["LOG_FORMAT"] == "json"
    assert all("LOG_FORMAT" not in config["env"] for config in values["services"].values())
