"""YAML loaded as docker compose and Helm read it: a key given twice in one mapping is an error (PyYAML alone
silently keeps the last one, so a duplicate would pass every test and then be refused by `docker compose`)."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

MERGE = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a duplicate key; `<<:` merges stay legal (a key given beside a merge overrides it)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE:
                continue
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]  # untyped in the stubs
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> Any:
    return yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: no arbitrary objects
