"""Bearer-token authentication: access tokens from the clinic's OpenID Connect provider (people) and static
tokens from API_TOKENS (service accounts, and everyone where no provider is configured); the roles are a closed
set."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .oidc import OidcVerifier, ProviderUnavailable, TokenRejected, looks_like_jwt
from .roles import Role

__all__ = [
    "SERVICE_ROLES",
    "Authenticator",
    "Caller",
    "Principal",
    "Role",
    "Unauthenticated",
    "bearer",
    "fingerprint",
    "require_roles",
]

log = logging.getLogger(__name__)


SERVICE_ROLES = frozenset({Role.NOTIFICATIONS, Role.CARE_PLAN, Role.SMS_PROVIDER, Role.INTEGRATION})
"""Software, not people: the roles whose static tokens stay when staff sign in at the identity provider."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a call: the role it is made in, and, for a person signed in at the identity provider, who."""

    role: Role
    token_id: str
    """A short fingerprint of the token (or an access token's ``jti``), safe to log and audit."""
    subject: str | None = None
    """The identity provider's stable id of the person (``sub``); None for a static token."""
    username: str | None = None
    """Their preferred username, as the provider gives it."""

    @property
    def who(self) -> str:
        """What records name as the one who did it: the person, or the static token's fingerprint."""
        return self.username or self.subject or f"token:{self.token_id}"


@dataclass(frozen=True)
class Caller:
    """An authenticated bearer: every role its token carries."""

    roles: frozenset[Role]
    token_id: str
    subject: str | None = None
    username: str | None = None

    def acting_as(self, allowed: tuple[Role, ...]) -> Principal | None:
        role = next((role for role in allowed if role in self.roles), None)
        return None if role is None else Principal(role, self.token_id, self.subject, self.username)


_bearer = HTTPBearer(
    auto_error=False, description="An access token from the clinic's identity provider, or a token from API_TOKENS."
)


def fingerprint(token: str) -> str:
    """A short, one-way fingerprint of a token: safe to log, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


class Authenticator:
    """Who a bearer token is: a static token (API_TOKENS) in a role it may be used for, or, with OpenID Connect
    configured, a valid access token from the clinic's identity provider."""

    def __init__(
        self,
        static: dict[str, Role],
        static_roles_allowed: frozenset[Role] | None = None,
        oidc: OidcVerifier | None = None,
    ) -> None:
        self._static = static
        self._static_allowed = frozenset(Role) if static_roles_allowed is None else static_roles_allowed
        self.oidc = oidc

    async def authenticate(self, presented: str) -> Caller:
        """The caller; raises Unauthenticated (401) or HTTPException 503 (the provider's keys cannot be had)."""
        for token, role in self._static.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                if role not in self._static_allowed:
                    raise Unauthenticated("invalid_token", f"a static token may not be used for the {role} role")
                return Caller(frozenset({role}), fingerprint(token))
        if self.oidc is None or not looks_like_jwt(presented):
            raise Unauthenticated("invalid_token", "unknown token")
        try:
            claims = await self.oidc.verify(presented)
        except TokenRejected as rejected:
            log.info("access token refused (%s): jti or fingerprint %s", rejected.reason, rejected.token_id)
            raise Unauthenticated("invalid_token", rejected.reason) from None
        except ProviderUnavailable as down:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"cannot check the access token: the identity provider's keys cannot be had ({down})",
                {"Retry-After": "10"},
            ) from None
        return Caller(claims.roles, claims.token_id, claims.subject, claims.username)

    async def close(self) -> None:
        if self.oidc is not None:
            await self.oidc.close()


class Unauthenticated(HTTPException):
    """401 with a ``WWW-Authenticate`` header naming the error class and the reason (never the token)."""

    def __init__(self, error: str, reason: str) -> None:
        challenge = f'Bearer error="{error}", error_description="{reason}"'
        super().__init__(status.HTTP_401_UNAUTHORIZED, f"{error}: {reason}", {"WWW-Authenticate": challenge})


def require_roles(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: 401 without a valid token, 403 when it carries none of ``roles``. The principal acts
    in the first of ``roles`` its token carries."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        if not credentials:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", {"WWW-Authenticate": "Bearer"})
        # The edge checked the token before the body was read (services/common/edge.py) and left the caller.
        caller: Caller | None = getattr(request.state, "caller", None)
        if caller is None:
            authenticator: Authenticator = request.app.state.authenticator
            caller = await authenticator.authenticate(credentials.credentials)
        principal = caller.acting_as(roles)
        if principal is None:
            held = ", ".join(sorted(caller.roles)) or "no Stepwise role"
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the token carries {held}: it may not do this")
        return principal

    return dependency


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``; none for an empty one (never ``Bearer `` with nothing after it)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
