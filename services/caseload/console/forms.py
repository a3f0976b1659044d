"""Forms that act through a service: what it refused, in words next to the control each error names, and what was
typed kept for the form shown again (never a value in an error, a URL or a log).

A form's controls are named by the request field they fill, dotted as the service's 422 ``loc`` names it after
``body`` (``dimensions.withdrawal``, ``instruments.phq9.0``, ``placement.chosen_level``): an error finds its control
by that name. What names no control on the form (a refusal, an unreachable service, a field the form does not
show) is the form's own, under ``FORM``."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from .clients import Answer

FORM = ""
"""The key of what concerns the whole form: shown above it."""

WORDS = {
    "missing": "required",
    "int_type": "choose one",
    "bool_type": "choose yes or no",
}
"""Pydantic's messages for a control left empty (the console leaves an empty field out, or sends null for an item
not answered), in the form's words; a service's own message otherwise."""


def field_of(loc: Any) -> str:
    """A 422 ``loc`` (``["body", "instruments", "phq9", 8]``) as a control's name (``instruments.phq9.8``)."""
    parts = list(loc) if isinstance(loc, list | tuple) else []
    if parts[:1] == ["body"]:
        parts = parts[1:]
    return ".".join(str(part) for part in parts)


def field_errors(answer: Answer, controls: Collection[str] = ()) -> dict[str, str]:
    """The service's refusal by control name (``FORM`` for the whole form); nothing when it answered yes."""
    if answer.ok:
        return {}
    detail = answer.body.get("detail") if isinstance(answer.body, dict) else None
    if answer.status != 422 or not isinstance(detail, list):
        return {FORM: answer.error or "not done"}
    errors: dict[str, list[str]] = {}
    for entry in (item for item in detail if isinstance(item, dict)):
        field = field_of(entry.get("loc"))
        words = WORDS.get(str(entry.get("type")), str(entry.get("msg") or "invalid"))
        if field in controls:
            errors.setdefault(field, []).append(words)
        else:
            errors.setdefault(FORM, []).append(f"{field}: {words}" if field else words)
    return {field: "; ".join(said) for field, said in errors.items()}


def typed(form: Mapping[str, str]) -> dict[str, str]:
    """What was typed, for the form shown again (the CSRF token is the page's own)."""
    return {name: value for name, value in form.items() if name != "csrf"}
