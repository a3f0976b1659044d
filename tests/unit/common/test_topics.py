"""How the services create topics: the iop.* topics without a time limit, min.insync.replicas from the settings."""

from __future__ import annotations

from services.common.kafka import topic_configs
from services.common.settings import ServiceSettings


def test_iop_topics_are_kept_without_a_time_limit() -> None:
    settings = ServiceSettings(kafka_topic_min_insync_replicas=2)
    assert topic_configs("iop.care_level.assigned", settings) == {"retention.ms": "-1", "min.insync.replicas": "2"}
    assert topic_configs("bench.raw", settings) == {"min.insync.replicas": "2"}


def test_development_defaults_are_one_replica_one_in_sync() -> None:
    settings = ServiceSettings()
    assert (settings.kafka_topic_replication, settings.kafka_topic_min_insync_replicas) == (1, 1)
