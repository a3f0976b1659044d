"""Bearer-token authentication with roles from API_TOKENS; the roles are a closed set."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer


class Role(StrEnum):
    """Who may call what. A token in API_TOKENS carries exactly one of these."""

    INTAKE_STAFF = "intake_staff"
    CLINICIAN = "clinician"
    INTEGRATION = "integration"
    """Another clinic system (EHR, scheduling, billing) acting for the clinic."""
    ADMIN = "admin"
    """Clinic IT: audit log, set-aside events."""
    NOTIFICATIONS = "notifications"
    """The notifications service, looking up contact data and consents at intake."""
    CARE_PLAN = "care_plan"
    """The care_plan service, checking at intake for a consent before it books a family session."""
    SMS_PROVIDER = "sms_provider"
    """The SMS provider's reply callback."""


@dataclass(frozen=True, slots=True)
class Principal:
    role: Role
    token_id: str
    """A short fingerprint of the token, safe to log and audit."""


_bearer = HTTPBearer(auto_error=False, description="A token from API_TOKENS (token:role).")


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def authenticate(token_roles: dict[str, Role], presented: str) -> Principal | None:
    for token, role in token_roles.items():
        if hmac.compare_digest(token.encode(), presented.encode()):
            return Principal(role=role, token_id=_fingerprint(token))
    return None


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: 401 without a valid token, 403 when its role is not one of ``roles``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        principal = credentials and authenticate(request.app.state.token_roles, credentials.credentials)
        if not principal:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
            )
        if principal.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role!r} may not do this")
        return principal

    return dependency


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``; none for an empty one (never ``Bearer `` with nothing after it)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
