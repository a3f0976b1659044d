"""Access tokens from the clinic's OpenID Connect provider: what is accepted and what is refused, against a
provider on loopback issuing real RS256 / ES256 tokens (tests/oidc_provider.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Annotated

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI

from services.common.auth import SERVICE_ROLES, Authenticator, Principal, Role, require_roles
from services.common.oidc import OidcConfig, OidcVerifier, ProviderUnavailable, TokenRejected
from services.common.settings import ServiceSettings
from tests.oidc_provider import AUDIENCE, Provider, SigningKey, oidc_provider


@pytest.fixture
def provider() -> Iterator[Provider]:
    with oidc_provider("RS256", "ES256") as running:
        yield running


def verifier(provider: Provider, **config: object) -> OidcVerifier:
    return OidcVerifier(OidcConfig(issuer=provider.issuer, audience=AUDIENCE, **config))  # type: ignore[arg-type]


async def rejected(verifier: OidcVerifier, token: str) -> str:
    with pytest.raises(TokenRejected) as caught:
        await verifier.verify(token)
    assert token not in str(caught.value)
    return caught.value.reason


@pytest.mark.parametrize("index", [0, 1], ids=["RS256", "ES256"])
async def test_a_valid_token_names_the_person_and_their_roles(provider: Provider, index: int) -> None:
    token = provider.token(key=provider.keys[index], roles=["clinician", "admin", "not-ours"])
    claims = await verifier(provider).verify(token)
    assert claims.subject == "3b1e7c52-0d3f-4c1e-9a57-7f2d9b6e1a40" and claims.username == "j.rivera"
    assert claims.roles == {Role.CLINICIAN, Role.ADMIN}
    assert claims.token_id == jwt.decode(token, options={"verify_signature": False})["jti"]


async def test_roles_from_a_mapped_claim_become_the_mapped_stepwise_roles(provider: Provider) -> None:
    token = provider.token(roles=["iop-clinician", "admin"], roles_at="realm_access.roles")
    keycloak = verifier(provider, roles_claim="realm_access.roles", role_map={"iop-clinician": Role.CLINICIAN})
    claims = await keycloak.verify(token)
    assert claims.roles == {Role.CLINICIAN}  # with a map, only mapped roles count: the realm's admin is not ours


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"expires_in": -120}, "expired"),
        ({"not_before_in": 600}, "not yet valid"),
        ({"audience": "another-app"}, "wrong audience"),
        ({"issuer": "https://elsewhere.example/realms/clinic"}, "wrong issuer"),
    ],
)
async def test_a_token_off_its_claims_is_refused_naming_why(
    provider: Provider, change: dict[str, object], reason: str
) -> None:
    assert await rejected(verifier(provider), provider.token(**change)) == reason  # type: ignore[arg-type]


async def test_clock_skew_within_the_leeway_is_allowed(provider: Provider) -> None:
    claims = await verifier(provider, leeway_seconds=60).verify(provider.token(expires_in=-30))
    assert claims.roles == {Role.CLINICIAN}


async def test_a_bad_signature_is_refused(provider: Provider) -> None:
    forged = SigningKey(provider.keys[0].kid, "RS256", SigningKey.new("RS256").private)  # the right kid, another key
    assert await rejected(verifier(provider), provider.token(key=forged)) == "bad signature"


async def test_alg_none_is_refused(provider: Provider) -> None:
    header = {"alg": "none", "typ": "JWT", "kid": provider.keys[0].kid}
    payload = jwt.decode(provider.token(), options={"verify_signature": False})
    unsigned = ".".join(_b64(part) for part in (header, payload)) + "."
    assert await rejected(verifier(provider), unsigned) == "algorithm not accepted"


async def test_a_token_signed_with_hmac_and_the_public_key_as_secret_is_refused(provider: Provider) -> None:
    public_pem = (
        provider.keys[0]
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    payload = jwt.decode(provider.token(), options={"verify_signature": False})
    token = _hs256(payload, public_pem, provider.keys[0].kid)
    assert await rejected(verifier(provider), token) == "algorithm not accepted"


async def test_an_unknown_key_is_refused_and_the_key_set_is_not_fetched_again_and_again(provider: Provider) -> None:
    checking = verifier(provider)
    await checking.verify(provider.token())
    fetched = provider.jwks_requests
    stranger = SigningKey.new("RS256")
    for _ in range(5):
        assert await rejected(checking, provider.token(key=stranger)) == "unknown signing key"
    assert provider.jwks_requests == fetched  # within the refresh interval: no new fetch per token


async def test_a_rotated_key_is_fetched_without_a_restart(provider: Provider) -> None:
    checking = verifier(provider, refresh_interval=0)
    await checking.verify(provider.token())
    rotated = SigningKey.new("ES256")
    provider.keys = [rotated]  # the provider rotates: the old key is gone, a new one signs
    claims = await checking.verify(provider.token(key=rotated))
    assert claims.subject
    assert provider.jwks_requests == 2


async def test_a_provider_that_does_not_answer_is_an_outage_not_a_bad_token(provider: Provider) -> None:
    down = OidcVerifier(OidcConfig(issuer="http://127.0.0.1:9/realms/clinic", audience=AUDIENCE))
    with pytest.raises(ProviderUnavailable):
        await down.verify(provider.token())


async def test_a_malformed_token_is_refused(provider: Provider) -> None:
    assert await rejected(verifier(provider), "not.a.jwt") == "malformed token"


# The authenticator and the dependency: static tokens and access tokens side by side.

STATIC = {"staff-token": Role.CLINICIAN, "service-token": Role.NOTIFICATIONS}
CareOrService = Annotated[Principal, Depends(require_roles(Role.CLINICIAN, Role.NOTIFICATIONS))]


@pytest.fixture
async def app(provider: Provider) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()

    @app.get("/whoami")
    async def whoami(by: CareOrService) -> dict[str, str | None]:
        return {"role": by.role, "who": by.who, "subject": by.subject}

    app.state.authenticator = Authenticator(STATIC, SERVICE_ROLES, verifier(provider))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def test_a_person_with_an_access_token_is_named(app: httpx.AsyncClient, provider: Provider) -> None:
    answer = await app.get("/whoami", headers={"Authorization": f"Bearer {provider.token()}"})
    assert answer.json() == {"role": "clinician", "who": "j.rivera", "subject": "3b1e7c52-0d3f-4c1e-9a57-7f2d9b6e1a40"}


async def test_refusals_say_why_in_the_challenge_never_the_token(app: httpx.AsyncClient, provider: Provider) -> None:
    expired = provider.token(expires_in=-600)
    answer = await app.get("/whoami", headers={"Authorization": f"Bearer {expired}"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token", error_description="expired"'
    assert expired not in answer.text
    missing = await app.get("/whoami")
    assert (missing.status_code, missing.headers["WWW-Authenticate"]) == (401, "Bearer")


async def test_a_static_staff_token_is_refused_where_only_service_roles_may_use_one(app: httpx.AsyncClient) -> None:
    staff = await app.get("/whoami", headers={"Authorization": "Bearer staff-token"})
    assert staff.status_code == 401 and "static token" in staff.headers["WWW-Authenticate"]
    service = await app.get("/whoami", headers={"Authorization": "Bearer service-token"})
    assert service.json()["role"] == "notifications" and service.json()["who"].startswith("token:")


async def test_a_token_without_an_allowed_role_is_forbidden(app: httpx.AsyncClient, provider: Provider) -> None:
    answer = await app.get("/whoami", headers={"Authorization": f"Bearer {provider.token(roles=['admin'])}"})
    assert answer.status_code == 403 and "admin" in answer.json()["detail"]


def test_static_tokens_stay_for_every_role_without_oidc_and_for_service_roles_with_it() -> None:
    plain = ServiceSettings(_env_file=None)
    assert plain.static_roles_allowed == frozenset(Role) and plain.oidc is None
    with_oidc = ServiceSettings(_env_file=None, oidc_issuer="https://idp.example/realms/clinic",
                                oidc_audience="stepwise")  # fmt: skip
    assert with_oidc.static_roles_allowed == SERVICE_ROLES
    chosen = ServiceSettings(_env_file=None, oidc_issuer="https://idp.example/realms/clinic",
                             oidc_audience="stepwise", static_tokens_allowed_roles="notifications,admin")  # fmt: skip
    assert chosen.static_roles_allowed == {Role.NOTIFICATIONS, Role.ADMIN}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"oidc_issuer": "https://idp.example"}, "OIDC_AUDIENCE: required"),
        ({"oidc_audience": "stepwise"}, "OIDC_ISSUER: required"),
        ({"oidc_issuer": "https://idp.example", "oidc_audience": "a", "oidc_role_map": "x:boss"}, "unknown role"),
        ({"static_tokens_allowed_roles": "clinician,boss"}, "STATIC_TOKENS_ALLOWED_ROLES: unknown role"),
    ],
)
def test_an_oidc_configuration_mistake_stops_the_service_naming_the_setting(
    settings: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceSettings(_env_file=None, **settings)  # type: ignore[arg-type]


def _b64(part: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


def _hs256(payload: dict[str, object], secret: bytes, kid: str) -> str:
    """An HMAC token keyed with the provider's public key (PyJWT itself refuses to sign one; hmac does)."""
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_b64(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
