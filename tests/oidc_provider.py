"""An OpenID Connect provider on loopback for tests: a discovery document, a key set that can be rotated, and
real RS256 / ES256 access tokens (PyJWT and cryptography), as Keycloak or Entra ID would issue them."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

AUDIENCE = "stepwise"
REALM = "/realms/clinic"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: PrivateKeyTypes

    @classmethod
    def new(cls, algorithm: str = "RS256") -> SigningKey:
        private: PrivateKeyTypes = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if algorithm.startswith(("RS", "PS"))
            else ec.generate_private_key(ec.SECP256R1())
        )
        return cls(f"{algorithm.lower()}-{uuid.uuid4().hex[:8]}", algorithm, private)

    def public_jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.algorithm)
        jwk: dict[str, Any] = json.loads(algorithm.to_jwk(self.private.public_key()))
        return jwk | {"kid": self.kid, "alg": self.algorithm, "use": "sig"}


@dataclass
class Provider:
    """The provider's state: its issuer URL, the keys it publishes, how often its key set was fetched."""

    issuer: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    jwks_requests: int = 0

    def token(
        self,
        *,
        key: SigningKey | None = None,
        subject: str = "3b1e7c52-0d3f-4c1e-9a57-7f2d9b6e1a40",
        username: str | None = "j.rivera",
        roles: list[str] | None = None,
        roles_at: str = "roles",
        audience: str = AUDIENCE,
        issuer: str | None = None,
        expires_in: float = 300,
        not_before_in: float | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """A signed access token; ``roles_at`` is where the roles go (``realm_access.roles`` for Keycloak)."""
        key = key or self.keys[0]
        now = time.time()
        claims: dict[str, Any] = {"iss": issuer or self.issuer, "aud": audience, "sub": subject, "iat": int(now),
                                  "exp": int(now + expires_in), "jti": uuid.uuid4().hex}  # fmt: skip
        if username:
            claims["preferred_username"] = username
        if not_before_in is not None:
            claims["nbf"] = int(now + not_before_in)
        node = claims
        *path, last = roles_at.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = roles if roles is not None else ["clinician"]
        return jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid, **(headers or {})})  # type: ignore[arg-type]


@contextmanager
def oidc_provider(*algorithms: str) -> Iterator[Provider]:
    """A provider on a free loopback port publishing one key per algorithm (RS256 if none is named)."""
    provider = Provider(keys=[SigningKey.new(algorithm) for algorithm in algorithms or ("RS256",)])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.removeprefix(REALM)  # the realm is part of the issuer, as Keycloak's is
            body: dict[str, Any]
            if path == "/.well-known/openid-configuration":
                body = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/protocol/openid-connect/certs"}
            elif path == "/protocol/openid-connect/certs":
                provider.jwks_requests += 1
                body = {"keys": [key.public_jwk() for key in provider.keys]}
            else:
                self.send_error(404)
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.issuer = f"http://127.0.0.1:{server.server_address[1]}{REALM}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
