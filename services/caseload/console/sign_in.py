"""Signing in to the console at the clinic's OpenID Connect provider (with ``OIDC_ISSUER``; without it, the token
form of ``web.py``): what the sign-in page does, what the provider's answer (``/console/callback``) becomes, and
how a session's access token is kept fresh with its refresh token.

The sign-in page sends the browser to the provider (the authorization-code flow with PKCE, ``state`` and ``nonce``:
``provider.py``), keeping what must come back server-side (``sessions.begin``) under a cookie of its own. The answer
is taken once: the state must match, the code is exchanged with the PKCE verifier, the ID token checked, and the
access token authenticated as every service does it (``Authenticator``: the same role mapping); only a console role
opens a session. A failure is a word in the sign-in page's URL (``?failed=state``), never a code or a token."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
from fastapi import HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from services.common.auth import Authenticator, Principal, Unauthenticated
from services.common.dependencies import Dependencies, DependencyDown
from services.common.utc import utc_now

from ..settings import CaseloadSettings
from ..store import stamp
from . import pages
from .pages import CONSOLE_ROLES, HEADERS
from .provider import ClinicProvider, ProviderError, Started, Tokens, error_word
from .sessions import ConsoleSession, ConsoleSessions

log = logging.getLogger(__name__)

CALLBACK = "/console/callback"
PENDING_COOKIE = "stepwise_console_sign_in_at"
"""The browser's half of a sign-in under way at the provider (a random id; the rest is in ``console_sign_ins``)."""
RENEW_BEFORE_US = 60 * 1_000_000
"""An access token this close to its expiry is renewed before the request uses it."""
RENEWAL_LEASE_SECONDS = 15.0
PROBLEM = "console_sign_in"
"""The name readiness gives the console's sign-in when its settings lack something (``problems.console_sign_in``)."""

FAILED = {
    "denied": "You did not allow the console to use your clinic account, so you are not signed in.",
    "provider": "The clinic's sign-in answered with an error, so you are not signed in. Try again; if it goes on, "
    "tell IT.",
    "expired": "This sign-in took longer than ten minutes, or was used already: sign in again.",
    "state": "This answer from the clinic's sign-in does not belong to the sign-in this browser started, so it was "
    "refused. Sign in again.",
    "refused": "The clinic's sign-in did not complete: sign in again. If it goes on, tell IT.",
    "role": "Your clinic account holds no role that may use the console (clinician, intake staff or admin): ask IT "
    "for one.",
    "unreachable": "The clinic's sign-in cannot be reached now: try again in a minute.",
    "busy": "Too many sign-ins were refused from here: wait a minute and try again.",
}
"""What the sign-in page says after a sign-in that did not complete, by the word in its URL (``?failed=``)."""
COUNTED = frozenset({"state", "refused", "role"})
"""Failures that count toward ``AUTH_FAILURES_PER_MINUTE``, as a refused token does."""
NOTICES = {
    "ended": "You were signed out: the session ended after a time without activity.",
    "lapsed": "You were signed out: your sign-in at the clinic's account could not be renewed. Sign in again.",
    "out": "You signed out of the console. You may still be signed in to your clinic account in this browser.",
}


@dataclass(frozen=True)
class ProviderSignIn:
    """Sign-in at the clinic's provider (``OIDC_ISSUER`` set): the provider, or what its settings lack."""

    provider: ClinicProvider | None
    problem: str | None = None


class SignInFailed(Exception):
    """``key``: the page's words (``FAILED``); ``detail``: for the log (never a code or a token)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(detail)
        self.key = key
        self.detail = detail


def setup(settings: CaseloadSettings) -> ProviderSignIn | None:
    """None without ``OIDC_ISSUER`` (the token form); else the provider, or what is missing to use it."""
    if not settings.oidc_issuer:
        return None
    problems = settings.console_sign_in_problems()
    if problems:
        return ProviderSignIn(None, "; ".join(problems) + ": staff cannot sign in to the console")
    provider = ClinicProvider(settings.oidc_issuer, settings.console_oidc_client_id,
                              settings.console_oidc_client_secret.get_secret_value(), settings.console_redirect_uri,
                              settings.console_oidc_scopes)  # fmt: skip
    return ProviderSignIn(provider)


def report(at_provider: ProviderSignIn | None, dependencies: Dependencies) -> None:
    """A misconfigured sign-in is loud: an error in the log and the service not ready, naming the settings."""
    if at_provider is not None and at_provider.problem:
        dependencies.failed(DependencyDown(PROBLEM, at_provider.problem, misconfigured=True))


async def page(
    request: Request, at_provider: ProviderSignIn, sessions: ConsoleSessions, notice: str | None, failed: str | None
) -> Response:
    """``GET /console/sign-in``: the browser sent to the provider, unless there is something to say first (then a
    link does it)."""
    if at_provider.provider is None:
        return _page(503, error="Signing in with your clinic account is not set up yet: IT finds what is missing in "
                                "this service's readiness (/health/ready).", start=False)  # fmt: skip
    if failed or notice:
        return _page(400 if failed else 200, error=FAILED.get(failed or "", FAILED["refused"]) if failed else None,
                     notice=NOTICES.get(notice or ""))  # fmt: skip
    try:
        started = await at_provider.provider.start()
    except ProviderError as error:
        log.warning("console sign-in not started: %s", error.words)
        return _page(503, error=FAILED["unreachable"])
    cookie = await sessions.begin(started.state, started.nonce, started.code_verifier)
    response = RedirectResponse(started.url, status_code=303, headers=HEADERS)
    response.set_cookie(PENDING_COOKIE, cookie, max_age=600, path=CALLBACK, httponly=True, samesite="lax",
                        secure=pages.over_https(request))  # fmt: skip
    return response


def _page(status: int, *, error: str | None = None, notice: str | None = None, start: bool = True) -> Response:
    return pages.page("sign_in_provider.html", status, title="Sign in", session=None, error=error, notice=notice,
                      start=start)  # fmt: skip


async def answered(
    params: Mapping[str, str],
    pending: tuple[str, str, str] | None,
    at_provider: ProviderSignIn | None,
    authenticator: Authenticator,
) -> tuple[Tokens, Principal]:
    """The provider's answer to the sign-in this browser started (``pending``: its state, nonce and verifier) made
    into the person's tokens and who they are; raises SignInFailed."""
    provider = at_provider.provider if at_provider else None
    if provider is None:
        raise SignInFailed("refused", "no sign-in at a provider is set up here")
    if said := params.get("error"):
        raise SignInFailed(
            "denied" if said == "access_denied" else "provider", f"the provider answered {error_word(said)}"
        )
    if pending is None:
        raise SignInFailed("expired", "no sign-in is under way for this browser (none, used, or too old)")
    state, nonce, verifier = pending
    if not hmac.compare_digest(params.get("state", "").encode(), state.encode()):
        raise SignInFailed("state", "the answer's state is not the one this browser's sign-in sent")
    if params.get("iss", provider.issuer) != provider.issuer:  # RFC 9207: an answer from another provider
        raise SignInFailed("state", "the answer names another issuer")
    if not params.get("code"):
        raise SignInFailed("refused", "the answer has no code")
    try:
        tokens = await provider.finish(params["code"], Started("", state, nonce, verifier))
    except ProviderError as error:
        raise SignInFailed("refused" if error.refused else "unreachable", error.words) from None
    # The access token came in the same answer as the ID token, from the token endpoint to this authenticated client:
    # it is the person's (its ``sub`` need not be the ID token's: Entra ID's differs when the API is another app).
    return tokens, await _console_principal(authenticator, tokens.access_token)


async def _console_principal(authenticator: Authenticator, access_token: str) -> Principal:
    """Who the access token names, as every service authenticates it, in a role that may use the console."""
    try:
        caller = await authenticator.authenticate(access_token)
    except Unauthenticated as refused:
        raise SignInFailed("refused", f"the access token is not accepted ({refused.detail})") from None
    except HTTPException:  # 503: the provider's keys cannot be had
        raise SignInFailed("unreachable", "the provider's keys cannot be had to check the access token") from None
    principal = caller.acting_as(CONSOLE_ROLES)
    if principal is None:
        held = ", ".join(sorted(caller.roles)) or "no Stepwise role"
        raise SignInFailed("role", f"the account of token {caller.token_id} holds {held}")
    return principal


def expires_us(tokens: Tokens) -> int | None:
    """When the access token expires, on the services' clock: by ``expires_in``, else by its own ``exp``."""
    lifetime = tokens.expires_in
    if lifetime is None:
        try:  # checked already, by the Authenticator
            exp = jwt.decode(tokens.access_token, options={"verify_signature": False}).get("exp")
        except jwt.PyJWTError:
            exp = None
        lifetime = float(exp) - time.time() if isinstance(exp, int | float) else None
    return None if lifetime is None else stamp(utc_now()) + int(lifetime * 1_000_000)


async def kept_fresh(
    at_provider: ProviderSignIn | None, sessions: ConsoleSessions, authenticator: Authenticator, session: ConsoleSession
) -> ConsoleSession | None:
    """The session, its access token renewed with the refresh token when it nears expiry; None when it has expired
    and cannot be renewed (the person is signed out). A provider that cannot be reached is waited out while the
    token still works."""
    now = stamp(utc_now())
    if session.expires_us is None or now < session.expires_us - RENEW_BEFORE_US:
        return session
    expired = now >= session.expires_us
    provider = at_provider.provider if at_provider else None
    if provider is None or not session.renewable:
        return None if expired else session
    refresh_token = await sessions.claim_renewal(session, RENEWAL_LEASE_SECONDS)
    if refresh_token is None:  # another request is renewing it
        return await _renewed_elsewhere(sessions, session) if expired else session
    try:
        return await _renew(provider, sessions, authenticator, session, refresh_token)
    except SignInFailed as failed:
        if failed.key == "unreachable" and not expired:
            await sessions.release(session)
            log.warning("console session of token %s not renewed yet: %s", session.principal.token_id, failed.detail)
            return session
        await sessions.close(session)
        log.info("console session of token %s signed out, not renewed: %s", session.principal.token_id, failed.detail)
        return None


async def _renew(
    provider: ClinicProvider,
    sessions: ConsoleSessions,
    authenticator: Authenticator,
    session: ConsoleSession,
    refresh_token: str,
) -> ConsoleSession:
    try:
        tokens = await provider.refresh(refresh_token)
    except ProviderError as error:
        raise SignInFailed("refused" if error.refused else "unreachable", error.words) from None
    principal = await _console_principal(authenticator, tokens.access_token)
    if principal.subject != session.principal.subject:
        raise SignInFailed("refused", "the renewed access token names another person")
    log.info("console session of token %s renewed: token %s", session.principal.token_id, principal.token_id)
    return await sessions.renewed(session, tokens.access_token, principal, tokens.refresh_token or refresh_token,
                                  expires_us(tokens))  # fmt: skip


async def _renewed_elsewhere(sessions: ConsoleSessions, session: ConsoleSession) -> ConsoleSession | None:
    """The access token has expired and another request is renewing it: what that request made of it."""
    for _ in range(int(RENEWAL_LEASE_SECONDS / 0.25)):
        await asyncio.sleep(0.25)
        stored = await sessions.current(session)
        if stored is None or stored.expires_us != session.expires_us:
            return stored
    return None
