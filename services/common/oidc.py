"""Staff sign in at the clinic's OpenID Connect provider (Keycloak, Entra ID, Okta, Google): its JWT access
tokens are checked here against the provider's published keys (PyJWT does the JOSE).

The provider's discovery document names its key set (``jwks_uri``); the keys are kept and fetched again when
a token names a key we do not have (the provider rotated its keys: no restart), at most once per
``refresh_interval``, and at the latest after ``max_key_age``. Only asymmetric algorithms are accepted: a
token signed with ``none`` or an HMAC (with the public key as its secret, say) is refused before any key is
looked at.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from .roles import Role

log = logging.getLogger(__name__)

STEPWISE_ROLES = frozenset(role.value for role in Role)
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})


REFUSALS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidSignatureError, "bad signature"),
)
"""What a token's refusal says (``error_description``), by PyJWT's error; any other is "invalid token"."""


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    audience: str
    jwks_url: str | None = None
    """Where the provider's keys are; None: from its discovery document."""
    roles_claim: str = "roles"
    """A dotted path into the token's claims, e.g. ``realm_access.roles`` (Keycloak)."""
    role_map: Mapping[str, Role] = field(default_factory=dict)
    """Provider role → Stepwise role. Empty: a provider role counts only if it is a Stepwise role's name."""
    leeway_seconds: float = 60.0
    refresh_interval: float = 10.0
    max_key_age: float = 3600.0


@dataclass(frozen=True)
class Claims:
    """Who a valid token names, and the Stepwise roles it carries."""

    subject: str
    username: str | None
    roles: frozenset[Role]
    token_id: str
    """The token's ``jti``, or a short fingerprint of it: what logs and audits may name."""


class TokenRejected(Exception):
    """The token is not valid; ``reason`` is for the ``WWW-Authenticate`` header (never the token)."""

    def __init__(self, reason: str, token_id: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token_id = token_id


class ProviderUnavailable(Exception):
    """The provider's keys could not be fetched (an outage, or a wrong URL: the message says which)."""


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


class OidcVerifier:
    def __init__(self, config: OidcConfig, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._config = config
        self._client = httpx.AsyncClient(timeout=10.0, transport=transport)
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._jwks_url = config.jwks_url
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Claims:
        """The claims of a valid access token; raises TokenRejected or ProviderUnavailable."""
        token_id = fingerprint(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRejected("malformed token", token_id) from None
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC:
            raise TokenRejected("algorithm not accepted", token_id)
        key = await self._key(header.get("kid"), algorithm, token_id)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=self._config.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            reason = next((said for kind, said in REFUSALS if isinstance(error, kind)), "invalid token")
            raise TokenRejected(reason, token_id) from None
        token_id = str(claims.get("jti") or token_id)
        username = claims.get("preferred_username") or claims.get("upn") or claims.get("email")
        return Claims(str(claims["sub"]), str(username) if username else None, self._roles(claims), token_id)

    def _roles(self, claims: Mapping[str, Any]) -> frozenset[Role]:
        value: Any = claims
        for part in self._config.roles_claim.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        listed = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
        names = [name for name in listed if isinstance(name, str)]
        if self._config.role_map:
            return frozenset(self._config.role_map[name] for name in names if name in self._config.role_map)
        return frozenset(Role(name) for name in names if name in STEPWISE_ROLES)

    async def _key(self, kid: str | None, algorithm: str, token_id: str) -> jwt.PyJWK:
        """The provider's key ``kid`` for ``algorithm``, fetching the key set again when it is unknown."""
        if kid is None:
            raise TokenRejected("no key id", token_id)
        now = time.monotonic()
        if kid not in self._keys or now - self._fetched_at > self._config.max_key_age:
            async with self._lock:
                stale = now - self._fetched_at > self._config.max_key_age
                if (kid not in self._keys and now - self._fetched_at >= self._config.refresh_interval) or stale:
                    await self._fetch_keys()
        jwk = self._keys.get(kid)
        if jwk is None:
            raise TokenRejected("unknown signing key", token_id)
        try:
            key = jwt.PyJWK(jwk, algorithm=jwk.get("alg") or algorithm)
        except jwt.PyJWTError:
            raise TokenRejected("algorithm does not fit the key", token_id) from None
        if key.algorithm_name not in ASYMMETRIC:
            raise TokenRejected("algorithm not accepted", token_id)
        return key

    async def _fetch_keys(self) -> None:
        try:
            url = self._jwks_url or await self._discover()
            response = await self._client.get(url)
            response.raise_for_status()
            keys = response.json().get("keys")
        except (httpx.HTTPError, ValueError, AttributeError) as error:
            self._fetched_at = time.monotonic()  # an outage is asked again after refresh_interval, not per request
            log.warning("OpenID Connect keys not fetched (%s): tokens with keys not seen before are refused with 503",
                        _what(error))  # fmt: skip
            raise ProviderUnavailable(_what(error)) from None
        self._keys = {jwk["kid"]: jwk for jwk in keys or [] if isinstance(jwk, dict) and "kid" in jwk}
        self._fetched_at = time.monotonic()
        log.info("OpenID Connect keys fetched: %d (%s)", len(self._keys), ", ".join(sorted(self._keys)))

    async def _discover(self) -> str:
        url = f"{self._config.issuer.rstrip('/')}/.well-known/openid-configuration"
        response = await self._client.get(url)
        response.raise_for_status()
        document = response.json()
        if document.get("issuer") != self._config.issuer:
            raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}: set OIDC_ISSUER to it")
        self._jwks_url = str(document["jwks_uri"])
        return self._jwks_url

    async def close(self) -> None:
        await self._client.aclose()


def _what(error: Exception) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"{error.request.url} answered {error.response.status_code}"
    if isinstance(error, httpx.HTTPError):
        return f"{type(error).__name__}: {error}"
    return str(error)
