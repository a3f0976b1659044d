"""Message text from Jinja2 templates a clinic can override (TEMPLATES_DIR).

Templates are named ``<purpose>.<channel>.j2``. An email template's first line is the subject, the
rest the body; an SMS template is the whole text. Text names no diagnosis, program type or score:
a message may be seen by someone other than the patient.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

DEFAULT_TEMPLATES = Path(__file__).resolve().parent / "templates"


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str


def _local(value: str, timezone: str, pattern: str) -> str:
    return datetime.fromisoformat(value).astimezone(ZoneInfo(timezone)).strftime(pattern)


class Templates:
    def __init__(self, override_dir: str | None, default_timezone: str) -> None:
        loaders = [FileSystemLoader(override_dir)] if override_dir else []
        self._environment = Environment(
            loader=ChoiceLoader([*loaders, FileSystemLoader(DEFAULT_TEMPLATES)]),
            undefined=StrictUndefined,
            autoescape=False,  # plain-text email, never HTML  # noqa: S701
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        self._environment.filters["local"] = _local
        self._default_timezone = default_timezone

    def render(self, purpose: str, channel: str, context: dict[str, Any]) -> RenderedMessage:
        template = self._environment.get_template(f"{purpose}.{channel}.j2")
        text = template.render({"timezone": self._default_timezone, **context})
        if channel == "sms":
            return RenderedMessage(subject="", body=" ".join(text.split()))
        subject, _, body = text.partition("\n")
        return RenderedMessage(subject=subject.strip(), body=body.lstrip("\n"))

    def missing(self, needed: Iterable[tuple[str, str]]) -> list[str]:
        """Of the (purpose, channel) pairs ``needed``, the template files found neither here nor in the defaults."""
        missing = []
        for purpose, channel in sorted(needed):
            try:
                self._environment.get_template(f"{purpose}.{channel}.j2")
            except TemplateNotFound:
                missing.append(f"{purpose}.{channel}.j2")
        return missing
