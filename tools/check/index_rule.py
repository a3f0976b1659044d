"""Whether an index serves a query: MongoDB's prefix rule, on the shapes services/common/store_commands.py writes.

A query (one branch of it: an ``$or`` is as many queries as it has branches, each with the fields beside the
``$or``) is served by an index when its equality fields (a value, ``$eq``, ``$in``), then its sort fields in
order, then its range fields (``$gt``, ``$lte``, ``$ne``, ``$exists``, …) are the first keys of the index, in that
order (ESR): the index then finds exactly the matching documents, in the asked order, and nothing else is read.
Sort fields a query fixes by equality drop out of the sort; a range on a sort field is served by the sort's keys.
A query by ``_id`` (a value or ``$in``) reads at most as many documents as it names, and so does one that fixes
every key of a unique index: both are served whatever else they filter on (a version-checked write). So is one
that fixes the first key of an index declared with a ``scope`` (one episode's messages): it reads at most that
scope's documents, a few whatever the clinic's size, the bound its declaration names. An
``$or`` is served when each of its branches is; an operator no index bound serves (``$expr``, ``$where``,
``$size``) leaves a query unserved. Directions are not compared: a shape keeps the sort's fields, not their order.

An empty filter reads the whole collection: it passes only on the allow-list of admin listings, each with the
reason and its bound, and a listing bounded by ``limit`` must carry one and have its sort served by an index
(else the server sorts every document to return the first few). Pure: shapes and declared indexes in, verdicts
with their reason out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from services.common.indexes import Index

EQUALITY = frozenset({"$eq", "$in"})
RANGE = frozenset({"$gt", "$gte", "$lt", "$lte", "$ne", "$nin", "$exists", "$type", "$regex", "$options", "$not",
                   "$all"})  # fmt: skip
IGNORED = frozenset({"$comment"})
QUERIES = frozenset({"find", "findAndModify", "count", "distinct", "update", "delete", "aggregate"})
BY_ID = Index("*", (("_id", 1),), "every collection's own index", unique=True)


@dataclass(frozen=True)
class Terms:
    """One conjunctive query: which fields it fixes, which it bounds, and what no index can serve."""

    equality: frozenset[str] = frozenset()
    ranges: frozenset[str] = frozenset()
    unindexable: frozenset[str] = frozenset()

    def __or__(self, other: Terms) -> Terms:
        return Terms(self.equality | other.equality, self.ranges | other.ranges, self.unindexable | other.unindexable)

    def describe(self, sort: Sequence[str]) -> str:
        parts = [("equality", sorted(self.equality)), ("sort", list(sort)), ("range", sorted(self.ranges)),
                 ("unindexable", sorted(self.unindexable))]  # fmt: skip
        return "; ".join(f"{name} {', '.join(fields)}" for name, fields in parts if fields) or "nothing"


@dataclass(frozen=True)
class Verdict:
    served: bool
    reason: str


@dataclass(frozen=True)
class AllowedScan:
    """An admin listing that reads a whole collection, and what bounds it."""

    service: str
    collection: str
    listing: str
    """What reads it (the endpoint or page), and why it may."""
    bound: str
    """What keeps its cost bounded, in words."""
    limited: bool
    """The bound is a ``limit`` on the command: the shape must show one, and its sort must be served."""


def field_terms(path: str, condition: Any) -> Terms:
    """The terms of ``{path: condition}`` (a shape: values are "value" or "list")."""
    if not isinstance(condition, Mapping):
        return Terms(equality=frozenset({path}))
    operators = set(condition)
    if "$elemMatch" in operators:
        inner = condition["$elemMatch"]
        rest = operators - {"$elemMatch"}
        found = _element_terms(path, inner) if isinstance(inner, Mapping) else Terms(unindexable=frozenset({path}))
        return found | (field_terms(path, {op: condition[op] for op in rest}) if rest else Terms())
    if operators <= EQUALITY:
        return Terms(equality=frozenset({path}))
    if operators <= EQUALITY | RANGE:
        return Terms(ranges=frozenset({path}))
    return Terms(unindexable=frozenset({path}))


def _element_terms(path: str, inner: Mapping[str, Any]) -> Terms:
    """``$elemMatch`` on an array of values (operators) or of documents (their fields, below ``path``)."""
    if inner and all(str(key).startswith("$") for key in inner):
        return field_terms(path, inner)
    found = Terms()
    for key, condition in inner.items():
        found = found | (field_terms(f"{path}.{key}", condition) if not key.startswith("$") else _unindexable(key))
    return found


def _unindexable(key: str) -> Terms:
    return Terms(unindexable=frozenset({key}))


def branches(query: Mapping[str, Any]) -> list[Terms]:
    """The conjunctive queries ``query`` is: one, or one per combination of its ``$or`` branches."""
    alternatives: list[list[Terms]] = [[Terms()]]
    for key, condition in query.items():
        if key in IGNORED:
            continue
        if key == "$and":
            for part in condition:
                alternatives.append(branches(part))
        elif key == "$or":
            alternatives.append([branch for part in condition for branch in branches(part)])
        elif key.startswith("$"):
            alternatives.append([_unindexable(key)])
        else:
            alternatives.append([field_terms(key, condition)])
    combined = [Terms()]
    for options in alternatives:
        combined = [so_far | option for so_far in combined for option in options]
    return combined


def serves(index: Index, terms: Terms, sort: Sequence[str]) -> bool:
    """The prefix rule: equality fields, then the sort, then range fields are the index's first keys."""
    if index.unique and set(index.fields) <= terms.equality:
        return True  # at most one document (``_id``'s own index is unique)
    if index.scope and index.fields[0] in terms.equality:
        return True  # at most the documents of one value of its first key: a bounded few (``Index.scope``)
    if terms.unindexable:
        return False
    equality = terms.equality
    ordered = [field for field in sort if field not in equality]
    ranges = terms.ranges - equality - set(ordered)
    keys = index.fields
    first, then = len(equality), len(equality) + len(ordered)
    return (
        set(keys[:first]) == equality
        and list(keys[first:then]) == ordered
        and set(keys[then : then + len(ranges)]) == ranges
    )


def verdict(query: Mapping[str, Any], sort: Sequence[str], indexes: Iterable[Index]) -> Verdict:
    """Whether ``indexes`` (``_id``'s besides) serve every branch of ``query`` sorted by ``sort``, and why."""
    candidates = [BY_ID, *indexes]
    if not query and not sort:
        return Verdict(False, "an empty filter: a collection scan")
    used = []
    for terms in branches(query):
        index = next((index for index in candidates if serves(index, terms, sort)), None)
        if index is None:
            return Verdict(False, f"no index serves {terms.describe(sort)}")
        used.append(index.name)
    return Verdict(True, "served by " + ", ".join(dict.fromkeys(used)))


def relevant_sort(line: Mapping[str, Any]) -> list[str]:
    """The sort an index can serve: a find's, or an aggregation's ``$sort`` that only ``$match`` precedes."""
    stages = line.get("pipeline")
    if stages is None:
        return list(line.get("sort") or [])
    before = stages[: stages.index("$sort")] if "$sort" in stages else None
    return list(line.get("sort") or []) if before is not None and set(before) <= {"$match"} else []


def limited(line: Mapping[str, Any]) -> bool:
    return bool(line.get("limit")) or "$limit" in (line.get("pipeline") or [])


def judge(line: Mapping[str, Any], indexes: Sequence[Index], allowed: Sequence[AllowedScan]) -> Verdict | None:
    """The verdict on one shape line of ``service`` (None: not a query, or a count the server keeps)."""
    query, command = line.get("filter"), line.get("command")
    if query is None or command not in QUERIES or (command == "count" and not query):
        return None
    sort = relevant_sort(line)
    if query:
        return verdict(query, sort, indexes)
    scan = next((scan for scan in allowed if fnmatchcase(line["collection"], scan.collection)), None)
    if scan is None:
        return Verdict(False, "an empty filter: a collection scan, and not an allowed admin listing")
    if scan.limited and not limited(line):
        return Verdict(False, f"an allowed listing ({scan.listing}) without its bound: a limit")
    if sort and not verdict({}, sort, indexes).served:
        return Verdict(False, f"an allowed listing ({scan.listing}) whose sort no index serves: {', '.join(sort)}")
    return Verdict(True, f"an allowed listing: {scan.listing} (bound: {scan.bound})")


def service_of(database: str, services: Iterable[str]) -> str | None:
    """The service whose database ``database`` is: ``stepwise_<service>``, or that with a suffix (a test's)."""
    return next(
        (name for name in services if database in (f"stepwise_{name}",) or database.startswith(f"stepwise_{name}_")),
        None,
    )


def problems(
    lines: Iterable[Mapping[str, Any]], declared: Mapping[str, Sequence[Index]], allowed: Sequence[AllowedScan]
) -> list[str]:
    """Every distinct query shape of ``lines`` that no index its service declares serves, with why. A line's
    service is that of its database (``service_of``); lines of other databases are left out."""
    found: dict[str, str] = {}
    for line in lines:
        service = service_of(line.get("database", ""), declared)
        if service is None:
            continue
        collection = line["collection"]
        indexes = [index for index in declared.get(service, ()) if index.on(collection)]
        scans = [scan for scan in allowed if scan.service == service]
        judged = judge(line, indexes, scans)
        if judged is not None and not judged.served:
            what = {key: line.get(key) for key in ("command", "filter", "sort", "pipeline", "limit") if key in line}
            found.setdefault(f"{service} {collection} {json.dumps(what, sort_keys=True)}", judged.reason)
    return [f"{where}: {reason}" for where, reason in sorted(found.items())]
