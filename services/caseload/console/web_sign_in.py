"""The clinic's provider's answer to a sign-in (``GET /console/callback``, the redirect URI registered there):
HTTP only; what it means is ``sign_in.py``'s.

The provider adds parameters of its own (``session_state``, ``iss``, ``scope`` …): none is refused. The code in the
URL is used once and goes nowhere else: the answer is a redirect to Today, or to the sign-in page with a word saying
why not."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.common.edge import AuthFailures, client_address
from services.common.schemas import TAKES_ANY_QUERY

from . import sign_in
from .pages import HEADERS
from .web import Sessions, signed_in

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/callback", openapi_extra={TAKES_ANY_QUERY: True}, response_class=HTMLResponse)
async def callback(request: Request, sessions: Sessions) -> Response:
    state = request.app.state
    failures: AuthFailures = state.auth_failures
    client = client_address(request.scope, state.trusted_proxies)
    pending = await sessions.take(request.cookies.get(sign_in.PENDING_COOKIE))
    try:
        if failures.retry_after(client):
            raise sign_in.SignInFailed("busy", "too many refused sign-ins from this client")
        tokens, principal = await sign_in.answered(request.query_params, pending, state.console_sign_in,
                                                   state.authenticator)  # fmt: skip
    except sign_in.SignInFailed as failed:
        if failed.key in sign_in.COUNTED:
            failures.refused(client)
        log.info("console sign-in not completed (%s): %s", failed.key, failed.detail)
        response: Response = RedirectResponse(f"/console/sign-in?failed={failed.key}", status_code=303, headers=HEADERS)
    else:
        cookie = await sessions.open(tokens.access_token, principal, refresh_token=tokens.refresh_token,
                                     expires_us=sign_in.expires_us(tokens))  # fmt: skip
        log.info("console session opened at the provider for token %s", principal.token_id)
        response = signed_in(request, cookie, principal.role)
    response.delete_cookie(sign_in.PENDING_COOKIE, path=sign_in.CALLBACK)
    return response
