"""What caseload's endpoints depend on: its parts (set at start-up) and who may call."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.auth import Principal, Role, require_roles
from services.common.deps import from_state

from .names import IntakeDirectory
from .queries import Caseload

CaseloadDep = Annotated[Caseload, Depends(from_state("caseload", Caseload))]
Directory = Annotated[IntakeDirectory, Depends(from_state("directory", IntakeDirectory))]

Reader = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTAKE_STAFF, Role.ADMIN, Role.INTEGRATION))]
"""The projection holds no name: staff and other clinic systems read it (each read audited)."""
Staff = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTAKE_STAFF))]
"""Who may see names (intake checks again, with the caller's own token)."""
NAME_ROLES = frozenset({Role.CLINICIAN, Role.INTAKE_STAFF})
