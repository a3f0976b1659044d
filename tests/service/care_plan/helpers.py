"""The care_plan tier's set-up: its settings, policy and app, intake's answers and events, the first session and a
clock set into it."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from services.care_plan import api, api_moved, api_plan, care_team_api
from services.care_plan.consents import IntakeConsents
from services.care_plan.domain.groups import first_meeting_after
from services.care_plan.domain.measures import without_measures
from services.care_plan.domain.model import CarePlan
from services.care_plan.domain.policy import load_policy
from services.care_plan.settings import CarePlanSettings
from services.care_plan.store import CarePlanStore
from services.common.auth import Role
from services.common.dependencies import Dependencies
from services.common.utc import set_clock_offset, utc_now
from stepwise_contract import AssessmentCompleted, CareLevel, DimensionRatings, Reason, new_event
from tests.service.conftest import Events, as_role, service_app
from tests.service.fake_intake import listed

SETTINGS = CarePlanSettings(_env_file=None)
# Due measures have their own tests (test_measures.py); the others keep the timers and events of the calendar.
POLICY = without_measures(load_policy(SETTINGS.care_plan_policy_file))
CLINICIAN = as_role(Role.CLINICIAN)
APP = service_app(
    "care_plan", [api.router, care_team_api.router, api.groups, api_plan.router, api_moved.router], consumes=True
)
"""One app for the tier (its OpenAPI document, which the tier reads to name routes, is built once)."""


FAMILY_CONSENT = [listed("c-1", "family")]
"""Intake's answer for an episode whose consent names a family member for appointments (test_fakes_contract.py)."""


def consents_answering(recipients: list[dict[str, Any]], status_code: int = 200) -> IntakeConsents:
    """care_plan's consent check, with intake answering ``recipients`` for every episode."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/recipients") and request.url.params["scope"] == "appointments"
        return httpx.Response(status_code, json=recipients)

    return IntakeConsents(SETTINGS, Dependencies(), transport=httpx.MockTransport(answer))


def first_session_id(group_id: str = "iop-am") -> str:
    """The session a plan that joins ``group_id`` today meets first."""
    group = POLICY.group(group_id)
    assert group is not None
    today = utc_now().astimezone(ZoneInfo(SETTINGS.clinic_timezone)).date()
    return f"{group_id}-{first_meeting_after(group, today):%Y%m%d}"


def first_session_start(group_id: str = "iop-am") -> datetime:
    group = POLICY.group(group_id)
    assert group is not None
    day = datetime.strptime(first_session_id(group_id).removeprefix(f"{group_id}-"), "%Y%m%d").date()
    return datetime.combine(day, group.starts_at, tzinfo=ZoneInfo(SETTINGS.clinic_timezone))


@contextlib.contextmanager
def clock_at(moment: datetime) -> Iterator[None]:
    """care_plan's clock (this process's ``utc_now``) at ``moment`` for the block, as a test drill shifts it; then
    back where the tier's clock stood."""
    before = utc_now()
    set_clock_offset((moment - datetime.now(UTC)).total_seconds())
    try:
        yield
    finally:
        set_clock_offset((before - datetime.now(UTC)).total_seconds())


def once_the_first_session_began(group_id: str = "iop-am") -> contextlib.AbstractContextManager[None]:
    """Attendance is recorded after the session has begun: the clock 5 minutes into the first one."""
    return clock_at(first_session_start(group_id) + timedelta(minutes=5))


def assessment(
    episode_id: str, kind: str = "intake", level: CareLevel = CareLevel.IOP, **fields: Any
) -> AssessmentCompleted:
    return AssessmentCompleted(
        episode_id=episode_id,
        assessment_id=str(uuid.uuid4()),
        kind=kind,
        program="adult",
        assessed_at=utc_now(),
        dimensions=DimensionRatings(withdrawal=1, biomedical=0, emotional=2, readiness=2, relapse=2, environment=1),
        recommended_level=level,
        rationale=[Reason(code="recommended_level", text=f"Recommended level of care: {level.value}.")],
        policy_version="test",
        **fields,
    )


def intake_event(data: Any) -> Any:
    return new_event(data, source="/stepwise/intake")


async def active_plan(events: Events, store: CarePlanStore, level: CareLevel = CareLevel.IOP) -> str:
    episode_id = str(uuid.uuid4())
    await events.deliver(intake_event(assessment(episode_id, level=level)))
    stored = await store.get(episode_id)
    assert stored is not None
    return episode_id


ADMIN = as_role(Role.ADMIN)


def discharged(plan: CarePlan, now: datetime) -> CarePlan:
    return plan.model_copy(update={"status": "discharged", "ended_at": now})
