"""care_plan's HTTP API for the care team: who is the episode's primary clinician (HTTP only; beside ``api.py``,
which stays small)."""

from __future__ import annotations

from services.common.domain_errors import ServiceRouter
from services.common.schemas import V1_ERRORS, errors

from . import changes
from .deps import ClinicianOrAdmin, Policy, Store
from .domain.model import CarePlan
from .schemas import ERRORS, CareTeamIn

router = ServiceRouter(prefix="/v1", tags=["care plan"], responses=V1_ERRORS, error_table=ERRORS)


@router.put(
    "/episodes/{episode_id}/care-team",
    responses=errors(404, 409),
    summary="Assign the episode's primary clinician (publishes iop.care_team.changed with their subject, no name)",
    description="`primary_clinician` is the staff member's subject at the identity provider: a caseload's "
    '"mine" lists the episodes whose primary clinician is the caller. The display name stays in care_plan.',
)
async def put_care_team(
    episode_id: str, body: CareTeamIn, store: Store, policy: Policy, _: ClinicianOrAdmin
) -> CarePlan:
    return await changes.set_care_team(store, policy, episode_id, body.primary_clinician, body.display_name)
