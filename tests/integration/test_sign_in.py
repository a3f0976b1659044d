"""Staff sign in at the clinic's identity provider: a real intake process checks access tokens from an OpenID
Connect provider on loopback (tests/oidc_provider.py), records the person in its PII audit, follows the
provider's key rotation without a restart, and refuses static staff tokens where only service accounts may
use one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.oidc_provider import AUDIENCE, Provider, SigningKey, oidc_provider
from tools.dev.devstack import ServiceProcess
from tools.dev.servers import free_port

from .conftest import TOKENS, Stack, eventually

CLINIC_ROLES = "iop-clinician:clinician,iop-front-desk:intake_staff,it-admin:admin"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with oidc_provider("RS256", "ES256") as running:
        yield running


@pytest.fixture(scope="module")
def intake(stack: Stack, provider: Provider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """An intake instance that takes access tokens (Keycloak's layout: roles under realm_access.roles, mapped),
    beside the stack's static tokens, of which only the service roles' stay valid."""
    env = stack.env | {
        "OIDC_ISSUER": provider.issuer,
        "OIDC_AUDIENCE": AUDIENCE,
        "OIDC_ROLES_CLAIM": "realm_access.roles",
        "OIDC_ROLE_MAP": CLINIC_ROLES,
        "OIDC_KEYS_REFRESH_SECONDS": "1",
        "OUTBOX_RELAY_ENABLED": "false",
    }
    log = tmp_path_factory.mktemp("sign-in") / "intake.log"
    process = ServiceProcess("intake", free_port(), env, log).start()
    try:
        yield process
    finally:
        process.stop()
        assert "Bearer ey" not in log.read_text(errors="replace")  # no token is ever logged


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def staff_token(provider: Provider, key: SigningKey | None = None, **claims: Any) -> str:
    return provider.token(key=key, roles=["iop-front-desk", "offline_access"], roles_at="realm_access.roles", **claims)


async def test_a_signed_in_person_is_named_in_the_audit(intake: ServiceProcess, provider: Provider) -> None:
    async with httpx.AsyncClient(base_url=intake.url) as client:
        created = await client.post("/v1/patients", headers=bearer(staff_token(provider, username="m.okafor")),
                                    json={"name": "Sam Zqsignin", "date_of_birth": "1988-02-02",
                                          "email": "sam.signin@example.org", "phone": "+12025550142"})  # fmt: skip
        assert created.status_code == 201, created.text
        patient_id = created.json()["patient_id"]
        clinician = provider.token(roles=["iop-clinician"], roles_at="realm_access.roles", subject="c-77",
                                   username="dr.adeyemi")  # fmt: skip
        read = await client.get(f"/v1/patients/{patient_id}", headers=bearer(clinician))
        assert read.status_code == 200, read.text
        admin = provider.token(roles=["it-admin"], roles_at="realm_access.roles", username="it.lee")
        audit = await client.get("/v1/audit", params={"patient_id": patient_id}, headers=bearer(admin))
        by_person = await client.get("/v1/audit", params={"person": "m.okafor"}, headers=bearer(admin))
    read_by, created_by = audit.json()  # newest first
    assert (created_by["action"], created_by["role"], created_by["username"]) == (
        "create_patient", "intake_staff", "m.okafor",
    )  # fmt: skip
    assert created_by["subject"] == "3b1e7c52-0d3f-4c1e-9a57-7f2d9b6e1a40"
    assert (read_by["action"], read_by["role"], read_by["subject"], read_by["username"]) == (
        "read_patient", "clinician", "c-77", "dr.adeyemi",
    )  # fmt: skip
    assert patient_id in {e["patient_id"] for e in by_person.json()}
    assert {e["username"] for e in by_person.json()} == {"m.okafor"}


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"expires_in": -600}, "expired"),
        ({"audience": "another-app"}, "wrong audience"),
        ({"issuer": "https://elsewhere.example/realms/clinic"}, "wrong issuer"),
    ],
)
async def test_an_invalid_access_token_is_401_saying_why(
    intake: ServiceProcess, provider: Provider, claims: dict[str, Any], reason: str
) -> None:
    async with httpx.AsyncClient(base_url=intake.url) as client:
        answer = await client.get("/v1/audit", headers=bearer(staff_token(provider, **claims)))
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == f'Bearer error="invalid_token", error_description="{reason}"'


async def test_the_providers_key_rotation_needs_no_restart(intake: ServiceProcess, provider: Provider) -> None:
    async with httpx.AsyncClient(base_url=intake.url) as client:
        before = await client.get("/v1/episodes/none/assessments", headers=bearer(staff_token(provider)))
        assert before.status_code == 404  # authenticated: the episode does not exist
        rotated = SigningKey.new("ES256")
        provider.keys = [rotated, *provider.keys]

        async def accepted() -> bool:  # at once, or once the last fetch is a refresh interval (1 s here) old
            answer = await client.get(
                "/v1/episodes/none/assessments", headers=bearer(staff_token(provider, key=rotated))
            )
            return answer.status_code == 404

        await eventually(accepted, "the rotated key to be accepted", within=5)
        stranger = await client.get(
            "/v1/episodes/none/assessments", headers=bearer(staff_token(provider, key=SigningKey.new("RS256")))
        )
    assert stranger.status_code == 401 and "unknown signing key" in stranger.headers["WWW-Authenticate"]


async def test_static_staff_tokens_are_refused_and_service_tokens_stay(intake: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=intake.url) as client:
        staff = await client.get("/v1/episodes/none/assessments", headers=bearer(TOKENS["clinician"]))
        service = await client.get("/v1/episodes/none/contact", headers=bearer(TOKENS["notifications"]))
    assert staff.status_code == 401 and "static token" in staff.headers["WWW-Authenticate"]
    assert service.status_code == 404  # the notifications service's token still works: no such episode
