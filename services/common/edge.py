"""The HTTP edge in front of every service's routes: what is refused before a request reaches them.

- A body over ``MAX_BODY_BYTES`` is a 413: from its ``Content-Length`` before a byte of it is read, and a body
  sent without one (chunked) as soon as what was read passes the limit.
- Under ``/v1`` the bearer token is checked before anything reads the body: a request without a valid token is
  a 401 whatever it carries, and its body is never read.
- A refused token is logged with its fingerprint, the client's address and how many that client had refused in
  the last minute (never the token). After ``AUTH_FAILURES_PER_MINUTE`` of them, the client gets 429 with
  ``Retry-After`` and no token of theirs is checked until the oldest leaves the minute. The client is the
  connection's peer, or, when the peer is a trusted proxy (``TRUSTED_PROXIES``), the address that proxy put in
  ``X-Forwarded-For``. The count is per process (per instance), in bounded memory.
- Every answer says ``Cache-Control: no-store`` (but the API docs' bundled assets) and
  ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Unauthenticated, fingerprint

log = logging.getLogger(__name__)

MiB = 1024 * 1024
PROTECTED = "/v1/"
"""Every endpoint under /v1 needs a bearer token."""
CACHEABLE = "/docs/assets/"
"""The API docs' bundled assets: the same bytes for everyone, pinned by their hash."""
CALLER = "caller"
"""Where in the request's state the gate leaves the authenticated caller (``request.state.caller``)."""

Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class EdgeConfig:
    """The edge's settings (services/common/settings.py names them)."""

    max_body_bytes: int = MiB
    api_docs: bool = True
    auth_failures_per_minute: int = 30
    trusted_proxies: tuple[Network, ...] = ()


def parse_networks(raw: str) -> tuple[Network, ...]:
    """``10.0.0.7, 10.1.0.0/16, ::1`` → the networks; an error names the entry that is neither."""
    networks = []
    for position, entry in enumerate(filter(None, (part.strip() for part in raw.split(","))), start=1):
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES entry {position} is not an IP address or CIDR network") from None
    return tuple(networks)


def client_address(scope: Scope, trusted: tuple[Network, ...]) -> str:
    """Who sent the request: the peer, unless the peer is a trusted proxy. Then it is the last address in
    ``X-Forwarded-For`` that is not itself a trusted proxy: each proxy appends the peer it saw, so the entries
    left of that one are the client's own say and count for nothing."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if not _within(peer, trusted):
        return peer
    hops = [hop.strip() for name, value in scope["headers"] if name == b"x-forwarded-for"
            for hop in value.decode("latin-1").split(",")]  # fmt: skip
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop if _is_address(hop) else peer
    return peer


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


class AuthFailures:
    """Refused tokens per client in the last minute, in this process.

    Each client keeps the times of its last ``per_minute`` refusals; at most ``BUDGET`` times are kept in all
    (the clients refused longest ago are forgotten first), so memory stays bounded whatever the traffic.
    """

    WINDOW_SECONDS = 60.0
    BUDGET = 100_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.max_clients = max(100, self.BUDGET // per_minute)
        self._clock = clock
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()
        self.refused_total = 0
        """Tokens refused since the process started (every client)."""

    def retry_after(self, client: str) -> int:
        """Seconds until ``client`` may present a token again; 0 when it may now."""
        recent = self._recent.get(client)
        if recent is None or len(recent) < self.per_minute:
            return 0
        wait = recent[0] + self.WINDOW_SECONDS - self._clock()
        return math.ceil(wait) if wait > 0 else 0

    def refused(self, client: str) -> int:
        """Count a refused token of ``client``; the client's refusals in the last minute, this one included."""
        now = self._clock()
        recent = self._recent.pop(client, None) or deque(maxlen=self.per_minute)
        recent.append(now)
        while recent[0] <= now - self.WINDOW_SECONDS:
            recent.popleft()
        self._recent[client] = recent
        if len(self._recent) > self.max_clients:
            self._recent.popitem(last=False)
        self.refused_total += 1
        return len(recent)

    def __len__(self) -> int:
        return len(self._recent)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            status.HTTP_413_CONTENT_TOO_LARGE, f"the body is larger than this service takes ({limit} bytes)"
        )


class BodyLimit:
    """413 for a body over ``limit`` bytes, before it is read (``Content-Length``) or once it passes the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await answer(scope, send, BodyTooLarge(self.limit))
            return
        read = 0

        async def counted() -> Message:
            nonlocal read
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.limit:
                    raise BodyTooLarge(self.limit)  # FastAPI answers it as any HTTPException raised reading a body
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class TokenGate:
    """Under /v1: 429 for a client with too many refused tokens, 401 without a valid bearer token; else the
    caller is left in the request's state (for ``require_roles``) and the request goes on, body unread."""

    def __init__(self, app: ASGIApp, trusted_proxies: tuple[Network, ...]) -> None:
        self.app = app
        self.trusted = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _route_path(scope).startswith(PROTECTED):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        failures: AuthFailures = state.auth_failures
        client = client_address(scope, self.trusted)
        wait = failures.retry_after(client)
        if wait:
            detail = f"too many refused tokens from this client: try again in {wait} s"
            limited = HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail, {"Retry-After": str(wait)})
            await answer(scope, send, limited)
            return
        scheme, token = get_authorization_scheme_param(_header(scope, b"authorization"))
        if not token or scheme.lower() != "bearer":
            challenge = {"WWW-Authenticate": "Bearer"}
            await answer(scope, send, HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", challenge))
            return
        try:
            caller = await state.authenticator.authenticate(token)
        except Unauthenticated as refused:
            count = failures.refused(client)
            log.warning(
                "bearer token refused (%s): fingerprint %s from %s, %d refused from there in the last minute, "
                "%d in all",
                refused.detail,
                fingerprint(token),
                client,
                count,
                failures.refused_total,
            )
            await answer(scope, send, refused)
            return
        except HTTPException as error:  # the identity provider's keys cannot be had: 503
            await answer(scope, send, error)
            return
        scope.setdefault("state", {})[CALLER] = caller
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _header(scope: Scope, name: bytes) -> str | None:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), None)


async def answer(scope: Scope, send: Send, error: HTTPException) -> None:
    """``error`` as every service answers one: ``{"detail": …}`` with its headers."""
    response = JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    await response(scope, _nothing_to_read, send)


async def _nothing_to_read() -> Message:
    return {"type": "http.disconnect"}


class SecurityHeaders:
    """``Cache-Control: no-store`` and ``X-Content-Type-Options: nosniff`` on every answer, errors included."""

    HEADERS: Mapping[str, str] = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = _route_path(scope).startswith(CACHEABLE)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.HEADERS.items():
                    if not (cacheable and name == "Cache-Control"):
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
