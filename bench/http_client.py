"""The benchmark's HTTP client: JSON over keep-alive HTTP/1.1 connections, and little else.

In production the clinic's EHR calls intake from another machine; here the load generator shares two cores with
everything it measures, so it must cost little. httpx spends several milliseconds of CPU per request; this
client a fraction of one, so both pipelines get the CPU the client would have taken.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpClient:
    """Up to ``connections`` keep-alive connections to one server; a request takes a free one."""

    def __init__(self, base_url: str, headers: dict[str, str], connections: int = 32) -> None:
        address = urlsplit(base_url)
        self._host, self._port = address.hostname or "127.0.0.1", address.port or 80
        self._headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._free: asyncio.LifoQueue[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None] = asyncio.LifoQueue()
        for _ in range(connections):
            self._free.put_nowait(None)  # opened on first use

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Answer:
        payload = json.dumps(body).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n{self._headers}{extra}\r\n")  # fmt: skip
        connection = await self._free.get()
        try:
            if connection is not None:
                try:
                    answer = await _exchange(connection, head.encode() + payload)
                except (OSError, asyncio.IncompleteReadError):  # the server closed an idle keep-alive connection
                    connection[1].close()
                    connection = None
            if connection is None:
                connection = await asyncio.open_connection(self._host, self._port)
                answer = await _exchange(connection, head.encode() + payload)
        except (OSError, asyncio.IncompleteReadError):
            if connection is not None:
                connection[1].close()
            self._free.put_nowait(None)
            raise
        self._free.put_nowait(connection)
        return answer

    async def close(self) -> None:
        while not self._free.empty():
            connection = self._free.get_nowait()
            if connection is not None:
                connection[1].close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def _exchange(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> Answer:
    reader, writer = connection
    writer.write(request)
    return await _read_answer(reader)


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line = await reader.readuntil(b"\r\n")
    length = 0
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return Answer(int(status_line.split()[1]), await reader.readexactly(length))
