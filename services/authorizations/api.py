"""The authorizations service's HTTP API: payers' authorizations of an episode, decisions and concurrent reviews on
them, physicians' certifications, and the UR coordinator's worklist.

HTTP only: parse the request, call the change (``changes.py``) or the read (``queries.py``); a change's refusal is
answered by its code (``schemas.ERRORS``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, status

from services.common.domain_errors import ServiceRouter
from services.common.schemas import V1_ERRORS, beyond_schema, errors
from services.common.utc import IsoDate
from stepwise_contract import ReviewReason

from . import changes, queries
from .deps import Certifier, Coordinator, DeskDep, Reader, Worklist
from .domain.model import AuthorizationError
from .domain.policy import PAYER_ID
from .schemas import (
    ERRORS,
    AuthorizationIn,
    AuthorizationOut,
    CertificationIn,
    CertificationOut,
    DecisionIn,
    ReviewOut,
    ReviewOutcomeIn,
)

DATES = {
    "end_before_start": "`end_date` is on or after the start date",
    "last_covered_day_outside": "`last_covered_day` is within the authorization's dates",
    "review_before_start": "`next_review_on` is on or after the start date",
}
"""The rules on an authorization's dates, which depend on the record a change makes (x-rules)."""

router = ServiceRouter(prefix="/v1", tags=["authorizations"], responses=V1_ERRORS, error_table=ERRORS)


@router.post(
    "/episodes/{episode_id}/authorizations",
    status_code=status.HTTP_201_CREATED,
    responses=errors(409),
    summary="Record a payer's authorization (the payer's number is stored, never published)",
    openapi_extra=beyond_schema(
        no_codes="`codes` are named for a level the payer policy gives no default codes", **DATES
    ),
)
async def record_authorization(
    episode_id: str, body: AuthorizationIn, desk: DeskDep, by: Coordinator
) -> AuthorizationOut:
    recorded = await changes.record_authorization(desk, episode_id, body.new(), by.who)
    return await queries.authorization(desk, episode_id, recorded.authorization_id)


@router.get(
    "/episodes/{episode_id}/authorizations",
    summary="An episode's authorizations: units used and remaining, projected exhaustion, review due and why",
)
async def list_authorizations(episode_id: str, desk: DeskDep, by: Reader) -> list[AuthorizationOut]:
    await desk.store.audited(by, "read_authorizations", episode_id)
    return await queries.authorizations_of(desk, episode_id)


@router.patch(
    "/authorizations/{authorization_id}",
    responses=errors(404),
    summary="A decision: status and the terms decided with it, with its reason (a new revision)",
    openapi_extra=beyond_schema(nothing_decided="a status or a term besides `reason`", **DATES),
)
async def decide(authorization_id: str, body: DecisionIn, desk: DeskDep, by: Coordinator) -> AuthorizationOut:
    episode_id = await _episode_of(desk, authorization_id)
    await changes.decide_authorization(desk, episode_id, authorization_id, body.decision(), by.who)
    return await queries.authorization(desk, episode_id, authorization_id)


@router.post(
    "/authorizations/{authorization_id}/reviews",
    status_code=status.HTTP_201_CREATED,
    responses=errors(404),
    summary="A concurrent review: outcome, units added, new end date, next review date (a new revision)",
    openapi_extra=beyond_schema(
        nothing_granted="a review `denied` or `pending` adds no units and no end date",
        units_not_counted="units are added only to an authorization that counts them",
        **DATES,
    ),
)
async def review(authorization_id: str, body: ReviewOutcomeIn, desk: DeskDep, by: Coordinator) -> AuthorizationOut:
    episode_id = await _episode_of(desk, authorization_id)
    await changes.review_authorization(desk, episode_id, authorization_id, body.review(), by.who)
    return await queries.authorization(desk, episode_id, authorization_id)


@router.post(
    "/episodes/{episode_id}/certifications",
    status_code=status.HTTP_201_CREATED,
    summary="A physician's certification of need (hours a week), for payers whose rules ask for one (Medicare IOP)",
)
async def certify(episode_id: str, body: CertificationIn, desk: DeskDep, by: Certifier) -> CertificationOut:
    made = await changes.certify(desk, episode_id, body.certified_on, body.hours_per_week, body.clinician, by.who)
    return CertificationOut(episode_id=episode_id, **made.model_dump(exclude={"episode_id"}))


@router.get("/reviews", summary="The UR worklist: reviews due, earliest first, with the reason and units left")
async def reviews(
    desk: DeskDep,
    by: Worklist,
    due_before: Annotated[IsoDate | None, Query(description="due before this day")] = None,
    reason: ReviewReason | None = None,
    payer: Annotated[str | None, Query(pattern=PAYER_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 200,
) -> list[ReviewOut]:
    found = await queries.worklist(desk, due_before, reason, payer, limit)
    await desk.store.audited(by, "read_reviews", *(line.episode_id for line in found))
    return found


async def _episode_of(desk: DeskDep, authorization_id: str) -> str:
    episode_id = await desk.store.episode_of(authorization_id)
    if episode_id is None:
        raise AuthorizationError("unknown_authorization", f"no authorization {authorization_id}")
    return episode_id
