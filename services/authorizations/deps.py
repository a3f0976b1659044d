"""What the authorizations service's endpoints depend on: its desk (store and rules, set at start-up) and who may
call."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.auth import Principal, Role, require_roles
from services.common.deps import from_state

from .changes import Desk

DeskDep = Annotated[Desk, Depends(from_state("desk", Desk))]

Coordinator = Annotated[Principal, Depends(require_roles(Role.UTILIZATION_REVIEW, Role.ADMIN, Role.INTEGRATION))]
"""Recording and deciding authorizations: the UR coordinators, clinic IT, the clinic's systems."""
Reader = Annotated[
    Principal, Depends(require_roles(Role.UTILIZATION_REVIEW, Role.ADMIN, Role.CLINICIAN, Role.INTEGRATION))
]
Worklist = Annotated[Principal, Depends(require_roles(Role.UTILIZATION_REVIEW, Role.ADMIN, Role.CLINICIAN))]
Certifier = Annotated[
    Principal, Depends(require_roles(Role.UTILIZATION_REVIEW, Role.CLINICIAN, Role.ADMIN, Role.INTEGRATION))
]
"""Recording a physician's certification: the coordinator, the clinician, or the EHR."""
