"""Settings (API tokens, the care-team webhook, where a service listens, the clinic's zone) and the UTC datetime
helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.care_plan.settings import CarePlanSettings
from services.common.settings import ROLES, ServiceSettings, parse_api_tokens
from services.common.utc import UtcDatetime, assume_utc
from services.notifications.settings import NotificationsSettings

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        ("   ", {}),
        ("tok-a:admin", {"tok-a": "admin"}),
        ("tok-a:admin,tok-b:clinician", {"tok-a": "admin", "tok-b": "clinician"}),
        (" tok-a:admin , tok-b:intake_staff ,", {"tok-a": "admin", "tok-b": "intake_staff"}),
        ("a:b:c:notifications", {"a:b:c": "notifications"}),  # the role is after the last colon
        ("t1:integration,t1:admin", {"t1": "admin"}),  # a repeated token: the last entry wins
    ],
)
def test_parse_api_tokens_ok(raw: str, expected: dict[str, str]) -> None:
    assert parse_api_tokens(raw) == expected


def test_every_role_is_accepted() -> None:
    raw = ",".join(f"token-{n}:{role}" for n, role in enumerate(sorted(ROLES)))
    assert sorted(parse_api_tokens(raw).values()) == sorted(ROLES)
    assert {
        "intake_staff",
        "clinician",
        "admin",
        "integration",
        "notifications",
        "care_plan",
        "sms_provider",
        "utilization_review",
    } == ROLES


@pytest.mark.parametrize(
    ("raw", "position"),
    [
        ("s3cr3t-TOKEN-value", 1),
        ("good-1:admin,s3cr3t-TOKEN-value", 2),
        ("good-1:admin,good-2:clinician,:admin", 3),  # empty token
    ],
)
def test_entry_without_token_and_role(raw: str, position: int) -> None:
    with pytest.raises(ValueError, match=r"not token:role") as caught:
        parse_api_tokens(raw)
    message = str(caught.value)
    assert f"entry {position} " in message
    assert "s3cr3t" not in message and "TOKEN-value" not in message and "good-" not in message


def test_unknown_role() -> None:
    with pytest.raises(ValueError) as caught:
        parse_api_tokens("good-1:admin,s3cr3t-TOKEN-value:superuser")
    message = str(caught.value)
    assert "entry 2 " in message
    assert "'superuser'" in message
    assert "admin" in message  # the valid roles are listed
    assert "s3cr3t" not in message and "TOKEN-value" not in message and "good-1" not in message


def test_settings_reject_bad_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # no .env file is read
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(api_tokens="good-1:admin,s3cr3t-TOKEN-value:root")
    errors = caught.value.errors(include_input=False)
    assert [e["loc"] for e in errors] == [("api_tokens",)]
    assert "entry 2 has unknown role 'root'" in errors[0]["msg"]
    settings = ServiceSettings(api_tokens="abc:admin,def:clinician")
    assert settings.token_roles == {"abc": "admin", "def": "clinician"}


def test_settings_error_text_does_not_echo_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(api_tokens="good-1:admin,s3cr3t-TOKEN-value:root")
    text = str(caught.value)
    assert "entry 2" in text
    assert "good-1" not in text
    assert "s3cr3t" not in text


# --- UTC ----------------------------------------------------------------------------------------

PLUS_TWO = timezone(timedelta(hours=2))


def test_assume_utc_naive_datetime_becomes_utc() -> None:
    result = assume_utc(datetime(2026, 11, 1, 6, 30))
    assert result == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert result.tzinfo is UTC


def test_assume_utc_keeps_aware_datetime() -> None:
    value = datetime(2026, 11, 1, 6, 30, tzinfo=PLUS_TWO)
    result = assume_utc(value)
    assert result is value
    assert result.utcoffset() == timedelta(hours=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01T06:30:00", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        ("2026-11-01T06:30:00.250000", datetime(2026, 11, 1, 6, 30, 0, 250000, tzinfo=UTC)),
        ("2026-11-01T06:30:00Z", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        ("2026-11-01T08:30:00+02:00", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
    ],
)
def test_assume_utc_iso_strings(text: str, expected: datetime) -> None:
    result = assume_utc(text)
    assert isinstance(result, datetime)
    assert result.tzinfo is not None
    assert result == expected


def test_assume_utc_iso_string_keeps_its_offset() -> None:
    assert assume_utc("2026-11-01T08:30:00+02:00").utcoffset() == timedelta(hours=2)


def test_assume_utc_passes_other_values_through() -> None:
    assert assume_utc(None) is None
    assert assume_utc(12) == 12


class Stored(BaseModel):
    at: UtcDatetime


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 8, 30, tzinfo=PLUS_TWO),
        datetime(2026, 11, 1, 6, 30),
        "2026-11-01T06:30:00",
        "2026-11-01T06:30:00+00:00",
        "2026-11-01T01:30:00-05:00",
    ],
)
def test_utc_datetime_field_reads_every_form_as_aware(value: object) -> None:
    stored = Stored(at=value)
    assert stored.at.tzinfo is not None
    assert stored.at == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_utc_datetime_type_adapter_and_rejects_garbage() -> None:
    adapter = TypeAdapter(UtcDatetime)
    assert adapter.validate_python("2026-01-02T03:04:05").utcoffset() == timedelta(0)
    with pytest.raises((ValidationError, ValueError)):
        adapter.validate_python("not a time")


def test_a_webhook_without_a_secret_stops_notifications_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Safety alerts would go out signed with an empty key: the service refuses to start, naming both settings."""
    monkeypatch.chdir("/")
    for secret in ("", "  "):
        with pytest.raises(ValidationError) as caught:
            NotificationsSettings(care_team_webhook_url="https://on-call.example/hook", webhook_secret=secret)
        assert "WEBHOOK_SECRET: required when CARE_TEAM_WEBHOOK_URL is set" in str(caught.value)
    signed = NotificationsSettings(care_team_webhook_url="https://on-call.example/hook", webhook_secret="k")
    assert signed.care_team_webhook_url and NotificationsSettings(webhook_secret="").care_team_webhook_url is None
    with pytest.raises(ValidationError) as caught:  # the on-call pages are signed the same way
        NotificationsSettings(on_call_webhook_url="https://pager.example/hook", webhook_secret="")
    assert "WEBHOOK_SECRET: required when ON_CALL_WEBHOOK_URL is set" in str(caught.value)


# --- Where a service listens, and the clinic's zone ---------------------------------------------


def test_a_service_listens_on_loopback_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make run` and a service started by hand are not on the network; containers ask for every interface."""
    monkeypatch.chdir("/")
    monkeypatch.delenv("BIND_HOST", raising=False)
    assert ServiceSettings().bind_host == "127.0.0.1"
    monkeypatch.setenv("BIND_HOST", "0.0.0.0")
    assert ServiceSettings().bind_host == "0.0.0.0"


@pytest.mark.parametrize("settings_class", [CarePlanSettings, NotificationsSettings])
def test_an_unknown_clinic_zone_is_refused_naming_the_variable(
    settings_class: type[CarePlanSettings | NotificationsSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/")
    for misspelt in ("America/Chicgo", "", "../../etc/passwd"):
        monkeypatch.setenv("CLINIC_TIMEZONE", misspelt)
        with pytest.raises(ValidationError) as caught:
            settings_class()
        assert "CLINIC_TIMEZONE: not a known IANA time zone" in str(caught.value)
    monkeypatch.setenv("CLINIC_TIMEZONE", "America/Chicago")
    assert settings_class().clinic_timezone == "America/Chicago"


@pytest.mark.parametrize("module", ["services.care_plan", "services.notifications"])
def test_an_unknown_clinic_zone_stops_the_service_at_start(module: str) -> None:
    """Before it reaches for Kafka or MongoDB: nothing is listening at those addresses here."""
    env = {**os.environ, "CLINIC_TIMEZONE": "America/Chicgo", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
           "MONGODB_URL": "mongodb://127.0.0.1:9/?directConnection=true"}  # fmt: skip
    command = [sys.executable, "-m", module]
    ran = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode != 0
    assert "CLINIC_TIMEZONE: not a known IANA time zone" in ran.stderr
