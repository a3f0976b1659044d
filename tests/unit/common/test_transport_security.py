"""Transport security settings: refused loudly at start when they cannot work, and turned into the same client
options for FastStream's broker, aiokafka's clients and PyMongo."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Literal, cast

import pytest
from aiokafka.errors import (
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.kafka import KafkaBroker
from faststream.kafka.security import parse_security
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import ValidationError

from services.common import kafka
from services.common.dependencies import Dependencies
from services.common.mongo import connect
from services.common.settings import ServiceSettings

if TYPE_CHECKING:
    from pymongo.pyopenssl_context import SSLContext as PyOpenSSLContext

PASSWORD = "s3cr3t-SASL-password"
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
LOGIN: dict[str, Any] = {"kafka_sasl_username": "stepwise", "kafka_sasl_password": PASSWORD}
CA_NAME = "Stepwise test clinic CA"


@pytest.fixture(autouse=True)
def no_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")  # no .env file is read


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate in PEM form, as a clinic's IT would hand out."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("ca") / "clinic-ca.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def refused(**settings: Any) -> str:
    """The message of the settings' refusal (one error, not tied to a field)."""
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(**settings)
    text = str(caught.value)
    assert PASSWORD not in text
    [error] = caught.value.errors(include_input=False)
    return str(error["msg"]).removeprefix("Value error, ")


def ca_subjects(context: ssl.SSLContext | PyOpenSSLContext | None) -> list[str]:
    assert isinstance(context, ssl.SSLContext)  # pymongo's PyOpenSSL context only where PyOpenSSL is installed
    subjects = [cast(tuple[tuple[tuple[str, str], ...], ...], cert["subject"]) for cert in context.get_ca_certs()]
    return [value for subject in subjects for rdn in subject for (_, value) in rdn]


# --- settings ------------------------------------------------------------------------------------


def test_plaintext_is_the_default_and_needs_nothing() -> None:
    settings = ServiceSettings()
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("PLAINTEXT", "SCRAM-SHA-512")
    assert settings.kafka_ssl_ca_file is None and settings.mongodb_tls_ca_file is None


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_a_login_protocol_without_username_or_password_is_refused_naming_them(protocol: str) -> None:
    both = refused(kafka_security_protocol=protocol)
    assert f"KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD: required with KAFKA_SECURITY_PROTOCOL={protocol}" in both
    assert refused(kafka_security_protocol=protocol, kafka_sasl_username="stepwise").startswith(
        "KAFKA_SASL_PASSWORD: required"
    )
    assert "KAFKA_SASL_USERNAME: required" in refused(kafka_security_protocol=protocol, kafka_sasl_password=PASSWORD)


def test_the_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "stepwise")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", str(ca_file))
    monkeypatch.setenv("MONGODB_TLS_CA_FILE", str(ca_file))
    settings = ServiceSettings()
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-256")
    assert (
        settings.kafka_sasl_password.get_secret_value(),
        settings.kafka_ssl_ca_file,
        settings.mongodb_tls_ca_file,
    ) == (
        PASSWORD,
        ca_file,
        ca_file,
    )
    assert PASSWORD not in repr(settings)  # a secret is left out of the settings' repr


def test_the_password_may_come_from_a_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = tmp_path / "kafka_sasl_password"
    secret.write_text(PASSWORD + "\n")
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "stepwise")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(secret))
    assert ServiceSettings().kafka_sasl_password.get_secret_value() == PASSWORD


@pytest.mark.parametrize(("setting", "value"), [("kafka_security_protocol", "TLS"), ("kafka_sasl_mechanism", "MD5")])
def test_an_unknown_protocol_or_mechanism_is_refused_naming_the_setting(setting: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ServiceSettings(**dict[str, Any]({setting: value}), **LOGIN)
    [error] = caught.value.errors(include_input=False)
    assert error["loc"] == (setting,)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_a_kafka_ca_file_without_tls_is_refused_as_pointless(protocol: str, ca_file: Path) -> None:
    message = refused(kafka_security_protocol=protocol, kafka_ssl_ca_file=ca_file, **LOGIN)
    assert f"KAFKA_SSL_CA_FILE is pointless with KAFKA_SECURITY_PROTOCOL={protocol}" in message
    assert "SSL or SASL_SSL" in message


@pytest.mark.parametrize(("setting", "protocol"), [("kafka_ssl_ca_file", "SSL"), ("mongodb_tls_ca_file", "PLAINTEXT")])
def test_a_ca_file_that_is_missing_unreadable_or_no_certificate_is_refused_naming_the_setting(
    setting: str, protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = setting.upper()
    common: dict[str, Any] = {"kafka_security_protocol": protocol}
    missing = tmp_path / "nowhere.pem"
    assert refused(**common, **{setting: missing}) == f"{name}: {missing} does not exist or is not a file"
    assert "is not a file" in refused(**common, **{setting: tmp_path})
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    assert refused(**common, **{setting: garbage}) == f"{name}: {garbage} holds no CA certificate in PEM form"

    def unreadable(self: Path, *_: Any, **__: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", unreadable)  # as root, a chmod would not stop the read
    assert refused(**common, **{setting: garbage}) == f"{name}: {garbage} cannot be read (Permission denied)"


@pytest.mark.parametrize("url", ["mongodb://db:27017/?tls=false", "mongodb://db:27017/?replicaSet=rs&SSL=False"])
def test_a_mongodb_ca_file_with_tls_switched_off_is_refused_as_pointless(url: str, ca_file: Path) -> None:
    message = refused(mongodb_url=url, mongodb_tls_ca_file=ca_file)
    assert "MONGODB_TLS_CA_FILE is pointless with TLS switched off in MONGODB_URL" in message


def test_good_ca_files_are_accepted(ca_file: Path) -> None:
    settings = ServiceSettings(
        kafka_security_protocol="SASL_SSL",
        kafka_ssl_ca_file=ca_file,
        mongodb_url="mongodb://db:27017/?tls=true",
        mongodb_tls_ca_file=ca_file,
        **LOGIN,
    )
    assert settings.kafka_ssl_ca_file == settings.mongodb_tls_ca_file == ca_file


# --- client options ------------------------------------------------------------------------------


def test_plaintext_has_no_security() -> None:
    settings = ServiceSettings()
    assert kafka.broker_security(settings) is None
    assert kafka.client_options(settings) == {"security_protocol": "PLAINTEXT", "ssl_context": None}


@pytest.mark.parametrize(
    ("mechanism", "security"),
    [("SCRAM-SHA-512", SASLScram512), ("SCRAM-SHA-256", SASLScram256), ("PLAIN", SASLPlaintext)],
)
def test_a_sasl_login_without_tls(mechanism: str, security: type[BaseSecurity]) -> None:
    settings = ServiceSettings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism, **LOGIN)
    assert kafka.client_options(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "ssl_context": None,
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "stepwise",
        "sasl_plain_password": PASSWORD,
    }
    broker_security = kafka.broker_security(settings)
    assert type(broker_security) is security
    assert parse_security(broker_security) == kafka.client_options(settings)  # what FastStream hands to aiokafka


def test_a_sasl_login_over_tls_trusts_the_ca_file(ca_file: Path) -> None:
    settings = ServiceSettings(kafka_security_protocol="SASL_SSL", kafka_ssl_ca_file=ca_file, **LOGIN)
    options = kafka.client_options(settings)
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    context = options["ssl_context"]
    assert ca_subjects(context) == [CA_NAME]  # only the clinic's CA, not the system's
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    broker_options = parse_security(kafka.broker_security(settings))
    assert ca_subjects(broker_options.pop("ssl_context")) == [CA_NAME]
    assert broker_options == {key: value for key, value in options.items() if key != "ssl_context"}


def test_tls_without_a_login_and_without_a_ca_file_trusts_the_system_cas(ca_file: Path) -> None:
    settings = ServiceSettings(kafka_security_protocol="SSL")
    options = kafka.client_options(settings)
    assert options["security_protocol"] == "SSL" and "sasl_mechanism" not in options
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert CA_NAME not in ca_subjects(options["ssl_context"])
    security = kafka.broker_security(settings)
    assert type(security) is BaseSecurity and security.use_ssl
    assert parse_security(security)["security_protocol"] == "SSL"
    with_ca = kafka.client_options(ServiceSettings(kafka_security_protocol="SSL", kafka_ssl_ca_file=ca_file))
    assert ca_subjects(with_ca["ssl_context"]) == [CA_NAME]


def test_the_services_broker_carries_the_security() -> None:
    settings = ServiceSettings(kafka_security_protocol="SASL_PLAINTEXT", **LOGIN)
    broker = kafka.new_broker(settings, client_id="stepwise-test")
    assert type(broker.specification.security) is SASLScram512  # FastStream's record of what it connects with


def test_mongodb_trusts_the_ca_file_only_when_set(ca_file: Path) -> None:
    url = "mongodb://127.0.0.1:1/?directConnection=true&tls=true"
    with_ca = connect(url, tls_ca_file=ca_file)
    assert ca_subjects(with_ca.options.pool_options._ssl_context) == [CA_NAME]
    system = connect(url, tls_ca_file=None)
    assert CA_NAME not in ca_subjects(system.options.pool_options._ssl_context)
    assert connect("mongodb://127.0.0.1:1/", tls_ca_file=None).options.pool_options._ssl_context is None


# --- what a refusal says -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "protocol", "says"),
    [
        (SaslAuthenticationFailed("invalid credentials"), "SASL_SSL", "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        (UnsupportedSaslMechanismError(), "SASL_PLAINTEXT", "does not offer SCRAM-SHA-512: check KAFKA_SASL_MECHANISM"),
        (IllegalSaslStateError(), "SASL_PLAINTEXT", "check KAFKA_SECURITY_PROTOCOL (SASL_PLAINTEXT)"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "SSL", "check KAFKA_SSL_CA_FILE"),
        (ConnectionResetError(), "SSL", "does its listener use TLS? check KAFKA_SECURITY_PROTOCOL"),
        (ConnectionResetError(), "PLAINTEXT", None),  # without TLS, a reset is an outage
        (KafkaConnectionError("Connection closed"), "SASL_PLAINTEXT", "if its listener uses TLS, set KAFKA_SECURITY_"),
        (KafkaConnectionError("Connection closed"), "SASL_SSL", None),
        (ConnectionRefusedError(), "SASL_SSL", None),
        (TimeoutError(), "SASL_SSL", None),
    ],
)
def test_a_refusal_names_the_setting_to_fix_and_an_outage_is_not_one(
    error: BaseException, protocol: SecurityProtocol, says: str | None
) -> None:
    settings = ServiceSettings.model_construct(
        kafka_security_protocol=protocol, kafka_sasl_mechanism="SCRAM-SHA-512", **LOGIN
    )
    reason = kafka._refused(error, settings)
    if says is None:
        assert reason is None
    else:
        assert reason is not None and says in reason and PASSWORD not in reason


async def test_brokers_that_do_not_answer_are_an_outage_not_a_refusal() -> None:
    settings = ServiceSettings(kafka_bootstrap_servers="127.0.0.1:1", kafka_security_protocol="SASL_PLAINTEXT", **LOGIN)
    assert await kafka.refusal(settings) is None


async def test_a_refused_start_is_shown_by_readiness_and_tried_again_until_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ServiceSettings(kafka_security_protocol="SASL_PLAINTEXT", **LOGIN)
    dependencies = Dependencies()
    attempts: list[str] = []

    async def ensure_topics(_: ServiceSettings, topics: list[str]) -> None:
        attempts.append("ensure_topics")
        if len(attempts) < 3:
            raise KafkaConnectionError("Unable to bootstrap")

    async def refusal(_: ServiceSettings) -> str:
        return "refused our login (x): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"

    class Broker:
        async def connect(self) -> None:
            return None

        async def start(self) -> None:
            attempts.append("broker started")

    monkeypatch.setattr(kafka, "ensure_topics", ensure_topics)
    monkeypatch.setattr(kafka, "refusal", refusal)
    monkeypatch.setattr(kafka, "RETRY_REFUSED_SECONDS", (0.01, 0.01))
    broker: Any = Broker()
    assert not await kafka.start(settings, broker, ["t"], dependencies)
    problem = dependencies.problems()["kafka"]
    assert (problem.kind, problem.detail) == ("misconfigured", await refusal(settings))

    ran = asyncio.Event()

    async def relay() -> None:
        ran.set()

    await asyncio.wait_for(kafka.start_once_accepted(settings, broker, ["t"], dependencies, [relay()]), 5)
    assert ran.is_set() and not dependencies.problems()
    assert attempts == ["ensure_topics", "ensure_topics", "ensure_topics", "broker started"]


async def test_what_waits_for_the_brokers_is_closed_if_the_service_stops_first(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*_: Any) -> bool:
        return False

    monkeypatch.setattr(kafka, "start", never)
    monkeypatch.setattr(kafka, "RETRY_REFUSED_SECONDS", (0.01, 0.01))

    async def relay() -> None:
        raise AssertionError("never runs")

    waiting = cast("CoroutineType[Any, Any, None]", relay())
    task = asyncio.create_task(
        kafka.start_once_accepted(ServiceSettings(), cast(KafkaBroker, Any), [], Dependencies(), [waiting])
    )
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert waiting.cr_frame is None  # closed: no "never awaited" warning
