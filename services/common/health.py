"""Liveness and readiness probes (no auth: they reveal nothing about patients)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response, status

from .dependencies import Dependencies
from .kafka import ServiceBroker

router = APIRouter(prefix="/health", tags=["health"])

Check = Callable[[], Awaitable[bool]]


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get(
    "/ready",
    summary="The broker, the store and every other dependency are reachable and accept our credentials",
    description="503 while any is not: `checks` says which, `problems` why (down, or misconfigured with what to "
    "set). Work waits meanwhile; nothing is lost. `problems` also lists, without failing, each event a handler "
    "keeps failing on for another reason (`topic[partition]`: retrying, with the error's class): its partition "
    "waits behind it.",
    responses={503: {"description": "Something this service depends on is down or misconfigured."}},
)
async def ready(request: Request, response: Response) -> dict[str, object]:
    checks: dict[str, Check] = request.app.state.readiness_checks
    results = await asyncio.gather(*(_safely(check) for check in checks.values()))
    report = dict(zip(checks, results, strict=True))
    dependencies: Dependencies | None = getattr(request.app.state, "dependencies", None)
    problems = dependencies.problems() if dependencies else {}
    report |= {name: False for name in problems}
    if not all(report.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    answer: dict[str, object] = {"status": "ready" if all(report.values()) else "not_ready", "checks": report}
    shown = {name: f"{problem.kind}: {problem.detail}" for name, problem in problems.items()}
    kafka: ServiceBroker | None = getattr(request.app.state, "kafka", None)
    if kafka is not None and kafka.retrying is not None:
        shown |= kafka.retrying.problems()  # listed, but not failing: the rest of the service works
    if shown:
        answer["problems"] = shown
    return answer


async def _safely(check: Check) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=3.0)
    except Exception:
        return False
