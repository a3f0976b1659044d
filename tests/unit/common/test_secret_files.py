"""Secret settings from files (``X_FILE``, the convention of Docker secrets): services/common/secret_files.py."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Secret, SecretStr, ValidationError

from services.care_plan.settings import CarePlanSettings
from services.caseload.settings import CaseloadSettings
from services.common.secret_files import SecretFileError
from services.common.settings import ServiceSettings
from services.intake.settings import IntakeSettings
from services.notifications.settings import NotificationsSettings

CLASSES: list[type[ServiceSettings]] = [
    ServiceSettings, IntakeSettings, CarePlanSettings, NotificationsSettings, CaseloadSettings
]  # fmt: skip
CONTENT = "s3cr3t-CONTENT-value"
"""What a secret file holds in these tests; no error message may show it."""

CREDENTIAL_WORDS = {"token", "tokens", "secret", "password", "passphrase", "key"}


def sample(name: str) -> str:
    """A value each secret setting accepts."""
    return {
        "api_tokens": f"{CONTENT}:admin",
        "mongodb_url": "mongodb://stepwise:pw@db:27017/?directConnection=true",
    }.get(name, CONTENT)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting or _FILE variable of the runner's leaks in, and no .env file is read."""
    monkeypatch.chdir("/")
    for settings_class in CLASSES:
        for field in settings_class.model_fields:
            monkeypatch.delenv(field.upper(), raising=False)
            monkeypatch.delenv(f"{field.upper()}_FILE", raising=False)


def revealed(value: object) -> object:
    """A secret setting's value (a ``SecretStr``, or ``MONGODB_URL``'s ``MongoUrl``), else the value as it is."""
    return value.get_secret_value() if isinstance(value, Secret | SecretStr) else value


def secret_file(tmp_path: Path, text: str, name: str = "secret") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# Values.


def test_the_value_comes_from_the_file_without_its_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKENS_FILE", str(secret_file(tmp_path, "abc:admin,def:clinician\n")))
    settings = ServiceSettings(_env_file=None)
    assert settings.api_tokens.get_secret_value() == "abc:admin,def:clinician"
    assert settings.token_roles == {"abc": "admin", "def": "clinician"}


@pytest.mark.parametrize("ending", ["", "\n", "\r\n", "\n\n"])
def test_only_trailing_newlines_are_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str) -> None:
    monkeypatch.setenv("SMTP_PASSWORD_FILE", str(secret_file(tmp_path, f" pass word {ending}")))
    assert revealed(NotificationsSettings(_env_file=None).smtp_password) == " pass word "


def test_api_tokens_from_a_file_may_have_an_entry_a_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS_FILE", str(secret_file(tmp_path, "abc:admin\ndef:clinician\nsvc:notifications\n")))
    assert IntakeSettings(_env_file=None).token_roles == {"abc": "admin", "def": "clinician", "svc": "notifications"}


@pytest.mark.parametrize(
    ("settings_class", "name"),
    [(settings_class, name) for settings_class in CLASSES for name in settings_class.SECRETS],
)
def test_every_secret_of_every_service_has_a_file_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings_class: type[ServiceSettings], name: str
) -> None:
    monkeypatch.setenv(f"{name.upper()}_FILE", str(secret_file(tmp_path, sample(name) + "\n")))
    assert revealed(getattr(settings_class(_env_file=None), name)) == sample(name)


@pytest.mark.parametrize(
    ("settings_class", "secrets"),
    [
        (ServiceSettings, {"api_tokens", "mongodb_url"}),
        (IntakeSettings, {"api_tokens", "mongodb_url"}),
        (CarePlanSettings, {"api_tokens", "mongodb_url", "intake_token"}),
        (
            NotificationsSettings,
            {"api_tokens", "mongodb_url", "intake_token", "webhook_secret", "smtp_password", "sms_provider_token",
             "contact_hash_key"},
        ),
        (CaseloadSettings, {"api_tokens", "mongodb_url", "console_oidc_client_secret"}),
    ],
)  # fmt: skip
def test_each_service_names_its_secrets(settings_class: type[ServiceSettings], secrets: set[str]) -> None:
    assert secrets <= set(settings_class.SECRETS)
    assert len(settings_class.SECRETS) == len(set(settings_class.SECRETS))


@pytest.mark.parametrize("settings_class", CLASSES)
def test_every_credential_setting_is_a_secret(settings_class: type[ServiceSettings]) -> None:
    """A setting named like a credential (…_token, …_secret, …_password, …_key) can come from a file."""
    credentials = {name for name in settings_class.model_fields if name.rsplit("_", 1)[-1] in CREDENTIAL_WORDS}
    missing = credentials - set(settings_class.SECRETS)
    assert not missing, f"add {sorted(missing)} to {settings_class.__name__}.SECRETS"


def test_a_setting_that_is_no_secret_has_no_file_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL_FILE", str(secret_file(tmp_path, "DEBUG\n")))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS_FILE", str(tmp_path / "missing"))  # not even looked at
    settings = ServiceSettings(_env_file=None)
    assert settings.log_level == "INFO"
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    # ...and intake has no intake_token, so no INTAKE_TOKEN_FILE either.
    monkeypatch.setenv("INTAKE_TOKEN_FILE", str(tmp_path / "missing"))
    IntakeSettings(_env_file=None)


def test_an_empty_variable_counts_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compose's ${X:-} gives an empty X: the file still counts, and an empty X_FILE leaves X as it is."""
    monkeypatch.setenv("WEBHOOK_SECRET", "")
    monkeypatch.setenv("WEBHOOK_SECRET_FILE", str(secret_file(tmp_path, "from-file\n")))
    monkeypatch.setenv("INTAKE_TOKEN", "from-variable")
    monkeypatch.setenv("INTAKE_TOKEN_FILE", "")
    settings = NotificationsSettings(_env_file=None)
    assert settings.webhook_secret.get_secret_value() == "from-file"
    assert settings.intake_token.get_secret_value() == "from-variable"


def test_without_a_file_variable_the_variable_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS", "abc:admin")
    assert ServiceSettings(_env_file=None).token_roles == {"abc": "admin"}


def test_an_explicit_argument_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS_FILE", str(secret_file(tmp_path, "abc:admin\n")))
    assert ServiceSettings(_env_file=None, api_tokens="def:clinician").token_roles == {"def": "clinician"}


# The .env file.


def test_a_file_variable_in_the_env_file_is_read(tmp_path: Path) -> None:
    token = secret_file(tmp_path, "svc-token\n", "token")
    env_file = secret_file(tmp_path, f"INTAKE_TOKEN_FILE={token}\nAPI_TOKENS_FILE={token.parent / 'tokens'}\n", ".env")
    secret_file(tmp_path, "abc:admin\n", "tokens")
    settings = CarePlanSettings(_env_file=env_file)
    assert settings.intake_token.get_secret_value() == "svc-token"
    assert settings.token_roles == {"abc": "admin"}


def test_the_environment_wins_over_the_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = secret_file(tmp_path, f"INTAKE_TOKEN_FILE={secret_file(tmp_path, 'from-env-file', 'a')}\n", ".env")
    monkeypatch.setenv("INTAKE_TOKEN_FILE", str(secret_file(tmp_path, "from-environment", "b")))
    assert CarePlanSettings(_env_file=env_file).intake_token.get_secret_value() == "from-environment"


def test_no_env_file_no_file_variable_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    secret_file(tmp_path, f"INTAKE_TOKEN_FILE={tmp_path / 'missing'}\n", ".env")
    assert CarePlanSettings(_env_file=None).intake_token.get_secret_value() == ""
    with pytest.raises(SecretFileError, match="INTAKE_TOKEN_FILE"):
        CarePlanSettings()  # the default .env of the working directory


def test_both_set_across_the_environment_and_the_env_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = secret_file(tmp_path, f"INTAKE_TOKEN={CONTENT}\n", ".env")
    monkeypatch.setenv("INTAKE_TOKEN_FILE", str(secret_file(tmp_path, CONTENT)))
    with pytest.raises(SecretFileError, match="INTAKE_TOKEN and INTAKE_TOKEN_FILE are both set") as caught:
        CarePlanSettings(_env_file=env_file)
    assert CONTENT not in str(caught.value)


# Mistakes: loud at start, naming the setting and the path, never the content.


def test_both_set_is_an_error_naming_both(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS", f"{CONTENT}:admin")
    monkeypatch.setenv("API_TOKENS_FILE", str(secret_file(tmp_path, f"{CONTENT}:clinician")))
    with pytest.raises(SecretFileError) as caught:
        IntakeSettings(_env_file=None)
    message = str(caught.value)
    assert "API_TOKENS and API_TOKENS_FILE are both set" in message
    assert CONTENT not in message


def test_a_missing_file_is_an_error_naming_the_variable_and_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-file"
    monkeypatch.setenv("SMS_PROVIDER_TOKEN_FILE", str(missing))
    with pytest.raises(SecretFileError) as caught:
        NotificationsSettings(_env_file=None)
    message = str(caught.value)
    assert "SMS_PROVIDER_TOKEN_FILE" in message
    assert str(missing) in message
    assert "No such file" in message


def test_a_file_that_cannot_be_read_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTACT_HASH_KEY_FILE", str(tmp_path))  # a folder
    with pytest.raises(SecretFileError, match=f"CONTACT_HASH_KEY_FILE: cannot read {tmp_path}"):
        NotificationsSettings(_env_file=None)


@pytest.mark.parametrize("text", ["", "\n", "\r\n", "  \n"])
def test_an_empty_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    path = secret_file(tmp_path, text)
    monkeypatch.setenv("INTAKE_TOKEN_FILE", str(path))
    with pytest.raises(SecretFileError, match=f"INTAKE_TOKEN_FILE: {path} is empty"):
        CarePlanSettings(_env_file=None)


def test_a_file_that_is_not_text_is_an_error_without_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\xffs3cr3t\xfe")
    monkeypatch.setenv("WEBHOOK_SECRET_FILE", str(path))
    with pytest.raises(SecretFileError) as caught:
        NotificationsSettings(_env_file=None)
    assert str(caught.value) == f"WEBHOOK_SECRET_FILE: {path} is not UTF-8 text"


def test_every_mistake_is_reported_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS_FILE", str(tmp_path / "missing"))
    monkeypatch.setenv("SMTP_PASSWORD_FILE", str(secret_file(tmp_path, "")))
    monkeypatch.setenv("WEBHOOK_SECRET", CONTENT)
    monkeypatch.setenv("WEBHOOK_SECRET_FILE", str(secret_file(tmp_path, CONTENT, "other")))
    with pytest.raises(SecretFileError) as caught:
        NotificationsSettings(_env_file=None)
    message = str(caught.value)
    assert "API_TOKENS_FILE" in message and "SMTP_PASSWORD_FILE" in message and "WEBHOOK_SECRET_FILE" in message
    assert CONTENT not in message


def test_a_bad_value_in_a_file_is_reported_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKENS_FILE", str(secret_file(tmp_path, f"good-1:admin\n{CONTENT}:root\n")))
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(_env_file=None)
    text = str(caught.value)
    assert "entry 2 has unknown role 'root'" in text
    assert CONTENT not in text and "good-1" not in text


def test_a_file_value_goes_through_the_settings_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SMS needs a hash key: one from a file counts."""
    monkeypatch.setenv("SMS_PROVIDER_URL", "https://sms.example/send")
    with pytest.raises(ValidationError, match="CONTACT_HASH_KEY"):
        NotificationsSettings(_env_file=None)
    monkeypatch.setenv("CONTACT_HASH_KEY_FILE", str(secret_file(tmp_path, "hash-key\n")))
    assert NotificationsSettings(_env_file=None).contact_hash_key.get_secret_value() == "hash-key"


# Naming secrets.


def test_a_secret_that_is_no_setting_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match=r"SECRETS names no setting: \['api_token'\]"):

        class Misspelt(ServiceSettings):
            SECRETS: ClassVar[tuple[str, ...]] = (*ServiceSettings.SECRETS, "api_token")


def test_a_secret_whose_file_form_is_a_setting_fails_at_class_definition() -> None:
    with pytest.raises(TypeError, match="named like their _FILE form"):

        class Clashing(ServiceSettings):
            SECRETS: ClassVar[tuple[str, ...]] = (*ServiceSettings.SECRETS, "client_key")
            client_key: str = ""
            client_key_file: str = ""


def test_adding_a_secret_is_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class WithAPassword(ServiceSettings):
        SECRETS: ClassVar[tuple[str, ...]] = (*ServiceSettings.SECRETS, "broker_password")
        broker_password: str = ""

    monkeypatch.setenv("BROKER_PASSWORD_FILE", str(secret_file(tmp_path, "pw\n")))
    assert WithAPassword(_env_file=None).broker_password == "pw"


# Secrets stay out of what a settings object shows: its repr, its str, its JSON.


@pytest.mark.parametrize("settings_class", CLASSES)
def test_no_secret_shows_in_repr_str_or_json(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in settings_class.SECRETS:
        monkeypatch.setenv(name.upper(), sample(name).replace(":pw@", f":{CONTENT}@"))
    settings = settings_class(_env_file=None)
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert CONTENT not in shown
    assert "stepwise:**********@db:27017" in repr(settings)  # MONGODB_URL shows where, never its password
