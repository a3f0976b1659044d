"""The edge's rules without an app: refused tokens per client and minute in bounded memory, who the client is
behind a proxy, the edge's settings, and a 422 entry without the value."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel, EmailStr, Field, ValidationError

from services.common.edge import AuthFailures, client_address, parse_networks
from services.common.errors import field_error
from services.common.settings import ServiceSettings
from services.intake.schemas import TimeZone

ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_is_limited_after_its_refusals_in_a_minute_and_free_once_they_age() -> None:
    clock = Clock()
    failures = AuthFailures(3, clock=clock)
    for second in (0, 10, 20):
        clock.now = 1000.0 + second
        assert failures.retry_after("192.0.2.1") == 0
        failures.refused("192.0.2.1")
    assert failures.retry_after("192.0.2.1") == 40  # the first of the three leaves the minute at 1060
    assert failures.retry_after("192.0.2.2") == 0 and failures.refused_total == 3
    clock.now = 1060.0
    assert failures.retry_after("192.0.2.1") == 0
    assert failures.refused("192.0.2.1") == 3  # 1010, 1020 and now: 1000 has left the minute


def test_refusals_older_than_a_minute_do_not_count() -> None:
    clock = Clock()
    failures = AuthFailures(3, clock=clock)
    for _ in range(5):
        failures.refused("192.0.2.1")
        clock.now += 61
    assert failures.refused("192.0.2.1") == 1 and failures.retry_after("192.0.2.1") == 0


def test_the_count_keeps_bounded_memory_whatever_the_number_of_clients() -> None:
    failures = AuthFailures(30)
    for n in range(failures.max_clients + 500):
        failures.refused(f"client-{n}")
    assert len(failures) == failures.max_clients and failures.max_clients * 30 <= AuthFailures.BUDGET
    assert failures.retry_after(f"client-{failures.max_clients + 499}") == 0
    assert failures.refused_total == failures.max_clients + 500


TRUSTED = parse_networks("10.0.0.0/24, 2001:db8::1")


def scope(peer: str, *forwarded: str) -> dict[str, object]:
    return {"client": (peer, 5000), "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded]}


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("192.0.2.7", ["203.0.113.5"], "192.0.2.7"),  # not a trusted proxy: its X-Forwarded-For says nothing
        ("10.0.0.2", ["203.0.113.5"], "203.0.113.5"),
        ("10.0.0.2", ["198.51.100.1, 203.0.113.5"], "203.0.113.5"),  # left of the proxy's entry: the client's say
        ("10.0.0.2", ["203.0.113.5, 10.0.0.3"], "203.0.113.5"),  # two trusted proxies in a row
        ("10.0.0.2", ["198.51.100.1", "203.0.113.5"], "203.0.113.5"),  # the header twice
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["not-an-address"], "10.0.0.2"),
        ("2001:db8::1", ["2001:db8::77"], "2001:db8::77"),
    ],
)
def test_the_client_behind_a_trusted_proxy(peer: str, forwarded: list[str], client: str) -> None:
    assert client_address(scope(peer, *forwarded), TRUSTED) == client


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # no .env file is read
    settings = ServiceSettings(trusted_proxies="10.0.0.0/8, 192.0.2.1")
    assert [str(network) for network in settings.edge.trusted_proxies] == ["10.0.0.0/8", "192.0.2.1/32"]
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES entry 2 is not an IP address"):
        ServiceSettings(trusted_proxies="10.0.0.0/8, proxy.clinic.example")


def test_the_edge_settings_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    edge = ServiceSettings().edge
    assert (edge.max_body_bytes, edge.api_docs, edge.auth_failures_per_minute) == (1024 * 1024, True, 30)
    monkeypatch.setenv("API_DOCS", "off")
    monkeypatch.setenv("MAX_BODY_BYTES", "65536")
    monkeypatch.setenv("AUTH_FAILURES_PER_MINUTE", "10")
    edge = ServiceSettings().edge
    assert (edge.max_body_bytes, edge.api_docs, edge.auth_failures_per_minute) == (65536, False, 10)


class Patient(BaseModel):
    name: str = Field(max_length=5)
    email: EmailStr
    record: uuid.UUID
    timezone: TimeZone


def test_a_422_entry_names_the_field_and_the_rule_never_the_value() -> None:
    given = {"name": "Alex Example", "email": "alex@secret_domain.org", "record": "abcQ-1", "timezone": "Europe/Pariss"}
    with pytest.raises(ValidationError) as caught:
        Patient.model_validate(given)
    entries = [field_error(error) for error in caught.value.errors()]
    assert [(entry["loc"], entry["type"]) for entry in entries] == [
        (["name"], "string_too_long"),
        (["email"], "value_error"),
        (["record"], "uuid_parsing"),
        (["timezone"], "value_error"),
    ]
    assert all(set(entry) == {"loc", "msg", "type"} and entry["msg"] for entry in entries)
    shown = str(entries)
    assert not [value for value in given.values() if value in shown]
    assert "'_'" not in shown and "`Q`" not in shown  # nor what a parser quotes of it


def test_no_422_is_raised_by_hand_but_through_the_one_helper() -> None:
    """Every 422 a service raises itself goes through ``invalid_input`` (services/common/errors.py), so that it
    has the documented ``detail[].loc`` shape."""
    raised = []
    for source in (ROOT / "services").rglob("*.py"):
        if source.name == "errors.py" and source.parent.name == "common":
            continue
        text = source.read_text()
        for marker in ("HTTP_422", "HTTPException(422", "status_code=422"):
            raised += [f"{source.relative_to(ROOT)}: {marker}"] if marker in text else []
    assert not raised
