"""Each service's API against its own OpenAPI document, by schemathesis: generated requests (valid and
invalid) to every operation, with a token of a role allowed to call it. No answer may be a 5xx, have a
status the document does not list, or a body off its documented schema; a request valid by the document is
not refused as invalid (422), and one invalid by it is refused; a method the path does not take is a 405
listing those it does. A bounded budget per operation.

The stores are seeded with real episodes before the run, through the services' own APIs and events (intake
registers patients, opens episodes, records assessments, consents and a drug screen; care_plan places the
plans, books an appointment, names a primary clinician, puts and signs a treatment plan and graduates one;
authorizations records a payer's authorization; notifications plans their messages, raises a safety alert and
enrols the graduate in the alumni group; caseload projects every event), and care_plan, notifications and
caseload (its names and search, with the caller's own token) ask intake's own app. Generated path
parameters are swapped, about half the time, for ids of what was seeded, so success answers are exercised and
checked against their schemas, not only the 404s of ids nobody has.

What a request's schema cannot state (the moment it is sent, the record it changes, a phone number's length
for its region) each operation names under ``x-rules``: a 422 of one of those types is the API keeping a rule
the document states in words, and is not counted against it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import schemathesis
from aiokafka import ConsumerRecord
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from services.authorizations import api as authorizations_api
from services.authorizations.app import create_broker as authorizations_broker
from services.authorizations.changes import Desk
from services.authorizations.domain.coverage import Rules
from services.authorizations.domain.policy import load_policy as load_authorizations_policy
from services.authorizations.settings import AuthorizationsSettings
from services.authorizations.store import COVERAGE, CoverageStore
from services.care_plan import api as care_plan_api
from services.care_plan import api_moved as care_plan_api_moved
from services.care_plan import api_plan as care_plan_api_plan
from services.care_plan import care_team_api
from services.care_plan.app import create_broker as care_plan_broker
from services.care_plan.consents import IntakeConsents
from services.care_plan.domain.policy import load_policy
from services.care_plan.handlers import Planning
from services.care_plan.schemas_plan import EXAMPLE_PLAN
from services.care_plan.settings import CarePlanSettings
from services.care_plan.store import PLANS, CarePlanStore
from services.caseload import api as caseload_api
from services.caseload.app import create_broker as caseload_broker
from services.caseload.names import IntakeDirectory
from services.caseload.queries import Caseload
from services.caseload.settings import CaseloadSettings
from services.caseload.store import CaseloadStore
from services.common.auth import Authenticator, Role
from services.common.consumer import SET_ASIDE, EventBatch, EventShelf, set_aside_reason
from services.common.dependencies import Dependencies
from services.common.idempotency import IdempotencyKeys
from services.common.kafka import ServiceBroker
from services.common.outbox import OutboxRelay, no_relay
from services.common.schemas import RULES
from services.common.service import SET_ASIDE_COLLECTION, http_app
from services.common.utc import utc_now
from services.intake import api as intake_api
from services.intake import lookup_api as intake_lookup_api
from services.intake.app import create_broker as intake_broker
from services.intake.domain.measures import load_measures_policy
from services.intake.domain.placement import load_placement_policy
from services.intake.settings import IntakeSettings
from services.intake.store import EPISODES, IntakeStore
from services.notifications import api as notifications_api
from services.notifications.app import assemble, load_checked_policy
from services.notifications.app import create_broker as notifications_broker
from services.notifications.changes import Messaging
from services.notifications.channels import IntakeContacts
from services.notifications.rendering import Templates
from services.notifications.settings import NotificationsSettings
from tests.service.conftest import TOKENS
from tests.service.memory_mongo import MemoryDatabase

EXAMPLES = int(os.environ.get("STEPWISE_API_EXAMPLES", "20"))
"""Per operation: enough to reach each error the document lists, small enough for `make test`
(``STEPWISE_API_EXAMPLES=500`` for a deeper run)."""
INTAKE_URL = "http://intake.test"


def _accepts_valid_data(ctx: CheckContext, response: Any, case: schemathesis.Case[Any]) -> bool | None:
    """schemathesis' positive-data acceptance, but for a 422 whose every entry is a rule the operation names
    beyond its schema (``x-rules``): the document says it in words, since no schema keyword can. A 410 (a
    consent revoked or expired) is the record's state, as a 404 or 409 is."""
    if response.status_code == 410:
        return None
    rules = case.operation.definition.raw.get(RULES, {})
    if response.status_code == 422 and rules:
        entries = json.loads(response.content)["detail"]
        if entries and all(entry["type"] in rules for entry in entries):
            return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    _accepts_valid_data,
    negative_data_rejection,
    unsupported_method,
    allow_header_conformance,
]


# The five services, each over its own in-memory store, as their start-up builds them.


def _app(service: str, routers: list[Any], database: MemoryDatabase, **state: Any) -> FastAPI:
    components = state.pop("components", None)
    app = http_app(f"Stepwise {service}", "", routers, consumes=True, components=components)
    app.state.authenticator = Authenticator({token: role for role, token in TOKENS.items()})
    app.state.dependencies = Dependencies()
    app.state.event_shelf = EventShelf(database[SET_ASIDE_COLLECTION])  # type: ignore[arg-type]
    for name, value in state.items():
        setattr(app.state, name, value)
    return app


INTAKE_DB, CARE_PLAN_DB, NOTIFICATIONS_DB = MemoryDatabase(), MemoryDatabase(), MemoryDatabase()
AUTHORIZATIONS_DB, CASELOAD_DB = MemoryDatabase(), MemoryDatabase()
INTAKE_SETTINGS = IntakeSettings(_env_file=None)
INTAKE_KAFKA = intake_broker(INTAKE_SETTINGS)
INTAKE_STORE = IntakeStore(INTAKE_DB, wake_relay=no_relay)  # type: ignore[arg-type]
INTAKE = _app(
    "intake",
    [intake_api.router, intake_lookup_api.router],
    INTAKE_DB,
    store=INTAKE_STORE,
    placement_policy=load_placement_policy(),
    measures_policy=load_measures_policy(),
    outcomes_settings=INTAKE_SETTINGS.outcomes,
    link_settings=INTAKE_SETTINGS.links,
    idempotency_keys=IdempotencyKeys(INTAKE_DB),  # type: ignore[arg-type]
    kafka=INTAKE_KAFKA,
)
ASKING_INTAKE = httpx.ASGITransport(app=INTAKE)
"""care_plan, notifications and caseload ask intake's own app, over the seeded store."""

CARE_PLAN_ROUTERS = [care_plan_api.router, care_team_api.router, care_plan_api.groups, care_plan_api_plan.router,
                     care_plan_api_moved.router]  # fmt: skip
CARE_PLAN_SETTINGS = CarePlanSettings(_env_file=None, intake_url=INTAKE_URL, intake_token=TOKENS[Role.CARE_PLAN])
CARE_PLAN_POLICY = load_policy()
CARE_PLAN_KAFKA = care_plan_broker(CARE_PLAN_SETTINGS)
CARE_PLAN_STORE = CarePlanStore(CARE_PLAN_DB, wake_relay=no_relay)  # type: ignore[arg-type]
CARE_PLAN = _app(
    "care_plan",
    [
        care_plan_api.router,
        care_team_api.router,
        care_plan_api.groups,
        care_plan_api_plan.router,
        care_plan_api_moved.router,
    ],
    CARE_PLAN_DB,
    components=care_plan_api.policy_components(CARE_PLAN_POLICY),  # as create_app gives its loaded policy's
    store=CARE_PLAN_STORE,
    policy=CARE_PLAN_POLICY,
    kafka=CARE_PLAN_KAFKA,
    clinic_timezone=CARE_PLAN_SETTINGS.clinic_timezone,
    consents=IntakeConsents(CARE_PLAN_SETTINGS, Dependencies(), transport=ASKING_INTAKE),
)

NOTIFICATIONS_SETTINGS = NotificationsSettings(
    _env_file=None, contact_hash_key="key", intake_url=INTAKE_URL, intake_token=TOKENS[Role.NOTIFICATIONS]
)
NOTIFICATIONS_KAFKA = notifications_broker(NOTIFICATIONS_SETTINGS)


def _messaging() -> Messaging:
    templates = Templates(None, NOTIFICATIONS_SETTINGS.clinic_timezone)
    contacts = IntakeContacts(NOTIFICATIONS_SETTINGS, Dependencies(), transport=ASKING_INTAKE)
    policy = load_checked_policy(NOTIFICATIONS_SETTINGS, templates)
    parts = assemble(NOTIFICATIONS_SETTINGS, policy, templates, NOTIFICATIONS_DB, no_relay, Dependencies(),  # type: ignore[arg-type]
                     contacts=contacts)  # fmt: skip
    return asyncio.run(parts)[0]


MESSAGING = _messaging()
NOTIFICATIONS = _app(
    "notifications", [notifications_api.router], NOTIFICATIONS_DB, messaging=MESSAGING, kafka=NOTIFICATIONS_KAFKA
)

AUTHORIZATIONS_SETTINGS = AuthorizationsSettings(_env_file=None)
AUTHORIZATIONS_KAFKA = authorizations_broker(AUTHORIZATIONS_SETTINGS)
DESK = Desk(
    CoverageStore(AUTHORIZATIONS_DB, wake_relay=no_relay),  # type: ignore[arg-type]
    Rules(
        load_authorizations_policy(AUTHORIZATIONS_SETTINGS.authorizations_policy_file),
        AUTHORIZATIONS_SETTINGS.review_lead_business_days,
        AUTHORIZATIONS_SETTINGS.units_low_days,
        AUTHORIZATIONS_SETTINGS.clinic_timezone,
    ),
)
AUTHORIZATIONS = _app(
    "authorizations", [authorizations_api.router], AUTHORIZATIONS_DB, desk=DESK, kafka=AUTHORIZATIONS_KAFKA
)

CASELOAD_SETTINGS = CaseloadSettings(_env_file=None, intake_url=INTAKE_URL)
CASELOAD_KAFKA = caseload_broker(CASELOAD_SETTINGS)
CASELOAD_ZONE = ZoneInfo(CASELOAD_SETTINGS.clinic_timezone)
CASELOAD_STORE = CaseloadStore(CASELOAD_DB, CASELOAD_SETTINGS.caseload_missed_in_a_row, CASELOAD_ZONE)  # type: ignore[arg-type]
CASELOAD = _app(
    "caseload",
    [caseload_api.router],
    CASELOAD_DB,
    caseload=Caseload(CASELOAD_STORE, CASELOAD_ZONE, CASELOAD_SETTINGS.caseload_missed_in_a_row),
    directory=IntakeDirectory(INTAKE_URL, transport=ASKING_INTAKE),  # names asked with the caller's own token
    stream_poll_seconds=CASELOAD_SETTINGS.stream_poll_seconds,
    kafka=CASELOAD_KAFKA,
)


# Seeding: real episodes through the services' APIs, their events delivered as the consumers apply them.


class Bus:
    """Each service's outbox relayed to the handlers of every service that consumes its topics, in order; an
    event a handler sets aside goes to that service's shelf, as its consumer would."""

    def __init__(self) -> None:
        self.consumers: list[tuple[ServiceBroker, Any, EventShelf]] = [
            (INTAKE_KAFKA, INTAKE_STORE, INTAKE.state.event_shelf),
            (CARE_PLAN_KAFKA, Planning(CARE_PLAN_STORE, CARE_PLAN_POLICY, CARE_PLAN_SETTINGS.clinic_timezone),
             CARE_PLAN.state.event_shelf),
            (NOTIFICATIONS_KAFKA, MESSAGING, NOTIFICATIONS.state.event_shelf),
            (AUTHORIZATIONS_KAFKA, DESK, AUTHORIZATIONS.state.event_shelf),
            (CASELOAD_KAFKA, CASELOAD_STORE, CASELOAD.state.event_shelf),
        ]  # fmt: skip
        self.relays = [
            OutboxRelay([INTAKE_DB[EPISODES]], self.deliver),  # type: ignore[list-item]
            OutboxRelay([CARE_PLAN_DB[PLANS]], self.deliver),  # type: ignore[list-item]
            OutboxRelay([AUTHORIZATIONS_DB[COVERAGE]], self.deliver),  # type: ignore[list-item]
        ]
        self.offset = 0

    async def deliver(self, stored: dict[str, Any]) -> None:
        self.offset += 1
        value = stored["value"].encode()
        record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
            topic=stored["topic"], partition=0, offset=self.offset, timestamp=0, timestamp_type=0,
            key=stored["key"].encode(), value=value, checksum=None, serialized_key_size=-1,
            serialized_value_size=len(value), headers=[(name, text.encode()) for name, text in stored["headers"]],
        )  # fmt: skip
        for kafka, resources, shelf in self.consumers:
            handlers = {model: handle for model, handle in kafka.handlers.items() if model.event_type == record.topic}
            if not handlers:
                continue
            try:
                await EventBatch(handlers).apply(record, resources)
            except SET_ASIDE as error:
                await shelf.set_aside(record, set_aside_reason(error), 1)

    async def settle(self) -> None:
        while sum([await relay.work_once() for relay in self.relays]):
            pass


SEEDED: list[dict[str, str]] = []
"""Path parameters of what the run starts with: each dict names ids that belong together."""


async def _call(app: FastAPI, method: str, path: str, role: Role, body: object = None) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        answer = await client.request(method, path, json=body, headers=headers)
    assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
    return answer.json() if answer.content else None


DIMENSIONS = {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1}
SUPPORT = {"name": "Sam Example", "email": "sam@example.org", "phone": "+12025550101", "relationship": "sister"}
NO_RISK = {"q1": False, "q2": False, "q6": False}
HIGH_RISK = {"q1": True, "q2": True, "q3": True, "q4": True, "q5": False, "q6": False}


async def _episode(name: str, born: str, track: str, cssrs: dict[str, bool]) -> tuple[str, str]:
    contact = {"name": "Lee Example", "phone": "+12025550102", "relationship": "brother"}
    patient = {"name": name, "date_of_birth": born, "email": f"{name.partition(' ')[0].lower()}@example.org",
               "phone": "+12025550123", "timezone": "America/Chicago", "emergency_contact": contact}  # fmt: skip
    patient_id = (await _call(INTAKE, "POST", "/v1/patients", Role.INTAKE_STAFF, patient))["patient_id"]
    opened = {"program": "adult", "track": track}
    episode_id = (await _call(INTAKE, "POST", f"/v1/patients/{patient_id}/episodes", Role.INTAKE_STAFF, opened))[
        "episode_id"
    ]
    assessment = {"dimensions": DIMENSIONS, "instruments": {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0], "cssrs": cssrs}}
    await _call(INTAKE, "POST", f"/v1/episodes/{episode_id}/assessments", Role.CLINICIAN, assessment)
    return patient_id, episode_id


async def _consent(episode_id: str, body: dict[str, Any]) -> str:
    consent = await _call(INTAKE, "POST", f"/v1/episodes/{episode_id}/consents", Role.INTAKE_STAFF, body)
    return str(consent["consent_id"])


async def _treatment_and_coverage(episode_id: str) -> str:
    """The episode's primary clinician, a signed treatment plan and a payer's authorization; the authorization's id."""
    care_team = {"primary_clinician": "7f3a9c1e-staff", "display_name": "Dr. Rivera"}
    await _call(CARE_PLAN, "PUT", f"/v1/episodes/{episode_id}/care-team", Role.CLINICIAN, care_team)
    plan = await _call(CARE_PLAN, "PUT", f"/v1/episodes/{episode_id}/treatment-plan", Role.CLINICIAN,
                       EXAMPLE_PLAN)  # fmt: skip
    await _call(CARE_PLAN, "POST", f"/v1/episodes/{episode_id}/treatment-plan/sign", Role.CLINICIAN,
                {"version": plan["current"]["version"]})  # fmt: skip
    today = utc_now().date()
    authorization = {"payer": "carelon", "authorization_number": "PA-2026-118", "level": "IOP", "unit": "day",
                     "units_authorized": 10, "start_date": today.isoformat(),
                     "end_date": (today + timedelta(days=40)).isoformat(), "status": "approved"}  # fmt: skip
    recorded = await _call(AUTHORIZATIONS, "POST", f"/v1/episodes/{episode_id}/authorizations",
                           Role.UTILIZATION_REVIEW, authorization)  # fmt: skip
    return str(recorded["authorization_id"])


async def _seed() -> None:
    bus = Bus()
    for app in (INTAKE, CARE_PLAN):
        await app.state.store.create_indexes()
    await INTAKE.state.idempotency_keys.create_indexes()
    await DESK.store.create_indexes()
    await CASELOAD_STORE.create_indexes()
    await CASELOAD_STORE.start()
    staying = await _episode("Alex Example", "1990-04-01", "morning", NO_RISK)
    alerted = await _episode("Jordan Example", "1985-09-12", "evening", HIGH_RISK)
    graduating = await _episode("Robin Example", "1979-02-03", "morning", NO_RISK)
    episode_id = staying[1]
    family = await _consent(episode_id, {"recipient_kind": "family", "recipient": SUPPORT,
                                         "scopes": ["appointments", "attendance", "general_progress"]})  # fmt: skip
    alumni = await _consent(graduating[1], {"recipient_kind": "alumni_group", "scopes": ["alumni_program"]})
    screen = {"collected_at": (utc_now() - timedelta(hours=2)).isoformat(),
              "results": [{"substance": "fentanyl", "result": "negative"}]}  # fmt: skip
    await _call(INTAKE, "POST", f"/v1/episodes/{episode_id}/drug-screens", Role.CLINICIAN, screen)
    await bus.settle()  # the plans are placed, their messages planned, the safety alert raised
    soon = (utc_now() + timedelta(days=3)).replace(hour=20, minute=0, second=0, microsecond=0)
    booked = await _call(CARE_PLAN, "POST", f"/v1/episodes/{episode_id}/appointments", Role.CLINICIAN,
                         {"kind": "family", "starts_at": soon.isoformat(), "minutes": 60})  # fmt: skip
    plan = await _call(CARE_PLAN, "GET", f"/v1/episodes/{episode_id}/care-plan", Role.CLINICIAN)
    sessions = [session["session_id"] for session in plan["schedule"]["sessions"][:3]] + [booked["session_id"]]
    excused = {"status": "excused", "notice_given_at": utc_now().isoformat()}
    await _call(CARE_PLAN, "POST", f"/v1/episodes/{episode_id}/sessions/{sessions[0]}/attendance", Role.CLINICIAN,
                excused)  # fmt: skip
    await _call(CARE_PLAN, "POST", f"/v1/episodes/{graduating[1]}/graduate", Role.CLINICIAN,
                {"reason": "moving away: care continues with a local OP"})  # fmt: skip
    authorization_id = await _treatment_and_coverage(episode_id)
    await bus.settle()  # the graduation closes the episode at intake and enrols the graduate in the alumni group
    opt_out = await _call(NOTIFICATIONS, "POST", "/v1/opt-outs", Role.CLINICIAN,
                          {"episode_id": episode_id, "recipient_kind": "family", "consent_id": family})  # fmt: skip
    alerts = await _call(NOTIFICATIONS, "GET", "/v1/safety-alerts", Role.CLINICIAN)
    assert alerts, "the high-risk C-SSRS answer raises a safety alert"
    for patient_id, episode in (staying, alerted, graduating):
        SEEDED.append({"patient_id": patient_id, "episode_id": episode})
    SEEDED.append({"episode_id": episode_id, "consent_id": family})
    SEEDED.append({"episode_id": graduating[1], "consent_id": alumni})
    SEEDED.extend({"episode_id": episode_id, "session_id": session} for session in sessions)
    for _, episode in (staying, alerted, graduating):
        plan = await _call(CARE_PLAN, "GET", f"/v1/episodes/{episode}/care-plan", Role.CLINICIAN)
        SEEDED.extend({"episode_id": episode, "recommendation_id": recommendation["recommendation_id"]}
                      for recommendation in plan["recommendations"])  # fmt: skip
    for group in CARE_PLAN_POLICY.groups:
        roster = await _call(CARE_PLAN, "GET", f"/v1/groups/{group.group_id}", Role.CLINICIAN)
        SEEDED.extend({"group_id": group.group_id, "session_id": s["session_id"]} for s in roster["next_sessions"][:2])
    SEEDED.append({"opt_out_id": opt_out["opt_out_id"]})
    SEEDED.append({"episode_id": episode_id, "authorization_id": authorization_id})
    SEEDED.extend({"alert_id": alert["alert_id"], "episode_id": alert["episode_id"]} for alert in alerts)
    for app in (INTAKE, CARE_PLAN, NOTIFICATIONS, AUTHORIZATIONS, CASELOAD):
        shelf = app.state.event_shelf
        SEEDED.extend([{"event_id": shelved["_id"]} async for shelved in shelf.collection.find({})])


asyncio.run(_seed())


def _seeded_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    """The generated path parameters, or (as often) ids of what was seeded that belong together."""
    names = set(path_parameters or ())
    known = [{name: ids[name] for name in names} for ids in SEEDED if names and names <= set(ids)]
    return st.one_of(st.just(path_parameters), st.sampled_from(known)) if known else st.just(path_parameters)


intake_schema = schemathesis.openapi.from_asgi("/openapi.json", INTAKE)
care_plan_schema = schemathesis.openapi.from_asgi("/openapi.json", CARE_PLAN)
notifications_schema = schemathesis.openapi.from_asgi("/openapi.json", NOTIFICATIONS)
authorizations_schema = schemathesis.openapi.from_asgi("/openapi.json", AUTHORIZATIONS)
caseload_schema = schemathesis.openapi.from_asgi("/openapi.json", CASELOAD)
for _schema in (intake_schema, care_plan_schema, notifications_schema, authorizations_schema, caseload_schema):
    _schema.hook("flatmap_path_parameters")(_seeded_path_parameters)
    # The token is ours (an allowed role's): a generated Authorization header would be replaced, and a request the
    # run made invalid by its token would be sent valid. Refusing tokens is tested on its own (tests/service).
    _schema.config.generation.update(with_security_parameters=False)


def _call_as_allowed_role(case: schemathesis.Case[Any]) -> None:
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
def test_intake_answers_as_documented(case: schemathesis.Case[Any]) -> None:
    _call_as_allowed_role(case)


@care_plan_schema.exclude(path_regex="^/health").parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_care_plan_answers_as_documented(case: schemathesis.Case[Any]) -> None:
    _call_as_allowed_role(case)


@notifications_schema.exclude(path_regex="^/health").parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_notifications_answers_as_documented(case: schemathesis.Case[Any]) -> None:
    _call_as_allowed_role(case)


@authorizations_schema.exclude(path_regex="^/health").parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_authorizations_answers_as_documented(case: schemathesis.Case[Any]) -> None:
    _call_as_allowed_role(case)


# The worklist stream is left out: it answers as long as its client listens (``once=true`` until the first change),
# and a generated request, sent in-process, listens until the body ends; it never would with nothing changing.
# Its answers are checked in tests/service/caseload (test_the_stream_announces_changed_worklists).
@caseload_schema.exclude(path_regex="^/health").exclude(path="/v1/worklists/stream").parametrize()
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), deadline=None)
def test_caseload_answers_as_documented(case: schemathesis.Case[Any]) -> None:
    _call_as_allowed_role(case)


APPS = {"intake": INTAKE, "care_plan": CARE_PLAN, "notifications": NOTIFICATIONS, "authorizations": AUTHORIZATIONS,
        "caseload": CASELOAD}  # fmt: skip


@pytest.mark.parametrize("app", APPS.values(), ids=APPS.keys())
def test_every_error_answer_is_documented_with_its_body(app: FastAPI) -> None:
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                assert {"401", "403"} <= set(operation["responses"]), f"{method} {path}"


def test_the_run_starts_from_real_records() -> None:
    """What the run's path parameters are drawn from: every kind of id the APIs take, of records that exist."""
    kinds: Mapping[str, int] = {name: sum(name in ids for ids in SEEDED) for name in
                                ("patient_id", "episode_id", "consent_id", "session_id", "group_id", "opt_out_id",
                                 "alert_id", "authorization_id")}  # fmt: skip
    assert all(kinds.values()), kinds
