"""An OpenID Connect provider on loopback for tests: a discovery document, a key set that can be rotated, and
real RS256 / ES256 access tokens (PyJWT and cryptography), as Keycloak or Entra ID would issue them.

It also signs people in, as Keycloak would for a confidential client (``CLIENT_ID``, ``CLIENT_SECRET``): an
authorization endpoint that answers at once for ``Provider.person`` (no login form; ``Provider.deny``: the person
says no), with Keycloak's extra parameters, and a token endpoint for the authorization-code grant (PKCE S256
required and checked) and the refresh-token grant (refresh tokens rotate; ``Provider.refuse_refresh``: every one is
refused; ``Provider.token_endpoint_down``: 503). Each token request's form is kept (``token_requests``), and every
code and token issued (``issued``)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

AUDIENCE = "stepwise"
REALM = "/realms/clinic"
CLIENT_ID = "stepwise-console"
CLIENT_SECRET = "console-secret-for-tests"
AUTH = "/protocol/openid-connect/auth"
TOKEN = "/protocol/openid-connect/token"
CERTS = "/protocol/openid-connect/certs"


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


@dataclass(frozen=True)
class Person:
    """Who signs in at the authorization endpoint, and what their access tokens carry."""

    subject: str = "3b1e7c52-0d3f-4c1e-9a57-7f2d9b6e1a40"
    username: str = "j.rivera"
    roles: tuple[str, ...] = ("clinician",)
    roles_at: str = "roles"


@dataclass(frozen=True)
class Grant:
    """An authorization (a code's, then its refresh tokens'): for whom, for which redirect URI, with which PKCE
    challenge and nonce."""

    person: Person
    redirect_uri: str
    challenge: str
    nonce: str | None


@dataclass
class Provider:
    """The provider's state: its issuer URL, the keys it publishes, how often its key set was fetched; the console
    client's redirect URIs, who signs in, the codes and refresh tokens outstanding."""

    issuer: str = ""
    keys: list[SigningKey] = field(default_factory=list)
    jwks_requests: int = 0
    redirect_uris: list[str] = field(default_factory=list)
    person: Person = field(default_factory=Person)
    deny: bool = False
    refuse_refresh: bool = False
    token_endpoint_down: bool = False
    access_token_seconds: float = 300
    codes: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    """Every access, ID and refresh token and code it gave out: none may reach a browser from the console."""

    def reset(self) -> None:
        """Everything but its issuer and keys as new: for a provider that several tests share."""
        fresh = Provider()
        for each in fields(self):
            if each.name not in ("issuer", "keys"):
                setattr(self, each.name, getattr(fresh, each.name))

    def discovery(self) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": f"{self.issuer}{CERTS}",
                "authorization_endpoint": f"{self.issuer}{AUTH}", "token_endpoint": f"{self.issuer}{TOKEN}",
                "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "id_token_signing_alg_values_supported": sorted({key.algorithm for key in self.keys})}  # fmt: skip

    def authorize(self, query: dict[str, str]) -> tuple[int, str]:
        """The authorization endpoint: (status, where the browser goes next, or what is wrong)."""
        self.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != CLIENT_ID or redirect_uri not in self.redirect_uris:
            return 400, "unknown client or redirect URI"  # never redirected: the URI is not the client's
        back = {"state": query["state"]} if "state" in query else {}
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return 302, _with(redirect_uri, back | {"error": "invalid_request"})
        if self.deny:
            return 302, _with(redirect_uri, back | {"error": "access_denied"})
        code = self._issue(secrets.token_urlsafe(24))
        self.codes[code] = Grant(self.person, redirect_uri, query.get("code_challenge", ""), query.get("nonce"))
        return 302, _with(redirect_uri, back | {"code": code, "session_state": uuid.uuid4().hex, "iss": self.issuer})

    def token_answer(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The token endpoint: (status, JSON answer)."""
        self.token_requests.append(form)
        if self.token_endpoint_down:
            return 503, {"error": "temporarily_unavailable"}
        if not _client_authenticated(form, authorization):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") == "authorization_code":
            grant = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            if grant is None or grant.redirect_uri != form.get("redirect_uri") or _s256(verifier) != grant.challenge:
                return 400, {"error": "invalid_grant"}
            return 200, self._tokens(grant, with_id_token=True)
        if form.get("grant_type") == "refresh_token":
            grant = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if grant is None or self.refuse_refresh:
                return 400, {"error": "invalid_grant", "error_description": "Token is not active"}
            return 200, self._tokens(grant, with_id_token=False)
        return 400, {"error": "unsupported_grant_type"}

    def _tokens(self, grant: Grant, with_id_token: bool) -> dict[str, Any]:
        person = grant.person
        access = self._issue(self.token(subject=person.subject, username=person.username, roles=list(person.roles),
                                        roles_at=person.roles_at, expires_in=self.access_token_seconds))  # fmt: skip
        refresh = self._issue(secrets.token_urlsafe(32))
        self.refresh_tokens[refresh] = grant
        answer = {"access_token": access, "token_type": "Bearer", "expires_in": int(self.access_token_seconds),
                  "refresh_token": refresh, "scope": "openid profile"}  # fmt: skip
        if with_id_token:
            answer["id_token"] = self._issue(self.id_token(person, grant.nonce))
        return answer

    def id_token(self, person: Person, nonce: str | None, audience: str = CLIENT_ID) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": audience, "sub": person.subject, "iat": now,
                                  "exp": now + 300, "preferred_username": person.username}  # fmt: skip
        if nonce is not None:
            claims["nonce"] = nonce
        key = self.keys[0]
        return jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid})  # type: ignore[arg-type]

    def _issue(self, value: str) -> str:
        self.issued.append(value)
        return value

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


def _with(uri: str, params: dict[str, str]) -> str:
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{urlencode(params)}"


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _client_authenticated(form: dict[str, str], authorization: str | None) -> bool:
    """client_secret_basic (Authlib's default) or client_secret_post."""
    if authorization and authorization.startswith("Basic "):
        given = base64.b64decode(authorization.removeprefix("Basic ")).decode()
        return given == f"{CLIENT_ID}:{CLIENT_SECRET}"
    return (form.get("client_id"), form.get("client_secret")) == (CLIENT_ID, CLIENT_SECRET)


@contextmanager
def oidc_provider(*algorithms: str) -> Iterator[Provider]:
    """A provider on a free loopback port publishing one key per algorithm (RS256 if none is named)."""
    provider = Provider(keys=[SigningKey.new(algorithm) for algorithm in algorithms or ("RS256",)])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            split = urlsplit(self.path.removeprefix(REALM))  # the realm is part of the issuer, as Keycloak's is
            if split.path == "/.well-known/openid-configuration":
                self._json(200, provider.discovery())
            elif split.path == CERTS:
                provider.jwks_requests += 1
                self._json(200, {"keys": [key.public_jwk() for key in provider.keys]})
            elif split.path == AUTH:
                status, where = provider.authorize(dict(parse_qsl(split.query)))
                if status != 302:
                    self.send_error(status, where)
                    return
                self.send_response(302)
                self.send_header("Location", where)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_error(404)

        def do_POST(self) -> None:
            if self.path.removeprefix(REALM) != TOKEN:
                self.send_error(404)
                return
            form = dict(parse_qsl(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()))
            self._json(*provider.token_answer(form, self.headers.get("Authorization")))

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
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
