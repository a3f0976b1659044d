"""Each service's API against its own OpenAPI document, by schemathesis: generated requests (valid and
invalid) to every operation, with a token of a role allowed to call it. No answer may be a 5xx, have a
status the document does not list, or a body off its documented schema. A bounded budget per operation."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.care_plan import api as care_plan_api
from services.care_plan.app import create_broker as care_plan_broker
from services.care_plan.consents import IntakeConsents
from services.care_plan.domain.policy import load_policy
from services.care_plan.settings import CarePlanSettings
from services.care_plan.store import CarePlanStore
from services.common.auth import Authenticator, Role
from services.common.consumer import EventShelf
from services.common.dependencies import Dependencies
from services.common.idempotency import IdempotencyKeys
from services.common.outbox import no_relay
from services.common.service import SET_ASIDE_COLLECTION
from services.intake import api as intake_api
from services.intake.app import create_broker as intake_broker
from services.intake.domain.placement import load_placement_policy
from services.intake.settings import IntakeSettings
from services.intake.store import IntakeStore
from services.notifications import api as notifications_api
from services.notifications.app import assemble, load_checked_policy
from services.notifications.app import create_broker as notifications_broker
from services.notifications.changes import Messaging
from services.notifications.channels import IntakeContacts
from services.notifications.rendering import Templates
from services.notifications.settings import NotificationsSettings
from tests.service.conftest import TOKENS, service_app
from tests.service.memory_mongo import MemoryDatabase

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]
EXAMPLES = 20
"""Per operation: enough to reach each error the document lists, small enough for `make test`."""


def _app(service: str, routers: list[object], *, consumes: bool, **state: object) -> FastAPI:
    app = service_app(service, routers, consumes=consumes)
    database = MemoryDatabase()
    app.state.authenticator = Authenticator({token: role for role, token in TOKENS.items()})
    app.state.dependencies = Dependencies()
    app.state.event_shelf = EventShelf(database[SET_ASIDE_COLLECTION])  # type: ignore[arg-type]
    for name, make in state.items():
        setattr(app.state, name, make(database) if callable(make) else make)  # type: ignore[operator]
    return app


INTAKE = _app(
    "intake",
    [intake_api.router],
    consumes=True,
    store=lambda database: IntakeStore(database, wake_relay=no_relay),
    placement_policy=load_placement_policy(),
    idempotency_keys=IdempotencyKeys,
    kafka=intake_broker(IntakeSettings(_env_file=None)),  # type: ignore[call-arg]
)
CARE_PLAN = _app(
    "care_plan",
    [care_plan_api.router, care_plan_api.groups],
    consumes=True,
    store=lambda database: CarePlanStore(database, wake_relay=no_relay),
    policy=load_policy(),
    kafka=care_plan_broker(CarePlanSettings(_env_file=None)),  # type: ignore[call-arg]
    clinic_timezone=CarePlanSettings(_env_file=None).clinic_timezone,  # type: ignore[call-arg]
    consents=IntakeConsents(
        CarePlanSettings(_env_file=None),  # type: ignore[call-arg]
        Dependencies(),
        transport=httpx.MockTransport(lambda _: httpx.Response(404, json={"detail": "episode not found"})),
    ),
)
NOTIFICATIONS_SETTINGS = NotificationsSettings(_env_file=None, contact_hash_key="key", intake_url="http://intake.test")  # type: ignore[call-arg]


def _messaging(database: MemoryDatabase) -> Messaging:
    templates = Templates(None, NOTIFICATIONS_SETTINGS.clinic_timezone)
    nobody_known = httpx.MockTransport(lambda _: httpx.Response(404, json={"detail": "episode not found"}))
    contacts = IntakeContacts(NOTIFICATIONS_SETTINGS, Dependencies(), transport=nobody_known)
    policy = load_checked_policy(NOTIFICATIONS_SETTINGS, templates)
    parts = assemble(NOTIFICATIONS_SETTINGS, policy, templates, database, no_relay, Dependencies(),  # type: ignore[arg-type]
                     contacts=contacts)  # fmt: skip
    return asyncio.run(parts)[0]


NOTIFICATIONS = _app(
    "notifications",
    [notifications_api.router],
    consumes=True,
    messaging=_messaging,
    kafka=notifications_broker(NOTIFICATIONS_SETTINGS),
)
intake_schema = schemathesis.openapi.from_asgi("/openapi.json", INTAKE)
care_plan_schema = schemathesis.openapi.from_asgi("/openapi.json", CARE_PLAN)
notifications_schema = schemathesis.openapi.from_asgi("/openapi.json", NOTIFICATIONS)


def _call_as_allowed_role(case: schemathesis.Case) -> None:
    """The first role the endpoint does not refuse (403), then every check on its answer."""
    response = None
    for role in Role:
        response = case.call(headers={"Authorization": f"Bearer {TOKENS[role]}"})
        if response.status_code != 403:
            break
    assert response is not None
    case.validate_response(response, checks=CHECKS)


@intake_schema.exclude(path_regex="^/health").parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_intake_answers_as_documented(case: schemathesis.Case) -> None:
    _call_as_allowed_role(case)


@care_plan_schema.exclude(path_regex="^/health").parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_care_plan_answers_as_documented(case: schemathesis.Case) -> None:
    _call_as_allowed_role(case)


@notifications_schema.exclude(path_regex="^/health").parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_notifications_answers_as_documented(case: schemathesis.Case) -> None:
    _call_as_allowed_role(case)


@pytest.mark.parametrize("app", [INTAKE, CARE_PLAN, NOTIFICATIONS], ids=["intake", "care_plan", "notifications"])
def test_every_error_answer_is_documented_with_its_body(app: FastAPI) -> None:
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"
