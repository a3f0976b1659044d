"""The prefix rule the index test applies to every query shape of the integration suite (tools/check/index_rule.py)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from services.common.indexes import Index
from tools.check.index_rule import AllowedScan, branches, judge, problems, verdict

V = "value"


def index(*fields: str, unique: bool = False, collection: str = "c") -> Index:
    return Index(collection, tuple((field, 1) for field in fields), "a test's", unique=unique)


DUE = index("status", "urgent", "next_attempt_at")


def test_equality_then_sort_then_range_is_served_in_that_order_only() -> None:
    assert verdict({"status": V, "urgent": V, "next_attempt_at": {"$lte": V}}, ["next_attempt_at"], [DUE]).served
    assert verdict({"urgent": V, "status": {"$in": "list"}}, [], [DUE]).served
    # A range before an equality field: the index would read every status of every urgency.
    assert not verdict({"status": {"$gt": V}, "urgent": V}, [], [DUE]).served
    # A field the index does not hold is read from every document the prefix finds.
    unserved = verdict({"status": V, "channel": V}, [], [DUE])
    assert not unserved.served
    assert unserved.reason == "no index serves equality channel, status"
    # A sort the index does not give: the server sorts what it found.
    assert not verdict({"status": V}, ["next_attempt_at"], [DUE]).served
    assert verdict({"status": V, "urgent": V}, ["next_attempt_at"], [DUE]).served


def test_a_sort_on_a_fixed_field_is_no_sort_and_a_range_on_a_sort_field_is_the_sort() -> None:
    assert verdict({"status": V, "urgent": V}, ["status", "next_attempt_at"], [DUE]).served
    assert verdict({"status": V, "urgent": V, "next_attempt_at": {"$gt": V}}, ["next_attempt_at"], [DUE]).served


def test_a_point_read_by_id_or_a_whole_unique_key_is_served_whatever_else_it_filters_on() -> None:
    assert verdict({"_id": V, "version": V, "outbox_pending": {"$gt": V}}, [], []).served
    assert verdict({"_id": {"$in": "list"}}, ["_id"], []).served
    seats = index("group_id", "episode_id", unique=True)
    assert verdict({"group_id": V, "episode_id": V, "$expr": V}, [], [seats]).served
    assert not verdict({"group_id": V, "$expr": V}, [], [seats]).served
    assert verdict({"_id": {"$gt": V}}, ["_id"], []).served


def test_each_branch_of_an_or_must_be_served() -> None:
    audit = [index("subject", "at"), index("username", "at")]
    query = {"action": V, "$or": [{"subject": V}, {"username": V}]}
    assert [sorted(b.equality) for b in branches(query)] == [["action", "subject"], ["action", "username"]]
    assert not verdict(query, ["at"], audit).served
    assert verdict({"$or": [{"subject": V}, {"username": V}]}, ["at"], audit).served
    assert not verdict({"$or": [{"subject": V}, {"name": V}]}, ["at"], audit).served
    assert verdict({"$and": [{"subject": V}]}, [], audit).served


def test_elem_match_on_values_is_the_field_itself_and_on_documents_its_fields() -> None:
    assert verdict({"flags": {"$elemMatch": {"$eq": V}}}, ["_id"], [index("flags", "_id")]).served
    [terms] = branches({"lines": {"$elemMatch": {"kind": V, "at": {"$gt": V}}}})
    assert (terms.equality, terms.ranges) == (frozenset({"lines.kind"}), frozenset({"lines.at"}))
    assert not verdict({"tags": {"$size": V}}, [], [index("tags")]).served
    assert not verdict({"$where": V}, [], [index("tags")]).served


def served(line: dict[str, Any], indexes: list[Index], allowed: list[AllowedScan]) -> bool:
    judged = judge(line, indexes, allowed)
    assert judged is not None
    return judged.served


def test_an_empty_filter_passes_only_as_an_allowed_listing_with_its_bound() -> None:
    listing = AllowedScan("intake", "audit_log", "GET /v1/audit", "its limit: at most 500", limited=True)
    entries = {"command": "find", "collection": "audit_log", "filter": {}, "sort": ["at"], "limit": True}
    by_at = [index("at")]
    assert not served(entries, by_at, [])
    assert served(entries, by_at, [listing])
    assert not served(entries | {"limit": False}, by_at, [listing])
    assert not served(entries, [], [listing])  # the server would sort every entry for one page
    assert judge({"command": "count", "collection": "x", "filter": {}, "sort": []}, [], []) is None  # metadata
    assert judge({"command": "insert", "collection": "x", "filter": None, "sort": []}, [], []) is None


def test_an_aggregation_sort_counts_only_right_after_its_match() -> None:
    line = {"command": "aggregate", "collection": "c", "filter": {"status": V}, "sort": ["n"]}
    assert served(line | {"pipeline": ["$match", "$group", "$sort"]}, [index("status")], [])
    assert not served(line | {"pipeline": ["$match", "$sort"]}, [index("status")], [])


def test_problems_name_each_unserved_shape_once_by_service_and_leave_other_databases_out() -> None:
    line = {"database": "stepwise_care_plan_test_1", "collection": "plans", "command": "find", "filter": {"x": V},
            "sort": []}  # fmt: skip
    other = line | {"database": "someone_else"}
    found = problems([line, line, other], {"care_plan": [index("y", collection="plans")]}, [])
    assert found == ['care_plan plans {"command": "find", "filter": {"x": "value"}, "sort": []}: no index serves '
                     "equality x"]  # fmt: skip
    episodes = line | {"collection": "episodes_v3_initial", "filter": {"flags": V}}
    assert problems([episodes], {"care_plan": [index("flags", collection="episodes_v*")]}, []) == []


FIELDS = st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=6, unique=True)


@given(FIELDS, st.data())
def test_any_index_serves_every_query_made_of_its_own_prefix(fields: list[str], data: Any) -> None:
    """Equality on its first keys (any order), a sort on the next, ranges on the next: served."""
    declared = index(*fields)
    equal = data.draw(st.integers(0, len(fields)))
    ordered = data.draw(st.integers(0, len(fields) - equal))
    ranged = data.draw(st.integers(0, len(fields) - equal - ordered))
    if equal + ordered + ranged == 0:
        return
    query: dict[str, Any] = {field: data.draw(st.sampled_from([V, {"$in": "list"}])) for field in fields[:equal]}
    query |= {f: {"$gt": V} for f in fields[equal + ordered : equal + ordered + ranged]}
    query = dict(data.draw(st.permutations(list(query.items()))))
    assert verdict(query, fields[equal : equal + ordered], [declared]).served


@given(FIELDS, st.sampled_from("xyz"))
def test_no_index_serves_a_query_on_a_field_it_does_not_hold(fields: list[str], missing: str) -> None:
    assert not verdict({fields[0]: V, missing: V}, [], [index(*fields)]).served
    assert not verdict({fields[0]: V}, [missing], [index(*fields)]).served


def test_a_query_fixing_the_first_key_of_a_scoped_index_is_served_whatever_else_it_asks() -> None:
    log = Index("c", (("episode_id", 1), ("created_at", -1)), "a test's", scope="one episode's messages")
    assert verdict({"episode_id": V, "purpose": V, "series": {"$ne": V}}, ["created_at"], [log]).served
    assert verdict({"episode_id": {"$in": "list"}, "$where": V}, ["kind"], [log]).served
    assert not verdict({"purpose": V}, ["created_at"], [log]).served
    # A range over its first key spans many episodes: the prefix rule alone says.
    assert not verdict({"episode_id": {"$gt": V}, "purpose": V}, [], [log]).served
    assert verdict({"episode_id": {"$gt": V}}, [], [replace(log, scope="")]).served
