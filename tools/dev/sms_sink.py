"""A local stand-in for an SMS provider's send endpoint: keeps (and optionally prints) every text.

Accepts what notifications' SmsSender posts (JSON ``{"to", "from", "body", "reference"}``) and answers
202. Tests can make it refuse the next texts to a number, to play an outage.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Text:
    to: str
    body: str
    reference: str
    idempotency_key: str


class SmsSink:
    def __init__(self, port: int = 0, token: str = "", print_messages: bool = False) -> None:
        self.texts: list[Text] = []
        self.refused: Counter[str] = Counter()
        self._failures: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self._answer(401)
                    return
                try:
                    body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                    text = Text(str(body["to"]), str(body["body"]), str(body["reference"]),
                                self.headers.get("Idempotency-Key", ""))  # fmt: skip
                except (ValueError, KeyError):
                    self._answer(400)
                    return
                self._answer(sink._accept(text, print_messages))

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/messages"

    def _accept(self, text: Text, print_messages: bool) -> int:
        with self._lock:
            count, status = self._failures.get(text.to, (0, 0))
            if count > 0:
                self._failures[text.to] = (count - 1, status)
                self.refused[text.to] += 1
                return status
            self.texts.append(text)
        if print_messages:
            print(f"\n--- text to {text.to} ---\n{text.body}\n--- end of text ---", flush=True)
        return 202

    def fail_next(self, number: str, count: int, status: int = 503) -> None:
        """Answer ``status`` to the next ``count`` texts to ``number`` (an outage, or a refusal)."""
        with self._lock:
            self._failures[number] = (count, status)

    def to(self, number: str) -> list[Text]:
        with self._lock:
            return [text for text in self.texts if text.to == number]

    def __enter__(self) -> SmsSink:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
