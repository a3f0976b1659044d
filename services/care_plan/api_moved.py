"""care_plan's routes kept for one release after they moved to another service: each answers 410 with where to go.

HTTP only; nothing here reads or changes a care plan."""

from __future__ import annotations

from fastapi import status
from fastapi.responses import JSONResponse

from services.common.domain_errors import ServiceRouter
from services.common.schemas import V1_ERRORS

from .deps import Authorizer
from .schemas import ERRORS, AuthorizationIn, MovedOut

router = ServiceRouter(prefix="/v1", tags=["moved"], responses=V1_ERRORS, error_table=ERRORS)


@router.put(
    "/episodes/{episode_id}/authorization",
    status_code=status.HTTP_410_GONE,
    responses={410: {"model": MovedOut, "description": "Moved to the authorizations service (issue 26)."}},
    deprecated=True,
    summary="Gone: payers' authorizations moved to the authorizations service (the body names where)",
)
async def set_authorization(episode_id: str, _body: AuthorizationIn, _: Authorizer) -> JSONResponse:
    where = f"POST /v1/episodes/{episode_id}/authorizations on the authorizations service"
    moved = MovedOut(detail="payers' authorizations moved to the authorizations service", location=where)
    return JSONResponse(moved.model_dump(), status_code=status.HTTP_410_GONE)
