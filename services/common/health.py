"""Liveness and readiness probes (no auth: they reveal nothing about patients)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response, status

router = APIRouter(prefix="/health", tags=["health"])

Check = Callable[[], Awaitable[bool]]


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/ready", summary="The broker and the store are reachable")
async def ready(request: Request, response: Response) -> dict[str, object]:
    checks: dict[str, Check] = request.app.state.readiness_checks
    results = await asyncio.gather(*(_safely(check) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    if not all(report.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ready" if all(report.values()) else "not_ready", "checks": report}


async def _safely(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=3.0)
    except Exception:
        return False
