"""What the consumer says while a batch fails: one log line at the first attempt and at every tenth, naming the
event's position, the dependency that is down or the error's class (never its message), and how long it waits
between attempts."""

from __future__ import annotations

import logging

import pytest
from pymongo.errors import AutoReconnect

from services.common import consumer
from services.common.consumer import EventRejected
from services.common.dependencies import DependencyDown

POSITION = ("iop.session.missed", 3, 41)


def logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "services.common.consumer"]


def test_batches_are_retried_after_a_doubling_delay_capped_at_10_seconds() -> None:
    delays = [consumer.retry_delay(attempt) for attempt in range(1, 10)]
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    assert all(isinstance(delay, float) for delay in delays)


@pytest.mark.parametrize(
    ("attempt", "said"),
    [(1, True), (2, False), (9, False), (10, True), (11, False), (19, False), (20, True)],
)
def test_a_dependency_down_is_reported_at_the_first_attempt_and_every_tenth(
    attempt: int, said: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.common.consumer")
    consumer._report(DependencyDown("intake", "connection refused"), POSITION, attempt, 1)
    line = f"iop.session.missed[3]@41 waits: intake: connection refused (attempt {attempt}); retrying until it is back"
    assert logged(caplog) == ([(logging.WARNING, line)] if said else [])


def test_mongodb_down_is_named_by_the_errors_class_with_the_other_episodes_of_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.common.consumer")
    consumer._report(AutoReconnect("mongo.internal:27017: connection refused, patient Alex"), POSITION, 1, 3)
    line = ("iop.session.missed[3]@41 waits (and 2 more episodes of the batch): MongoDB: AutoReconnect (attempt 1); "
            "retrying until it is back")  # fmt: skip
    assert logged(caplog) == [(logging.WARNING, line)]


def raised() -> Exception:
    quoted = "patient Alex Example"  # what an error's message may quote
    try:
        raise KeyError(quoted)
    except KeyError as error:
        return error


def test_an_unforeseen_error_is_named_by_its_class_with_where_it_was_raised_at_the_first_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.common.consumer")
    error = raised()
    consumer._report(error, POSITION, 1, 2)
    [(level, message)] = logged(caplog)
    first = ("iop.session.missed[3]@41 failed with KeyError (attempt 1) (and 1 more episodes of the batch); its "
             "partition waits, retrying (readiness lists it); raised at:\n")  # fmt: skip
    assert level == logging.ERROR and message.startswith(first)
    assert message.removeprefix(first).startswith('  File "') and ", in raised\n" in message
    assert "Alex" not in message
    consumer._report(error, POSITION, 10, 1)
    assert logged(caplog)[1:] == [(logging.ERROR, "iop.session.missed[3]@41 failed with KeyError (attempt 10); its "
                                                  "partition waits, retrying (readiness lists it)")]  # fmt: skip


def test_a_rejection_says_its_reason() -> None:
    assert str(EventRejected("no_care_plan")) == "no_care_plan"
    assert consumer.set_aside_reason(EventRejected("no_care_plan")) == "rejected: no_care_plan"
