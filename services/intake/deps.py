"""What intake's endpoints depend on: its store and placement policy (set at start-up) and who may call."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.auth import Principal, Role, require_roles
from services.common.deps import from_state
from services.common.idempotency import IdempotencyKeys

from .domain.measures import MeasuresPolicy
from .domain.placement import PlacementPolicy
from .settings import LinkSettings, OutcomesSettings
from .store import IntakeStore

Store = Annotated[IntakeStore, Depends(from_state("store", IntakeStore))]
Policy = Annotated[PlacementPolicy, Depends(from_state("placement_policy", PlacementPolicy))]
Measures = Annotated[MeasuresPolicy, Depends(from_state("measures_policy", MeasuresPolicy))]
Outcomes = Annotated[OutcomesSettings, Depends(from_state("outcomes_settings", OutcomesSettings))]
LinkConfig = Annotated[LinkSettings, Depends(from_state("link_settings", LinkSettings))]
Keys = Annotated[IdempotencyKeys, Depends(from_state("idempotency_keys", IdempotencyKeys))]

Staff = Annotated[Principal, Depends(require_roles(Role.INTAKE_STAFF, Role.CLINICIAN))]
Clinical = Annotated[Principal, Depends(require_roles(Role.INTAKE_STAFF, Role.CLINICIAN, Role.INTEGRATION))]
Clinician = Annotated[Principal, Depends(require_roles(Role.CLINICIAN))]
NotificationsService = Annotated[Principal, Depends(require_roles(Role.NOTIFICATIONS))]
ConsentReader = Annotated[Principal, Depends(require_roles(Role.NOTIFICATIONS, Role.CARE_PLAN))]
"""The services that ask whom a consent allows to be told (never their contact data)."""
AdminOrClinician = Annotated[Principal, Depends(require_roles(Role.ADMIN, Role.CLINICIAN))]
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
