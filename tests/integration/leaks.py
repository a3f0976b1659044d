"""What a whole run of the stack logged and traced, checked at its end: every log line one JSON object, and no PII,
token or questionnaire link of the run in any line or exported span (issue 29)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from tools.dev.otlp_sink import ExportedSpan
from tools.dev.sms_sink import SmsSink
from tools.dev.smtp_sink import Mailbox

USED: set[str] = set()
"""PII the run typed (tests/integration/conftest.py: ``new_episode``) and secrets it used."""
LINK_TOKEN = re.compile(r"/q/([A-Za-z0-9_\-]{16,})")


def link_tokens(mailbox: Mailbox, texts: SmsSink) -> set[str]:
    """The questionnaire links' secrets the run sent (in mails and texts)."""
    bodies = [str(message.get_body(("plain",)).get_content()) for message in mailbox.messages]  # type: ignore[union-attr]
    bodies += [text.body for text in texts.texts]
    return {token for body in bodies for token in LINK_TOKEN.findall(body)}


def not_json(log: Path) -> list[str]:
    """The lines of ``log`` that are not one JSON object each."""
    wrong = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            wrong.append(line)
            continue
        if not isinstance(parsed, dict):
            wrong.append(line)
    return wrong


def leaks(logs: Iterable[Path], spans: Iterable[ExportedSpan], secrets: Iterable[str]) -> list[str]:
    """Where one of ``secrets`` shows: ``file:line`` or ``span service/name``, never the secret itself."""
    wanted = [secret for secret in secrets if len(secret) >= 6]
    found = []
    for log in logs:
        for number, line in enumerate(log.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
            found += [f"{log.name}:{number}" for secret in wanted if secret in line]
    for span in spans:
        texts = span.texts()
        found += [f"span {span.service}/{span.name}" for secret in wanted if any(secret in text for text in texts)]
    return found
