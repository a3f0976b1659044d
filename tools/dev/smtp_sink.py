"""A local SMTP server that keeps (and optionally prints) what it receives: `make run` and tests."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Mailbox:
    """Every message the sink accepted, parsed."""

    print_messages: bool = False
    messages: list[EmailMessage] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    """When each of ``messages`` was accepted (``time.monotonic()``): the benchmark's latencies."""
    holding: set[str] = field(default_factory=set)
    """Recipients whose RCPT TO the server answers only once released (a test stalls a send with it)."""
    stalled: set[str] = field(default_factory=set)
    """Of those, the ones a client is waiting on right now."""
    greylisted: set[str] = field(default_factory=set)
    """Recipients whose RCPT TO the server refuses for now (450, greylisting), as many relays do to strangers."""
    peers: list[Any] = field(default_factory=list)
    """The client's end of the connection each of ``messages`` came over: a connection used again has the same."""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, _server: Any, _session: Any, envelope: Any, address: str, _options: Any) -> str:  # noqa: N802
        while address in self.holding:
            self.stalled.add(address)
            await asyncio.sleep(0.02)
        self.stalled.discard(address)
        if address in self.greylisted:
            return "450 4.2.0 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
            self.received_at.append(time.monotonic())
            self.peers.append(session.peer)
        if self.print_messages:
            print(f"\n--- mail to {', '.join(envelope.rcpt_tos)} ---\n{message}\n--- end of mail ---", flush=True)
        return "250 Message accepted for delivery"

    def arrivals(self, since: int = 0) -> list[tuple[float, EmailMessage]]:
        """(when, message) of each message accepted, from the ``since``-th on."""
        with self._lock:
            return list(zip(self.received_at[since:], self.messages[since:], strict=True))

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [message for message in self.messages if address in str(message["To"])]


class SmtpSink:
    def __init__(self, port: int, print_messages: bool = False) -> None:
        self.mailbox = Mailbox(print_messages=print_messages)
        self.port = port
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=port)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

    def pause(self) -> None:
        """The relay goes away: connections are refused (the fault suite's mail outage)."""
        self._controller.stop()

    def resume(self) -> None:
        """The relay is back on the same port, with the same mailbox."""
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()
