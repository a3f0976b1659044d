"""What the services log: a coordinator still starting is no error, colour only on a terminal, and a failed batch
is logged once, by the consumer, without its error's message."""

from __future__ import annotations

import logging
import os

import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaConnectionError, NotLeaderForPartitionError
from faststream._internal.logger.formatter import ColourizedFormatter

from services.common import logs
from services.common.logs import CoordinatorStarting, reported
from services.common.service import configure_logging

COORDINATOR = logging.getLogger("aiokafka.consumer.group_coordinator")
ESCAPE = "\x1b["


def levels(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.levelname for record in caplog.records if record.name == logger]


def test_a_coordinator_still_starting_is_no_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka's ERROR while a fresh broker elects the group coordinator (five of them on a healthy start)."""
    monkeypatch.setattr(COORDINATOR, "filters", [])  # a service starting now, not when an earlier test configured
    configure_logging("INFO")
    with caplog.at_level(logging.INFO):
        COORDINATOR.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
        COORDINATOR.error("Group Coordinator Request failed: %s", KafkaConnectionError())  # another error: kept
        logging.getLogger("aiokafka.consumer").error("%s", GroupCoordinatorNotAvailableError())  # another logger
    assert levels(caplog, COORDINATOR.name) == ["INFO", "ERROR"]
    assert levels(caplog, "aiokafka.consumer") == ["ERROR"]


def test_a_partition_still_electing_its_leader_is_no_error(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka's fetcher, at ERROR, while the partitions of topics just created elect their leaders (seen under
    make run: nine lines at care_plan's start), then retried by itself."""
    fetcher = logging.getLogger("aiokafka.consumer.fetcher")
    monkeypatch.setattr(fetcher, "filters", [])  # a service starting now, not when an earlier test configured
    configure_logging("INFO")
    with caplog.at_level(logging.INFO):
        fetcher.error("Failed fetch offsets from %s: %s", 1, NotLeaderForPartitionError())
        fetcher.error("Failed fetch offsets from %s: %s", 1, KafkaConnectionError())  # another error: kept
    assert levels(caplog, fetcher.name) == ["INFO", "ERROR"]


def test_a_coordinator_that_never_comes_stays_in_sight(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(COORDINATOR, "filters", [])  # not the one configure_logging installed, whose start is now
    starting, started = CoordinatorStarting(starting_seconds=60), CoordinatorStarting(starting_seconds=0)
    with caplog.at_level(logging.INFO):
        for still in (starting, started):
            COORDINATOR.addFilter(still)
            try:
                COORDINATOR.error("Group Coordinator Request failed: %s", GroupCoordinatorNotAvailableError())
            finally:
                COORDINATOR.removeFilter(still)
    assert levels(caplog, COORDINATOR.name)[-2:] == ["INFO", "WARNING"]


def formatted_by_faststream(stream_is_a_terminal: bool) -> str:
    """A line as FastStream's own logger's handler formats it, with its stream a terminal or not."""
    [handler] = [h for h in logging.getLogger("faststream").handlers if isinstance(h.formatter, ColourizedFormatter)]
    assert isinstance(handler, logging.StreamHandler)
    primary, secondary = os.openpty()
    with open(secondary, "w") if stream_is_a_terminal else open(os.devnull, "w") as stream:
        original = handler.setStream(stream)
        try:
            configure_logging("INFO")
            record = logging.LogRecord("faststream", logging.WARNING, __file__, 1, "broker is slow", None, None)
            return handler.format(record)
        finally:
            handler.setStream(original)
            os.close(primary)


def test_faststream_colours_only_a_terminal() -> None:
    assert ESCAPE not in formatted_by_faststream(stream_is_a_terminal=False)
    assert ESCAPE in formatted_by_faststream(stream_is_a_terminal=True)
    configure_logging("INFO")  # as the test found it: stderr


def test_a_failed_batch_the_consumer_reported_is_not_logged_again_by_faststream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_logging("INFO")
    faststream = logging.getLogger("faststream.access.kafka")
    with caplog.at_level(logging.INFO, logger=faststream.name):
        for error in (reported(KeyError("Testpatient Zq-b4f1")), RuntimeError("not from a batch")):
            faststream.error(f"{type(error).__name__}: {error}", exc_info=error)
    assert [record.getMessage() for record in caplog.records if record.name == faststream.name] == [
        "RuntimeError: not from a batch"
    ]
    assert logs.ReportedByConsumer in {type(f) for f in faststream.filters}


def test_http_clients_say_nothing_below_warning_even_at_debug() -> None:
    """Their lines name URLs with their query, and Authlib's the console's PKCE verifier."""
    try:
        configure_logging("DEBUG")
        assert all(logging.getLogger(name).getEffectiveLevel() == logging.WARNING for name in ("httpx", "authlib"))
    finally:
        configure_logging("INFO")
