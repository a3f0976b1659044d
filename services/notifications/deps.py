"""What notifications' endpoints depend on: its parts (set at start-up) and who may call."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.auth import Principal, Role, require_roles
from services.common.deps import from_state

from .changes import Messaging

MessagingDep = Annotated[Messaging, Depends(from_state("messaging", Messaging))]

Reader = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTAKE_STAFF, Role.ADMIN, Role.INTEGRATION))]
Staff = Reader
"""Staff record opt-outs for a recipient who asked, by phone or in person."""
SmsProvider = Annotated[Principal, Depends(require_roles(Role.SMS_PROVIDER))]

Clinician = Annotated[Principal, Depends(require_roles(Role.CLINICIAN))]
"""Acknowledging a safety alert: a clinician has it."""
AlertReader = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.INTEGRATION))]
"""Reading safety alerts (their levels and reasons are clinical: each read is audited with the person)."""
