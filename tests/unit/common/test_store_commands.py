"""A store command's shape keeps field names and operators and never a value (it is written to a file)."""

from services.common.store_commands import shape, shapes_of


def test_a_shape_keeps_names_and_operators_and_never_a_value() -> None:
    query = {"status": {"$in": ["a", "b"]}, "due": {"$lte": 5}, "episode_id": "secret",
             "$or": [{"a": 1}, {"b": {"$gt": 2}}]}  # fmt: skip
    assert shape(query) == {"status": {"$in": "list"}, "due": {"$lte": "value"}, "episode_id": "value",
                            "$or": [{"a": "value"}, {"b": {"$gt": "value"}}]}  # fmt: skip
    assert "secret" not in str(shapes_of("find", {"find": "c", "filter": query, "sort": {"due": 1}}))


def test_each_line_of_an_update_and_the_sort_of_a_pipeline_are_shapes() -> None:
    updates = {"update": "c", "updates": [{"q": {"_id": 1}}, {"q": {"x": 2}}]}
    assert shapes_of("update", updates) == [{"filter": {"_id": "value"}, "sort": []},
                                            {"filter": {"x": "value"}, "sort": []}]  # fmt: skip
    assert shapes_of("aggregate", {"pipeline": [{"$match": {"a": 1}}, {"$sort": {"b": -1}}]})[0]["sort"] == ["b"]


def test_a_find_says_whether_it_has_a_limit() -> None:
    assert shapes_of("find", {"find": "c", "filter": {}, "limit": 20})[0]["limit"] is True
    assert shapes_of("find", {"find": "c", "filter": {}})[0]["limit"] is False
    assert "limit" not in shapes_of("findAndModify", {"findAndModify": "c", "query": {}})[0]
