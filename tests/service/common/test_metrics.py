"""/metrics on every service's HTTP side: requests by route template (never the path), METRICS_TOKEN, and the access
log's line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi import APIRouter
from prometheus_client import REGISTRY

from services.common.logs import JsonLines
from services.common.service import http_app
from tests.service.conftest import api
from tests.service.memory_mongo import MemoryDatabase

router = APIRouter(prefix="/v1")


@router.get("/episodes/{episode_id}/things")
async def things(episode_id: str) -> dict[str, str]:
    return {"episode_id": episode_id}


def requests(route: str, status: str) -> float:
    labels = {"method": "GET", "route": route, "status": status}
    return REGISTRY.get_sample_value("stepwise_http_requests_total", labels) or 0.0


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """The access log's lines as LOG_FORMAT=json writes them."""
    stream, access = io.StringIO(), logging.getLogger("stepwise.access")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)  # setLevel, not .level: the logger caches what it found enabled
    yield stream
    access.removeHandler(handler)
    access.setLevel(level)


async def test_a_request_counts_under_its_route_template_and_is_logged_so(access_lines: io.StringIO) -> None:
    app = http_app("Stepwise test", "", [router], consumes=False)
    before = requests("/v1/episodes/{episode_id}/things", "401")
    async with await api("test", app, MemoryDatabase(), {}) as http:
        assert (await http.get("/v1/episodes/ep-123/things?name=Jane")).status_code == 401
        scraped = (await http.get("/metrics")).text
    assert requests("/v1/episodes/{episode_id}/things", "401") == before + 1
    assert "ep-123" not in scraped and "Jane" not in scraped
    [line] = access_lines.getvalue().splitlines()
    logged = json.loads(line)
    assert logged["message"].startswith("GET /v1/episodes/{episode_id}/things 401 ")
    assert logged["episode_id"] == "ep-123" and "Jane" not in line


async def test_metrics_token_is_asked_when_set() -> None:
    app = http_app("Stepwise test", "", [router], consumes=False, metrics_token="scrape-secret")
    async with await api("test", app, MemoryDatabase(), {}) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer wrong"})).status_code == 401
        answer = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert answer.status_code == 200 and "stepwise_http_requests_total" in answer.text
