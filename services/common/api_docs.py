"""The API docs at ``/docs``: Swagger UI from the service's own files, never a CDN.

Swagger UI (swagger-ui-dist 5.32.6) comes in the ``fastapi-offline`` package, pinned in requirements.lock; each
asset is pinned again here by its SHA-384, checked at start (an asset that differs leaves the docs off, said in
the log) and named in the page's ``integrity`` attributes, so that a browser runs only those bytes. The page
allows scripts and styles from the service alone (``Content-Security-Policy``). ``API_DOCS=off`` serves neither
the docs nor ``/openapi.json`` (compose's default).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import logging
from dataclasses import dataclass
from importlib.resources import files

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import HTMLResponse, Response

from .edge import CACHEABLE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asset:
    media_type: str
    integrity: str
    content: bytes


PINNED = {
    "swagger-ui-bundle.js": (
        "text/javascript",
        "sha384-EYdOaiRwn44zNjrw+Tfs06qYz9BGQVo2f4/pLY5i7VorbjnZNhdplAbTBk8FXHUJ",
    ),
    "swagger-ui.css": ("text/css", "sha384-9Q2fpS+xeS4ffJy6CagnwoUl+4ldAYhOs9pgZuEKxypVModhmZFzeMlvVsAjf7uT"),
}
"""The bundled assets of fastapi-offline 1.7.7 and their hashes (a new version of the package: new hashes)."""

INIT = b"""window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  validatorUrl: null,
});
"""
"""Swagger UI's start, a file of its own: the page has no inline script, so its policy can forbid them."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def integrity(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


@functools.cache
def bundled_assets() -> dict[str, Asset] | None:
    """The pinned assets, or None (logged) when an installed one is missing or is not the pinned bytes."""
    static = files("fastapi_offline") / "static"
    assets = {"swagger-init.js": Asset("text/javascript", integrity(INIT), INIT)}
    for name, (media_type, pinned) in PINNED.items():
        try:
            content = (static / name).read_bytes()
        except OSError:
            log.error("API docs off: Swagger UI's %s is not installed (the fastapi-offline package)", name)
            return None
        if integrity(content) != pinned:
            log.error("API docs off: Swagger UI's %s is not the pinned file (its hash differs)", name)
            return None
        assets[name] = Asset(media_type, pinned, content)
    return assets


def docs_router(title: str) -> APIRouter | None:
    """``/docs`` and its assets (under ``/docs/assets/``); None when the assets are not the pinned ones."""
    assets = bundled_assets()
    if assets is None:
        return None
    router = APIRouter(include_in_schema=False)
    prefix = CACHEABLE.removeprefix("/")  # relative to the page (/docs), so that it works behind any root path

    def tag(name: str) -> str:
        asset, url = assets[name], html.escape(prefix + name)
        if asset.media_type == "text/css":
            return f'<link rel="stylesheet" href="{url}" integrity="{asset.integrity}" crossorigin="anonymous">'
        return f'<script src="{url}" integrity="{asset.integrity}" crossorigin="anonymous"></script>'

    page = (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} API</title>'
        f'{tag("swagger-ui.css")}</head>\n<body><div id="swagger-ui"></div>\n'
        f"{tag('swagger-ui-bundle.js')}\n{tag('swagger-init.js')}\n</body></html>\n"
    )

    @router.get("/docs", response_class=HTMLResponse)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    @router.get(CACHEABLE + "{name}")
    async def docs_asset(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such asset")
        return Response(asset.content, media_type=asset.media_type, headers={"Cache-Control": "public, max-age=86400"})

    return router
