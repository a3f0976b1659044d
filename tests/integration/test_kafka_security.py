"""Kafka over SASL/SCRAM with ACLs on the real broker: the five services reach it only through its SCRAM listener,
each as its own principal allowed only what tools/deploy/kafka_acls.py grants (the ACLs compose's kafka-init
creates), and that is enough for the whole flow; a forged event (an alert on intake's topic from another
principal) is refused; a wrong password keeps a service unready, saying what to fix."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    TopicAuthorizationFailedError,
)

from services.common.kafka import client_options
from services.common.settings import ServiceSettings
from stepwise_contract import PUBLISHED_BY, SafetyAlertRaised
from tools.deploy import kafka_acls
from tools.dev.devstack import Backends, KafkaSasl, ServiceProcess
from tools.dev.kafka import committed_offset, records_on
from tools.dev.servers import free_port
from tools.dev.smtp_sink import SmtpSink

from .conftest import HTTP_TIMEOUT, WELCOME, Stack, assess, eventually, group_reading, mail_to, new_episode


@pytest.fixture(scope="module")
def scram(running_backends: Backends) -> KafkaSasl:
    sasl = running_backends.kafka_sasl
    if sasl is None:
        pytest.skip(
            f"the broker in use ({running_backends.kafka.name}) has no SASL listener with a SCRAM user: only the "
            "Apache Kafka that tools/dev/kafka starts from Maven's jars has one (not a configured cluster, "
            "testcontainers' or noida-db)"
        )
    return sasl


def scram_options(scram: KafkaSasl, principal: str | None = None) -> dict[str, Any]:
    """aiokafka's options for the SCRAM listener, from the services' own settings: as the listener's super user, or as
    a deployment ``principal``."""
    login = scram.settings(principal=principal)
    settings = ServiceSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username=login["KAFKA_SASL_USERNAME"],
        kafka_sasl_password=login["KAFKA_SASL_PASSWORD"],
    )
    return client_options(settings)


@pytest.fixture(scope="module")
async def acls(scram: KafkaSasl, running_backends: Backends) -> list[kafka_acls.Acl]:
    """The deployment's ACLs, created on the broker by its super user (PLAINTEXT); creating one twice is harmless."""
    assert set(scram.principals) == set(kafka_acls.principals()), "the broker was formatted with other principals"
    entries = kafka_acls.acls()
    admin = AIOKafkaAdminClient(bootstrap_servers=running_backends.kafka_bootstrap_servers)
    await admin.start()
    try:
        await kafka_acls.apply(admin, entries)
    finally:
        await admin.close()
    return entries


def stopped(services: list[ServiceProcess]) -> None:
    for service in services:  # SIGTERM to all first: they shut down together
        if service.process and service.process.poll() is None:
            service.process.terminate()
    for service in services:
        service.stop()


@pytest.fixture(scope="module")
def over_scram(
    scram: KafkaSasl, acls: list[kafka_acls.Acl], stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The stack's five services replaced by instances that reach Kafka only through its SCRAM listener, each as
    its own principal under the deployment's ACLs, with their own databases and mail server; then the regular ones
    back. The same static group membership lets each
    take over the other's partitions (the consumer groups are the services', as in production). ``scram`` comes
    first: without a SCRAM listener the test is skipped before the stack starts."""
    logs = tmp_path_factory.mktemp("over-scram")
    run = uuid.uuid4().hex[:8]
    databases = {name: f"stepwise_{name}_scram_{run}" for name in stack.services}
    ports = {name: free_port() for name in stack.services}
    regular = list(stack.services.values())
    with SmtpSink(free_port()) as sink:
        own = {
            **{f"{name.upper()}_DB": database for name, database in databases.items()},
            "INTAKE_URL": f"http://127.0.0.1:{ports['intake']}",
            "SMTP_PORT": str(sink.port),
        }
        services = {
            name: ServiceProcess(
                name, ports[name], process.env | own | scram.settings(principal=name), logs / f"{name}.log"
            )
            for name, process in stack.services.items()
        }
        stopped(regular)
        try:
            for service in services.values():
                service.start(wait=False)
            for service in services.values():
                service.wait_ready(timeout=30)
            yield Stack(stack.backends, services, sink.mailbox, databases, stack.env | own, stack.webhooks, stack.texts)
        finally:
            stopped(list(services.values()))
            for service in regular:
                service.start(wait=False)
            for service in regular:
                service.wait_ready()


async def test_an_assessment_reaches_a_welcome_email_over_scram(over_scram: Stack, scram: KafkaSasl) -> None:
    episode = await new_episode(over_scram)
    await assess(over_scram, episode)
    await mail_to(over_scram, episode.email, subject=WELCOME)

    # What went through: read back over the SCRAM listener with the services' own option builder.
    options = scram_options(scram)
    records = await records_on(scram.bootstrap_servers, "iop.assessment.completed", options)
    [assessed] = [record for record in records if record.key == episode.episode_id.encode()]
    assigned = await records_on(scram.bootstrap_servers, "iop.care_level.assigned", options)
    assert [record for record in assigned if record.key == episode.episode_id.encode()]
    group = group_reading("care_plan", "iop.assessment.completed")
    partition = TopicPartition("iop.assessment.completed", assessed.partition)
    assert await committed_offset(scram.bootstrap_servers, group, partition, options) > assessed.offset

    for name, service in over_scram.services.items():
        log = service.log_path.read_text(errors="replace")
        assert f"Authenticated as {name} via SCRAM-SHA-512" in log, name
        assert scram.principals[name] not in log, name


async def test_a_wrong_password_keeps_the_service_unready_naming_the_settings(
    running_backends: Backends, scram: KafkaSasl, tmp_path: Path
) -> None:
    wrong = f"not-the-password-{uuid.uuid4().hex}"
    env = {
        **scram.settings("SCRAM-SHA-512", password=wrong),
        "MONGODB_URL": running_backends.mongodb_url,
        "INTAKE_DB": f"stepwise_intake_wrong_password_{uuid.uuid4().hex[:8]}",
    }
    log = tmp_path / "intake.log"
    intake = ServiceProcess("intake", free_port(), env, log).start(wait=False)
    try:

        async def readiness() -> dict[str, Any] | None:
            assert intake.process is not None and intake.process.poll() is None, "it must wait, not exit"
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(base_url=intake.url, timeout=HTTP_TIMEOUT) as client:
                    response = await client.get("/health/ready")
                    assert response.status_code == 503, response.text
                    answer: dict[str, Any] = response.json()
                    return answer if "problems" in answer else None
            return None

        answer = await eventually(readiness, "intake's readiness to name the refused login")
        assert answer["checks"]["kafka"] is False
        problem = answer["problems"]["kafka"]
        assert problem.startswith("misconfigured: refused our login"), problem
        assert "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD" in problem
        text = log.read_text(errors="replace")
        assert "ERROR services.common.dependencies: configuration: kafka refused our login" in text
        assert "check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD; waiting until it is fixed" in text
        assert wrong not in text and wrong not in str(answer)
    finally:
        intake.stop()


async def produce_as(
    scram: KafkaSasl, principal: str, topic: str, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    """One record sent as ``principal``, with the services' producer settings (idempotent, acks=all)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=scram.bootstrap_servers, acks="all", enable_idempotence=True,
        request_timeout_ms=10_000, **scram_options(scram, principal),
    )  # fmt: skip
    try:
        await producer.start()
        await producer.send_and_wait(topic, value, key=b"forged-episode", headers=headers)
    finally:
        await producer.stop()


FORGED_HEADERS = [("ce_source", b"/stepwise/intake"), ("ce_type", SafetyAlertRaised.event_type.encode()),
                  ("ce_id", b"forged"), ("ce_specversion", b"1.0")]  # fmt: skip
"""What the issue's forged produce carried: intake's source on intake's safety-alert topic."""


async def test_only_intake_may_write_a_safety_alert(scram: KafkaSasl, acls: list[kafka_acls.Acl]) -> None:
    topic = SafetyAlertRaised.event_type
    assert SafetyAlertRaised in PUBLISHED_BY["intake"]
    forged = f"forged-{uuid.uuid4().hex}".encode()
    for principal, access in sorted(kafka_acls.principals().items()):
        if principal == "intake":
            continue
        # A principal allowed to write no topic at all (caseload) is refused even a producer id.
        refusal = TopicAuthorizationFailedError if access.writes else ClusterAuthorizationFailedError
        with pytest.raises(refusal):
            await produce_as(scram, principal, topic, forged, FORGED_HEADERS)
    records = await records_on(scram.bootstrap_servers, topic, scram_options(scram))
    assert forged not in {record.value for record in records}, "a forged alert reached the topic"

    # The owner's own write goes through: the ACLs refuse the others, not everyone.
    genuine = f"owner-{uuid.uuid4().hex}".encode()
    await produce_as(scram, "intake", topic, genuine, FORGED_HEADERS)
    records = await records_on(scram.bootstrap_servers, topic, scram_options(scram))
    assert genuine in {record.value for record in records}


async def test_a_service_reads_only_what_it_consumes_in_its_own_groups(
    scram: KafkaSasl, acls: list[kafka_acls.Acl]
) -> None:
    async def first_fetch(principal: str, topic: str, group: str) -> None:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=scram.bootstrap_servers, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", **scram_options(scram, principal),
        )  # fmt: skip
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=2000)
        finally:
            await consumer.stop()

    # intake does not consume safety alerts: its own group does not let it read them.
    with pytest.raises(TopicAuthorizationFailedError):
        await first_fetch("intake", SafetyAlertRaised.event_type, "stepwise.intake")
    # notifications consumes them, but only in its own groups.
    with pytest.raises(GroupAuthorizationFailedError):
        await first_fetch("notifications", SafetyAlertRaised.event_type, "stepwise.care_plan")
