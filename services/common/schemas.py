"""What every service's request and response bodies share: the examples the OpenAPI documents show."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict


def request_examples(*examples: dict[str, Any]) -> ConfigDict:
    """A request body: its examples, and no field beyond those declared (a misspelt field is a 422)."""
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


def response_example(example: dict[str, Any]) -> ConfigDict:
    """A response: the example the OpenAPI document shows."""
    return ConfigDict(json_schema_extra={"examples": [example]})
