"""The console's client at the clinic's OpenID Connect provider, through Authlib: the provider's discovery document,
the authorization-code flow with PKCE (S256), ``state`` and ``nonce``, the ID token's check (signature by the
provider's published keys, issuer, audience, expiry, nonce), and the refresh-token grant.

Nothing here logs or returns a code, a token or a verifier in words: a ``ProviderError`` says what went wrong in a
sentence fit for the sign-in page and the log."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.starlette_client import OAuth
from joserfc.errors import JoseError

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Started:
    """A sign-in sent to the provider: where the browser goes, and what only the console keeps."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True)
class Tokens:
    """What the provider's token endpoint gave: the person's access token, the refresh token if any, and how long
    the access token lasts (seconds; None when the provider does not say)."""

    access_token: str
    refresh_token: str | None
    expires_in: float | None


class ProviderError(Exception):
    """``words`` for the page and the log (never a token or a code); ``refused``: the provider answered no (the code
    or refresh token is not valid, the ID token is not right), else it could not be reached or used."""

    def __init__(self, words: str, *, refused: bool) -> None:
        super().__init__(words)
        self.words = words
        self.refused = refused


class ClinicProvider:
    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str,
        scopes: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.issuer = issuer
        self.redirect_uri = redirect_uri
        self._client = {"client_id": client_id, "client_secret": client_secret}
        # Authlib makes a client per call: they share one TLS context (the CAs are read once, not at each call).
        self._http: dict[str, Any] = {"timeout": TIMEOUT_SECONDS, "verify": httpx.create_ssl_context()}
        self._http |= {"transport": transport} if transport else {}
        self._app: Any = OAuth().register(
            "clinic",
            **self._client,
            server_metadata_url=f"{issuer.rstrip('/')}/.well-known/openid-configuration",
            client_kwargs={"scope": scopes, "code_challenge_method": "S256", **self._http},
        )

    async def start(self) -> Started:
        """The authorization request: a fresh state, nonce and PKCE verifier (S256 challenge in the URL)."""
        await self._metadata()
        made = await self._call(self._app.create_authorization_url(self.redirect_uri), "start the sign-in")
        return Started(made["url"], made["state"], made["nonce"], made["code_verifier"])

    async def finish(self, code: str, started: Started) -> Tokens:
        """The code exchanged (with the PKCE verifier) and the ID token checked (its nonce the one sent)."""
        await self._metadata()
        token = await self._call(
            self._app.fetch_access_token(
                redirect_uri=self.redirect_uri, code=code, code_verifier=started.code_verifier
            ),
            "exchange the code",
        )
        if "id_token" not in token:
            raise ProviderError("the provider sent no ID token (is openid in CONSOLE_OIDC_SCOPES?)", refused=True)
        await self._call(self._app.parse_id_token(token, nonce=started.nonce), "check the ID token")
        return _tokens(token)

    async def refresh(self, refresh_token: str) -> Tokens:
        """A new access token for the refresh token (the provider may rotate the refresh token too)."""
        metadata = await self._metadata()
        async with AsyncOAuth2Client(**self._client, **self._http) as client:
            token = await self._call(
                client.refresh_token(metadata["token_endpoint"], refresh_token=refresh_token), "renew the sign-in"
            )
        return _tokens(token)

    async def _metadata(self) -> dict[str, Any]:
        """The discovery document (Authlib keeps it once fetched); it must name our issuer and the endpoints."""
        metadata: dict[str, Any] = await self._call(self._app.load_server_metadata(), "read its discovery document")
        if metadata.get("issuer") != self.issuer:
            raise ProviderError(f"the provider's discovery document names issuer {metadata.get('issuer')!r}, not "
                                "OIDC_ISSUER", refused=False)  # fmt: skip
        lacking = [name for name in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not metadata.get(name)]
        if lacking:
            raise ProviderError(f"the provider's discovery document lacks {', '.join(lacking)}", refused=False)
        return metadata

    @staticmethod
    async def _call(pending: Any, doing: str) -> Any:
        """Awaits one of Authlib's calls, its failures said in words."""
        try:
            return await pending
        except OAuthError as error:  # the provider's own answer: invalid_grant, invalid_client …
            raise ProviderError(f"the provider refused to {doing} ({error_word(error.error)})", refused=True) from None
        except JoseError as error:
            raise ProviderError(f"the ID token is not valid ({error_word(error.error)})", refused=True) from None
        except httpx.HTTPStatusError as error:
            raise ProviderError(f"the provider answered {error.response.status_code} to {doing}",
                                refused=error.response.status_code < 500) from None  # fmt: skip
        except httpx.HTTPError as error:
            raise ProviderError(f"the provider cannot be reached to {doing} ({type(error).__name__})",
                                refused=False) from None  # fmt: skip
        except (ValueError, KeyError, TypeError):  # not JSON, or not a token response
            raise ProviderError(f"the provider's answer to {doing} cannot be read", refused=False) from None


def _tokens(token: dict[str, Any]) -> Tokens:
    expires_in = token.get("expires_in")
    if not token.get("access_token") or (expires_in is not None and not isinstance(expires_in, int | float)):
        raise ProviderError(
            "the provider's token answer has no access token, or no number in expires_in", refused=False
        )
    return Tokens(str(token["access_token"]), token.get("refresh_token") or None,
                  None if expires_in is None else float(expires_in))  # fmt: skip


def error_word(error: object) -> str:
    """An OAuth error code, as a word of letters and underscores (what a provider sends is not echoed as it is)."""
    word = "".join(character for character in str(error or "") if character.isalnum() or character == "_")
    return word[:40] or "no error code"
