"""The test harness's own rules: which backends it picks, and how it configures the Kafka it starts."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.dev import devstack, ferretdb, kafka


def test_the_kafka_version_is_pinned_once_in_the_pom() -> None:
    assert re.fullmatch(r"4\.\d+\.\d+", kafka.version())


def test_the_ferretdb_version_is_pinned_by_go_mod_and_its_checksum_by_go_sum() -> None:
    version = ferretdb.version()
    assert version.startswith("v1.")
    sums = (ferretdb.HERE / "go.sum").read_text()
    assert f"{ferretdb.MODULE} {version} h1:" in sums


@given(st.uuids())
def test_cluster_ids_are_what_kafka_storage_accepts(drawn: uuid.UUID) -> None:
    with mock.patch("uuid.uuid4", return_value=drawn):
        cluster_id = kafka.cluster_id()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert base64.urlsafe_b64decode(cluster_id + "==") == drawn.bytes  # the 16 random bytes, as Kafka's Uuid reads


def test_the_started_broker_is_configured_like_the_deployment(tmp_path: Path) -> None:
    properties = dict(line.split("=", 1) for line in kafka.server_properties(tmp_path, 9092, 9093).splitlines() if line)
    assert properties["process.roles"] == "broker,controller"
    assert properties["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert properties["auto.create.topics.enable"] == "false"  # topics are part of the contract
    assert properties["num.partitions"] == "3"
    assert properties["log.dirs"].startswith(str(tmp_path))


def test_the_started_broker_also_has_a_scram_listener_beside_the_plaintext_default(tmp_path: Path) -> None:
    text = kafka.server_properties(tmp_path, 9092, 9093, sasl_port=9094)
    properties = dict(line.split("=", 1) for line in text.splitlines() if line)
    assert (
        properties["listeners"]
        == "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094,CONTROLLER://127.0.0.1:9093"
    )
    assert properties["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094"
    assert properties["inter.broker.listener.name"] == "PLAINTEXT"  # everything else is unchanged
    assert "SASL_PLAINTEXT:SASL_PLAINTEXT" in properties["listener.security.protocol.map"].split(",")
    assert properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512,SCRAM-SHA-256"
    for mechanism in ("scram-sha-512", "scram-sha-256"):
        assert properties[f"listener.name.sasl_plaintext.{mechanism}.sasl.jaas.config"] == (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        )


def test_only_a_broker_started_here_offers_a_scram_login() -> None:
    backend = devstack.Backend("kafka.clinic.example:9092", "Kafka (configured)")
    assert devstack.Backends(backend, backend).kafka_sasl is None


@pytest.mark.parametrize(("variable", "value"), [("STEPWISE_MONGODB_SERVER", "mongod"), ("STEPWISE_KAFKA_BROKER", "x")])
def test_an_unknown_backend_choice_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("MONGODB_URL", raising=False)
    monkeypatch.setenv(variable, value)
    monkeypatch.setattr(devstack, "docker_engine_answers", lambda: False)
    with pytest.raises(ValueError, match=variable), devstack.backends():
        pass


def test_configured_backends_are_used_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.clinic.example:9092")
    monkeypatch.setenv("MONGODB_URL", "mongodb://db.clinic.example:27017/")
    monkeypatch.setattr(devstack, "docker_engine_answers", lambda: pytest.fail("no engine is asked about"))
    with devstack.backends() as started:
        assert (started.kafka_bootstrap_servers, started.mongodb_url) == (
            "kafka.clinic.example:9092",
            "mongodb://db.clinic.example:27017/",
        )
        assert started.kafka.server is None and started.mongodb.server is None
