"""care_plan's HTTP API of the treatment plan: put a version, read it (audited), sign, record the patient's
agreement and reviews; and the audit log of who read or changed a treatment plan (admin).

HTTP only: parse the request, call the change (``changes.py``) or the read (``queries.py``), audit it with the
person (``store.audit``); a refusal is answered by its code (``schemas.ERRORS``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from services.common.auth import Principal
from services.common.domain_errors import ServiceRouter
from services.common.schemas import V1_ERRORS, WHOLE_NUMBERS, beyond_schema, errors
from services.common.utc import TIME_RANGE, Rfc3339

from . import changes, queries
from .deps import Acknowledger, Admin, Clinician, ClinicZone, PlanReader, Policy, Store
from .domain.model import CarePlan
from .domain.policy import CarePolicy
from .schemas import ERRORS
from .schemas_plan import AcknowledgeIn, PlanAuditEntry, ReviewIn, SignIn, TreatmentPlanIn, TreatmentPlanOut
from .store import CarePlanStore

router = ServiceRouter(prefix="/v1", tags=["treatment plan"], responses=V1_ERRORS, error_table=ERRORS)
PLAN = "/episodes/{episode_id}/treatment-plan"


async def _answer(
    store: CarePlanStore, policy: CarePolicy, by: Principal, action: str, plan: CarePlan
) -> TreatmentPlanOut:
    """The plan as answered, the access audited with the person first (every answer holds the plan's text)."""
    answer = queries.treatment_plan(plan, policy)
    await store.audit(by, action, plan.episode_id, version=answer.current.version)
    return answer


@router.put(
    PLAN,
    responses=errors(404, 409),
    summary="Put a new version of the treatment plan (unsigned until signed; audited)",
    description="Each put whose problems differ from the latest version's is a new version; the same again changes "
    "nothing. A signed version stays in force until a newer one is signed. 409 once the plan holds "
    "`too_many_versions`, or when the episode has ended (`plan_not_active`).",
)
async def put_plan(
    episode_id: str, body: TreatmentPlanIn, store: Store, policy: Policy, timezone: ClinicZone, by: Clinician
) -> TreatmentPlanOut:
    plan = await changes.put_treatment_plan(store, policy, episode_id, body.problems, by.who, timezone)
    return await _answer(store, policy, by, "put_treatment_plan", plan)


@router.get(
    PLAN,
    responses=errors(404),
    summary="The treatment plan: current version with objectives' progress, history, reviews (audited)",
)
async def get_plan(episode_id: str, store: Store, policy: Policy, by: PlanReader) -> TreatmentPlanOut:
    return await _answer(store, policy, by, "read_treatment_plan", await queries.plan(store, episode_id))


@router.post(
    f"{PLAN}/sign",
    responses=errors(404, 409),
    summary="Sign the latest version: it is in force, and counts as a review (publishes iop.treatment_plan.signed)",
    description="The signer is the token's person. 409 `version_changed` when a newer version was put since the "
    "one named; signing a signed version changes nothing.",
    openapi_extra=beyond_schema(unknown_version="`version` is one of the plan's versions", **WHOLE_NUMBERS),
)
async def sign_plan(episode_id: str, body: SignIn, store: Store, policy: Policy, by: Clinician) -> TreatmentPlanOut:
    plan = await changes.sign_treatment_plan(store, policy, episode_id, body.version, by.who)
    return await _answer(store, policy, by, "sign_treatment_plan", plan)


@router.post(
    f"{PLAN}/acknowledge",
    responses=errors(404, 409),
    summary="Record the patient's agreement to a signed version: how and when (staff record it; audited)",
    openapi_extra=beyond_schema(
        unknown_version="`version` is one of the plan's versions",
        plan_not_signed="`version` is signed",
        agreed_in_future="`agreed_at` is not ahead of now",
        **TIME_RANGE,
        **WHOLE_NUMBERS,
    ),
)
async def acknowledge_plan(
    episode_id: str, body: AcknowledgeIn, store: Store, policy: Policy, by: Acknowledger
) -> TreatmentPlanOut:
    plan = await changes.acknowledge_treatment_plan(store, policy, episode_id, body.version, body.how,
                                                    body.agreed_at, by.who)  # fmt: skip
    return await _answer(store, policy, by, "acknowledge_treatment_plan", plan)


@router.post(
    f"{PLAN}/review",
    responses=errors(404, 409),
    summary="Record a review of the plan in force (continued or revised): the reviews due are done",
    description="The reviewer is the token's person; the next periodic review is due `review_days` of the level "
    "on. 409 `plan_not_signed` before a version was signed.",
)
async def review_plan(episode_id: str, body: ReviewIn, store: Store, policy: Policy, by: Clinician) -> TreatmentPlanOut:
    plan = await changes.review_treatment_plan(store, policy, episode_id, body.outcome, by.who)
    return await _answer(store, policy, by, "review_treatment_plan", plan)


@router.get(
    "/audit",
    summary="Who read or changed which episode's treatment plan, and when (admin only)",
    openapi_extra=beyond_schema(**TIME_RANGE),
)
async def audit_log(
    store: Store,
    _: Admin,
    episode_id: str | None = None,
    action: str | None = None,
    person: Annotated[
        str | None, Query(description="Entries by this person: their subject or username at the identity provider.")
    ] = None,
    since: Rfc3339 | None = None,
    until: Rfc3339 | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PlanAuditEntry]:
    entries = await store.audit_entries(
        episode_id=episode_id, action=action, person=person, since=since, until=until, limit=limit
    )
    return [PlanAuditEntry.model_validate(entry) for entry in entries]
