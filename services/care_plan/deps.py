"""What care_plan's endpoints depend on: its store and policy (set at start-up) and who may call."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.auth import Principal, Role, require_roles
from services.common.deps import from_state

from .consents import IntakeConsents
from .domain.policy import CarePolicy
from .store import CarePlanStore

Store = Annotated[CarePlanStore, Depends(from_state("store", CarePlanStore))]
Policy = Annotated[CarePolicy, Depends(from_state("policy", CarePolicy))]
ClinicZone = Annotated[str, Depends(from_state("clinic_timezone", str))]
Consents = Annotated[IntakeConsents, Depends(from_state("consents", IntakeConsents))]

Reader = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTAKE_STAFF, Role.INTEGRATION, Role.ADMIN))]
Recorder = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTAKE_STAFF, Role.INTEGRATION))]
Clinician = Annotated[Principal, Depends(require_roles(Role.CLINICIAN))]
Authorizer = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTEGRATION))]
PlanReader = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTEGRATION))]
"""Who reads a treatment plan (clinical narrative, minimum necessary): clinicians, and the EHR's integration."""
Acknowledger = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTAKE_STAFF))]
"""Staff who record the patient's agreement to a signed plan."""
Admin = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
Integration = Annotated[Principal, Depends(require_roles(Role.INTEGRATION))]
ClinicianOrAdmin = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.ADMIN))]
