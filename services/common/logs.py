"""How the services log: one plain format, colour only on a terminal, and the libraries' lines at their true level.

- aiokafka logs ``Group Coordinator Request failed: … GroupCoordinatorNotAvailableError`` at ERROR while a broker
  that has just started elects the coordinator of a consumer group (five lines on a healthy start) and retries
  by itself: not an error. ``CoordinatorStarting`` logs it at INFO while the service starts, at WARNING after
  (a coordinator that never comes, e.g. an offsets topic that cannot be created, stays in sight). Its fetcher
  logs ``Failed fetch offsets from …: NotLeaderForPartitionError`` at ERROR while the partitions of topics just
  created elect their leaders, and retries by itself: the same filter takes it.
- FastStream colours its level names whatever its stream is (log files, containers' logs then carry ANSI
  escapes): ``colour_only_on_a_terminal``.
- FastStream logs each failed batch with its error's message and traceback, at every attempt; the consumer
  reports it itself (services/common/consumer.py), without the message, which may quote the event:
  ``ReportedByConsumer`` leaves FastStream's line out for an error the consumer has ``reported``.
- ``LOG_FORMAT=json``: one JSON object per line (``JsonLines``), every logger's (uvicorn's, FastStream's, ours),
  each with the ``trace_id`` of the span it was logged in and the pseudonymous ids it concerns (``about``). HTTP
  requests are logged by ``services/common/metrics.py`` with their route template, never their path or query.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

from aiokafka.errors import GroupCoordinatorNotAvailableError, LeaderNotAvailableError, NotLeaderForPartitionError

from .tracing import current_trace_id

GROUP_COORDINATOR_LOGGER = "aiokafka.consumer.group_coordinator"
FETCHER_LOGGER = "aiokafka.consumer.fetcher"
STARTING_ERRORS = (GroupCoordinatorNotAvailableError, NotLeaderForPartitionError, LeaderNotAvailableError)
"""What a broker that has just started, or topics just created, answer while they elect coordinators and leaders."""
FASTSTREAM_LOGGERS = ("faststream", "faststream.access.kafka")
"""FastStream's own logger and its Kafka broker's (made when the broker connects)."""
COLOURED_LOGGERS = (*FASTSTREAM_LOGGERS, "uvicorn", "uvicorn.error", "uvicorn.access")
ACCESS_LOGGER = "uvicorn.access"
STARTING_SECONDS = 60.0
"""How long after start a coordinator that is not available yet is a service starting, not a problem."""
_REPORTED = "_stepwise_reported_by_consumer"


class CoordinatorStarting(logging.Filter):
    """On aiokafka's group coordinator and fetcher loggers only: an ERROR saying the coordinator or a partition's
    leader is not available (yet)."""

    def __init__(self, starting_seconds: float = STARTING_SECONDS) -> None:
        super().__init__()
        self._until = time.monotonic() + starting_seconds

    def filter(self, record: logging.LogRecord) -> bool:
        arguments = record.args if isinstance(record.args, tuple) else ()
        if record.levelno < logging.ERROR or not any(isinstance(argument, STARTING_ERRORS) for argument in arguments):
            return True
        level = logging.INFO if time.monotonic() < self._until else logging.WARNING
        record.levelno, record.levelname = level, logging.getLevelName(level)
        return logging.getLogger(record.name).isEnabledFor(level)


class ReportedByConsumer(logging.Filter):
    """On FastStream's loggers: a line about an error the consumer has reported already is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not getattr(error, _REPORTED, False)


def reported(error: Exception) -> Exception:
    """``error``, marked as reported by the consumer (topic, partition, class): FastStream does not log it again."""
    with contextlib.suppress(AttributeError):  # an exception type without attributes of its own is logged twice
        setattr(error, _REPORTED, True)
    return error


class SecretPaths(logging.Filter):
    """On uvicorn's access log: a path whose segment after ``/q/`` is a secret (a questionnaire link's token) is
    logged as ``/q/…``. A filter on the logger itself, so every handler a deployment adds gets the redacted line."""

    SECRET = re.compile(r"/q/[^/?#\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.SECRET.sub("/q/…", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self.SECRET.sub("/q/…", record.msg)
        return True


def install_filters() -> None:
    """The filters above, each on the logger it is for (idempotent)."""
    wanted: list[tuple[str, type[logging.Filter]]] = [
        (GROUP_COORDINATOR_LOGGER, CoordinatorStarting),
        (FETCHER_LOGGER, CoordinatorStarting),
        *((name, ReportedByConsumer) for name in FASTSTREAM_LOGGERS),
        (ACCESS_LOGGER, SecretPaths),
    ]
    for name, kind in wanted:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, kind) for existing in logger.filters):
            logger.addFilter(kind())


def colour_only_on_a_terminal() -> None:
    """Each handler of FastStream's and uvicorn's loggers that can colour does so only if its stream is a terminal.
    Run again once the broker has connected (FastStream makes its broker's logger then)."""
    for name in COLOURED_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            formatter, stream = handler.formatter, getattr(handler, "stream", None)
            if formatter is not None and hasattr(formatter, "use_colors"):
                isatty = getattr(stream, "isatty", None)
                formatter.use_colors = bool(isatty and isatty())


_ids: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("stepwise_log_ids", default=None)
ID_NAME = re.compile(r"^[a-z_]*_id$")
"""What ``about`` takes: pseudonymous ids (``episode_id``, ``event_id``…), never a token or a free text."""


@contextlib.contextmanager
def about(**ids: str | None) -> Iterator[None]:
    """Every line logged inside the block (in this task) names these pseudonymous ids (JSON logs)."""
    if any(not ID_NAME.match(name) for name in ids):
        raise ValueError("about() takes *_id names only")
    token = _ids.set((_ids.get() or {}) | {name: value for name, value in ids.items() if value})
    try:
        yield
    finally:
        _ids.reset(token)


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id and span ids, the ids of ``about``, and an
    exception's class and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = current_trace_id()
        if trace_id:
            line["trace_id"] = trace_id
        line |= _ids.get() or {}
        line |= getattr(record, "stepwise", {})
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = record.exc_info[0].__name__
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_CLIENTS = ("httpx", "httpcore", "authlib")
"""HTTP clients' loggers: WARNING and above only (the server side logs each request by its route template; Authlib's
DEBUG line names the console's PKCE verifier)."""
FASTSTREAM_BROKER_LOGGER = "faststream.access.kafka"
"""The logger a service's broker logs with (``kafka.new_broker``): a plain one, handing its records to the root's."""


def configure(level: str, log_format: str) -> None:
    """text: the root logger's lines as they always were. json: the root's one handler writes ``JsonLines`` to
    stderr, and uvicorn's and FastStream's loggers hand their records to it (their own handlers removed), so every
    line of the process has that form."""
    for client in QUIET_CLIENTS:  # their INFO line per request names its raw URL, query string and all
        logging.getLogger(client).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    if log_format != "json":
        logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    logging.captureWarnings(True)  # a library's warning is a line like the others, not raw text on stderr
    for name in COLOURED_LOGGERS:
        library = logging.getLogger(name)
        library.handlers = []
        library.propagate = True
