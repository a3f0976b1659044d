"""Reading a clinic's policy file (YAML) into its validated model, with errors naming file and field.

Pure apart from reading the one file; the services' domain packages call it at start-up.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from stepwise_contract import describe_validation_error

PolicyT = TypeVar("PolicyT", bound=BaseModel)


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the field."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that rejects a key repeated in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark, f"found duplicate key {key!r}", key_node.start_mark
                )
            if isinstance(key, Hashable):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_policy_file(path: Path, model: type[PolicyT], what: str) -> PolicyT:
    """Read and validate ``path`` as ``model``; ``what`` names the policy in errors ("placement policy")."""
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise PolicyError(f"{path}: cannot read {what}: {error}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise PolicyError(f"{path}: invalid {what}: {describe_validation_error(error)}") from None
