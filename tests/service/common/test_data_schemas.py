"""Every service serves the events' JSON Schemas at /schemas/, without a token, under the deployment's base."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.common.service import http_app
from services.common.settings import ServiceSettings
from stepwise_contract.envelope import DEFAULT_SCHEMA_BASE, set_schema_base
from stepwise_contract.json_schema import all_schemas

CLINIC = "https://stepwise.clinic.example/schemas/"


@pytest.fixture
def clinic_base() -> Iterator[None]:
    set_schema_base(ServiceSettings(_env_file=None, schema_base_url=CLINIC).schema_base_url)
    yield
    set_schema_base(DEFAULT_SCHEMA_BASE)


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=http_app("Stepwise schemas", "", [], consumes=False))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.mark.usefixtures("clinic_base")
async def test_a_schema_is_served_with_the_deployments_id_and_no_token() -> None:
    async with client() as http:
        answer = await http.get("/schemas/iop.attendance.reported.v2.json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/schema+json"
    served = answer.json()
    assert served["$id"] == CLINIC + "iop.attendance.reported.v2.json"
    assert {**served, "$id": None} == {**all_schemas()["iop.attendance.reported.v2.json"], "$id": None}


@pytest.mark.parametrize(
    "name",
    ["iop.nothing.v1.json", "iop.session.missed.v2.json", "iop.session.missed", "x%2Fiop.session.missed.v1.json"],
)
async def test_a_name_of_no_schema_is_404(name: str) -> None:
    async with client() as http:
        assert (await http.get(f"/schemas/{name}")).status_code == 404


@pytest.mark.parametrize("base", ["stepwise.clinic.example/schemas/", "https://stepwise.clinic.example/schemas"])
def test_a_schema_base_url_that_is_no_folder_url_stops_the_service_naming_the_setting(base: str) -> None:
    with pytest.raises(ValueError, match="SCHEMA_BASE_URL"):
        ServiceSettings(_env_file=None, schema_base_url=base)
    assert ServiceSettings(_env_file=None, schema_base_url="").schema_base_url == DEFAULT_SCHEMA_BASE
