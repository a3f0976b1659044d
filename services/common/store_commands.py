"""What a service asks of its store, counted and (when asked) described: PyMongo's command monitoring.

Every command a service sends counts in ``stepwise_store_commands{command, collection}`` on ``/metrics`` (a round
trip each: the benchmark reads them per episode). With ``STORE_QUERY_SHAPES_FILE`` set, each command's *shape* is
also appended to that file as one JSON line: the collection, the command, and for each filter and sort the field
names and operators only, never a value, and whether a find has a limit (a test compares the shapes with the
indexes each service declares). Off by default: a production service writes no such file."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import Counter
from pymongo import monitoring

STORE_COMMANDS = Counter(
    "stepwise_store_commands", "Commands sent to the store (each a round trip), by command and collection",
    ["command", "collection"],
)  # fmt: skip

IGNORED = frozenset({"hello", "ismaster", "isMaster", "ping", "buildInfo", "endSessions", "saslStart",
                     "saslContinue", "getMore", "killCursors", "listCollections", "listIndexes"})  # fmt: skip
"""The driver's own conversation and cursor paging: not a query of ours (``getMore`` pages one counted ``find``)."""


def shape(value: Any) -> Any:
    """A filter or sort with its values taken out: field names and operators kept, every value replaced by its
    kind (``{"status": {"$in": [...]}, "due": {"$lte": ...}}`` → ``{"status": {"$in": "list"}, "due": {"$lte":
    "value"}}``), nested ``$or``/``$and`` kept as lists of shapes."""
    if isinstance(value, Mapping):
        return {
            str(key): shape(inner) if _structural(str(key), inner) else _kind(inner) for key, inner in value.items()
        }
    if isinstance(value, list):
        return [shape(item) for item in value]
    return _kind(value)


def _inner(key: str, inner: Any) -> Any:
    return shape(inner) if _structural(key, inner) else _kind(inner)


def _structural(key: str, inner: Any) -> bool:
    return key in ("$or", "$and", "$nor", "$elemMatch", "$not") or (
        isinstance(inner, Mapping) and any(str(name).startswith("$") for name in inner)
    )


def _kind(value: Any) -> str:
    return "list" if isinstance(value, list) else "value"


FILTER_OF = {"find": "filter", "findAndModify": "query", "count": "query", "distinct": "query"}
LINES_OF = {"update": "updates", "delete": "deletes"}


def shapes_of(command_name: str, command: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The filters and sorts one command carries (an update or delete may carry several)."""
    if command_name in FILTER_OF:
        found = {"filter": shape(command.get(FILTER_OF[command_name]) or {}), "sort": list(command.get("sort") or {})}
        return [found | ({"limit": bool(command.get("limit"))} if command_name == "find" else {})]
    if command_name in LINES_OF:
        return [{"filter": shape(line.get("q", {})), "sort": []} for line in command.get(LINES_OF[command_name], [])]
    if command_name == "aggregate":
        stages = command.get("pipeline", [])
        first = stages[0] if stages else {}
        sort = next((list(stage["$sort"]) for stage in stages if "$sort" in stage), [])
        return [{"filter": shape(first.get("$match", {})), "sort": sort, "pipeline": [next(iter(s)) for s in stages]}]
    return [{"filter": None, "sort": []}]


class StoreCommands(monitoring.CommandListener):
    """Counts each command; with a file, appends each command's shapes to it (one JSON line each)."""

    def __init__(self, service: str, shapes_file: Path | None = None) -> None:
        self.service = service
        self.shapes_file = shapes_file
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in IGNORED:
            return
        collection = event.command.get(event.command_name)
        name = collection if isinstance(collection, str) else ""
        STORE_COMMANDS.labels(event.command_name, name).inc()
        if self.shapes_file is not None:
            self._write(event.database_name, event.command_name, name, event.command)

    def _write(self, database: str, command_name: str, collection: str, command: Mapping[str, Any]) -> None:
        where = {"service": self.service, "database": database, "collection": collection, "command": command_name}
        lines = [json.dumps(where | found, sort_keys=True) for found in shapes_of(command_name, command)]
        with self._lock, self.shapes_file.open("a") as out:  # type: ignore[union-attr]
            out.write("".join(line + "\n" for line in lines))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
