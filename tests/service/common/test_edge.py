"""The HTTP edge every service shares (services/common/edge.py, errors.py, api_docs.py), on an app built as the
services build theirs: body limit before the body is read, the token before the body, refused tokens counted
and limited, the 422 shape without the value, the headers, and the API docs from bundled, pinned assets."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, Field, RootModel, StrictInt

from services.common.auth import Principal, Role, require_roles
from services.common.edge import EdgeConfig, MiB, parse_networks
from services.common.errors import invalid_input
from services.common.schemas import OnlyWith, RequestBody
from services.common.service import http_app
from tests.service.conftest import TOKENS, as_role
from tests.service.conftest import api as client_of
from tests.service.memory_mongo import MemoryDatabase

CLINICIAN = as_role(Role.CLINICIAN)
WRONG = {"Authorization": "Bearer not-a-token-at-all"}


class Note(BaseModel):
    text: str = Field(max_length=20)


router = APIRouter(prefix="/v1")
Anyone = Depends(require_roles(*Role))


@router.post("/notes", summary="Takes a body")
async def post_note(body: Note, _: Principal = Anyone) -> Note:
    return body


@router.get("/notes/{note_id}", summary="A record")
async def get_note(note_id: str, _: Principal = Anyone) -> Note:
    if note_id != "1":
        raise HTTPException(404, "no such note")
    return Note(text="one")


@router.post("/notes/{note_id}/words", summary="A 422 raised with words only")
async def words_only(note_id: str, _: Principal = Anyone) -> None:
    raise HTTPException(422, "the note is closed")


@router.post("/notes/{note_id}/rule", summary="A 422 raised by hand on one field")
async def hand_raised(note_id: str, _: Principal = Anyone) -> None:
    raise invalid_input(["path", "note_id"], "the note is closed", "note_closed")


@router.delete("/notes/{note_id}", summary="Another method on the path of a record")
async def delete_note(note_id: str, _: Principal = Anyone) -> None:
    return None


@router.get("/notes", summary="Filters: one value each, or a tag repeated")
async def find_notes(
    _: Principal = Anyone,
    author: str | None = None,
    tag: Annotated[list[str], Query()] = [],  # noqa: B006
) -> list[str]:
    return [author or "", *tag]


class Tick(RequestBody):
    kind: Literal["tick"]
    weight: StrictInt | None = Field(default=None, ge=0)
    why: Annotated[None, OnlyWith("why_only_crossed", "why goes only with a cross")] = None


class Cross(RequestBody):
    kind: Literal["cross"]
    why: str


class Mark(RootModel[Annotated[Tick | Cross, Field(discriminator="kind")]]):
    """A body of two shapes by ``kind``."""


@router.post("/notes/{note_id}/marks", summary="A body of two shapes")
async def mark_note(note_id: str, mark: Mark, _: Principal = Anyone) -> str:
    return mark.root.kind


@router.get("/boom", summary="A server error")
async def boom(_: Principal = Anyone) -> None:
    raise RuntimeError("a bug")


@dataclass
class Sent:
    """A request body sent in chunks, counting what the app asked for."""

    total: int
    chunk: int = 64 * 1024
    read: int = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self.total
        while left > 0:
            part = min(self.chunk, left)
            self.read += part
            left -= part
            yield b"x" * part


@pytest.fixture
async def http(database: MemoryDatabase) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_of("edge", edge_app(), database, {}) as edge:
        yield edge


def edge_app(**config: object) -> FastAPI:
    return http_app("Stepwise edge", "", [router], consumes=False, edge=EdgeConfig(**config))  # type: ignore[arg-type]


async def client(
    database: MemoryDatabase, peer: str = "127.0.0.1", app: FastAPI | None = None, **config: object
) -> httpx.AsyncClient:
    """A client connecting from ``peer`` to ``app``, or to a new app with the edge ``config``."""
    if app is None:
        app = edge_app(**config)
        await client_of("edge", app, database, {})  # the state a service's start-up sets
    transport = httpx.ASGITransport(app=app, client=(peer, 40000), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# 1. The body limit, and the token before the body


async def test_a_body_declared_over_the_limit_is_413_and_never_read(http: httpx.AsyncClient) -> None:
    body = Sent(100 * MiB)
    headers = CLINICIAN | {"Content-Length": str(body.total), "Content-Type": "application/json"}
    refused = await http.post("/v1/notes", content=body, headers=headers)
    assert refused.status_code == 413 and "bytes" in refused.json()["detail"]
    assert body.read == 0


async def test_a_streamed_body_is_413_once_past_the_limit(http: httpx.AsyncClient) -> None:
    body = Sent(8 * MiB)
    refused = await http.post("/v1/notes", content=body, headers=CLINICIAN | {"Content-Type": "application/json"})
    assert refused.status_code == 413
    assert body.read <= MiB + body.chunk  # what was read up to the limit, never the rest


async def test_a_body_within_the_limit_is_taken(database: MemoryDatabase) -> None:
    async with await client(database, max_body_bytes=2048) as small:
        taken = await small.post("/v1/notes", json={"text": "hello"}, headers=CLINICIAN)
        refused = await small.post("/v1/notes", content=b"{" + b" " * 4096 + b"}", headers=CLINICIAN)
    assert (taken.status_code, refused.status_code) == (200, 413)


@pytest.mark.parametrize("headers", [{}, WRONG], ids=["no token", "wrong token"])
async def test_the_token_is_checked_before_the_body_is_read(http: httpx.AsyncClient, headers: dict[str, str]) -> None:
    body = Sent(8 * MiB)
    refused = await http.post("/v1/notes", content=body, headers=headers | {"Content-Type": "application/json"})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert body.read == 0
    not_json = await http.post("/v1/notes", content=b"\xff{not json", headers=headers)
    assert not_json.status_code == 401  # not a 422: the body is nobody's business before the token


# 2. A 422 names the field and the rule, never the value


async def test_a_422_raised_by_hand_has_the_documented_shape(http: httpx.AsyncClient) -> None:
    for path, loc, rule in (("words", ["body"], "value_error"), ("rule", ["path", "note_id"], "note_closed")):
        refused = await http.post(f"/v1/notes/7/{path}", headers=CLINICIAN)
        assert refused.status_code == 422
        assert refused.json() == {"detail": [{"loc": loc, "msg": "the note is closed", "type": rule}]}


async def test_a_422_never_carries_the_value(http: httpx.AsyncClient) -> None:
    secret = "Alexandra Confidential Example"
    refused = await http.post("/v1/notes", json={"text": secret, "mood": secret}, headers=CLINICIAN)
    assert refused.status_code == 422
    assert [(entry["loc"], entry["type"]) for entry in refused.json()["detail"]] == [
        (["body", "text"], "string_too_long")
    ]
    assert secret not in refused.text and set(refused.json()["detail"][0]) == {"loc", "msg", "type"}


def test_the_openapi_document_shows_the_422_shape_and_the_edge_answers() -> None:
    spec = edge_app().openapi()
    error = spec["components"]["schemas"]["ValidationError"]
    assert set(error["properties"]) == {"loc", "msg", "type"} and error["additionalProperties"] is False
    post = spec["paths"]["/v1/notes"]["post"]["responses"]
    assert {"413", "422", "429"} <= set(post) and "never the value" in post["422"]["description"]
    assert "429" in spec["paths"]["/v1/boom"]["get"]["responses"]


# 4. Headers on every answer; the API docs


async def test_every_answer_says_no_store_and_nosniff(http: httpx.AsyncClient, database: MemoryDatabase) -> None:
    async with await client(database, auth_failures_per_minute=1) as limited:
        answers = [
            await http.get("/v1/notes/1", headers=CLINICIAN),  # 200
            await http.get("/v1/notes/1"),  # 401
            await http.get("/v1/notes/2", headers=CLINICIAN),  # 404
            await http.post("/v1/notes", json={}, headers=CLINICIAN),  # 422
            await http.post("/v1/notes", content=Sent(2 * MiB), headers=CLINICIAN),  # 413
            await limited.get("/v1/boom", headers=CLINICIAN),  # 500
            await limited.get("/v1/notes/1", headers=WRONG),  # 401
            await limited.get("/v1/notes/1", headers=WRONG),  # 429
            await http.get("/health/live"),
        ]
    assert [answer.status_code for answer in answers] == [200, 401, 404, 422, 413, 500, 401, 429, 200]
    for answer in answers:
        assert answer.headers["Cache-Control"] == "no-store", answer.status_code
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.status_code


async def test_the_api_docs_load_only_bundled_assets_pinned_by_their_hash(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert "//" not in page.text.replace("<!doctype", "")  # no other origin (no CDN)
    assets = re.findall(r'(?:src|href)="([^"]+)" integrity="([^"]+)"', page.text)
    assert len(assets) == 3  # Swagger UI's script and style, and its start
    for url, integrity in assets:
        asset = await http.get(f"/{url}")
        assert asset.status_code == 200 and asset.headers["X-Content-Type-Options"] == "nosniff"
        assert integrity == "sha384-" + base64.b64encode(hashlib.sha384(asset.content).digest()).decode()
    assert (await http.get("/openapi.json")).status_code == 200
    assert (await http.get("/docs/assets/other.js")).status_code == 404


async def test_api_docs_off_serves_no_docs_and_no_document(database: MemoryDatabase) -> None:
    async with await client(database, api_docs=False) as http:
        answers = {path: (await http.get(path)).status_code for path in ("/docs", "/redoc", "/openapi.json")}
    assert answers == {"/docs": 404, "/redoc": 404, "/openapi.json": 404}


# 6. Refused tokens: recorded, and limited per client


async def test_refused_tokens_are_logged_without_the_token_and_then_limited(
    database: MemoryDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="services.common.edge")
    app = edge_app()
    await client_of("edge", app, database, {})
    async with await client(database, "192.0.2.10", app) as attacker, await client(database, app=app) as other:
        refused = [(await attacker.get("/v1/notes/1", headers=WRONG)).status_code for _ in range(30)]
        limited = await attacker.get("/v1/notes/1", headers=WRONG)
        valid_too = await attacker.get("/v1/notes/1", headers=CLINICIAN)
        elsewhere = await other.get("/v1/notes/1", headers=CLINICIAN)
    assert refused == [401] * 30
    assert limited.status_code == 429 and 0 < int(limited.headers["Retry-After"]) <= 60
    assert valid_too.status_code == 429  # no token of theirs is checked meanwhile
    assert elsewhere.status_code == 200
    lines = [record.getMessage() for record in caplog.records if "refused" in record.getMessage()]
    assert len(lines) == 30 and "not-a-token-at-all" not in caplog.text
    fingerprint = hashlib.sha256(b"not-a-token-at-all").hexdigest()[:12]
    assert fingerprint in lines[-1] and "192.0.2.10" in lines[-1] and "30 refused from there" in lines[-1]


async def test_the_client_is_taken_from_x_forwarded_for_only_behind_a_trusted_proxy(database: MemoryDatabase) -> None:
    def forwarded(address: str) -> dict[str, str]:
        return WRONG | {"X-Forwarded-For": f"198.51.100.99, {address}"}  # the left one is the client's own say

    async with await client(
        database, peer="10.0.0.2", auth_failures_per_minute=2, trusted_proxies=parse_networks("10.0.0.0/24")
    ) as proxied:
        first = [(await proxied.get("/v1/notes/1", headers=forwarded("203.0.113.5"))).status_code for _ in range(3)]
        second = (await proxied.get("/v1/notes/1", headers=forwarded("203.0.113.6"))).status_code
    assert (first, second) == ([401, 401, 429], 401)

    async with await client(database, peer="10.0.0.2", auth_failures_per_minute=2) as direct:
        spoofed = [(await direct.get("/v1/notes/1", headers=forwarded(f"203.0.113.{n}"))).status_code
                   for n in range(3)]  # fmt: skip
    assert spoofed == [401, 401, 429]  # no trusted proxy: X-Forwarded-For counts for nothing


async def test_every_role_still_gets_its_token_checked_once(http: httpx.AsyncClient) -> None:
    for role in Role:
        answered = await http.get("/v1/notes/1", headers={"Authorization": f"Bearer {TOKENS[role]}"})
        assert answered.status_code == 200


# 5. What the documents state: a method the path lacks, undeclared or repeated query parameters, bodies of shapes


async def test_a_method_the_path_lacks_is_405_listing_every_method_it_takes(http: httpx.AsyncClient) -> None:
    for method in ("PUT", "PATCH", "OPTIONS"):
        refused = await http.request(method, "/v1/notes/1", headers=CLINICIAN)
        assert refused.status_code == 405, method
        assert set(refused.headers["allow"].split(", ")) == {"GET", "DELETE"}, method
    refused = await http.put("/v1/notes", headers=CLINICIAN)
    assert refused.status_code == 405 and set(refused.headers["allow"].split(", ")) == {"GET", "POST"}


async def test_a_query_parameter_not_declared_or_repeated_where_one_is_taken_is_a_422(http: httpx.AsyncClient) -> None:
    taken = await http.get("/v1/notes", params=[("author", "lee"), ("tag", "a"), ("tag", "b")], headers=CLINICIAN)
    assert taken.status_code == 200 and taken.json() == ["lee", "a", "b"]
    misspelt = await http.get("/v1/notes", params={"auther": "Alexandra Confidential"}, headers=CLINICIAN)
    assert misspelt.status_code == 422
    assert misspelt.json()["detail"] == [{"loc": ["query", "auther"], "msg": "Extra inputs are not permitted",
                                          "type": "extra_forbidden"}]  # fmt: skip
    assert "Alexandra" not in misspelt.text
    twice = await http.get("/v1/notes", params=[("author", "lee"), ("author", "sam")], headers=CLINICIAN)
    assert twice.status_code == 422 and [(e["loc"], e["type"]) for e in twice.json()["detail"]] == [
        (["query", "author"], "given_twice")
    ]
    elsewhere = await http.get("/v1/notes/1", params={"verbose": "1"}, headers=CLINICIAN)
    assert elsewhere.status_code == 422 and elsewhere.json()["detail"][0]["loc"] == ["query", "verbose"]


async def test_a_body_of_shapes_is_answered_as_one_model_naming_the_field_as_sent(http: httpx.AsyncClient) -> None:
    path = "/v1/notes/1/marks"
    body: dict[str, Any]
    for body in ({"kind": "tick"}, {"kind": "tick", "weight": 2, "why": None}, {"kind": "cross", "why": "late"}):
        assert (await http.post(path, json=body, headers=CLINICIAN)).status_code == 200, body
    cases: list[tuple[dict[str, Any], list[str], str, str | None]] = [
        ({"kind": "tick", "why": "Alexandra"}, ["body", "why"], "why_only_crossed", "why goes only with a cross"),
        ({"kind": "cross"}, ["body", "why"], "missing", "why is required when kind is cross"),
        ({"kind": "tick", "weight": "2"}, ["body", "weight"], "int_type", None),
        ({"kind": "tick", "weight": 2.0}, ["body", "weight"], "int_type", None),
        ({"kind": "tick", "colour": "vermilion"}, ["body", "colour"], "extra_forbidden", None),
        ({"weight": 1}, ["body", "kind"], "missing", "Field required"),
        ({"kind": "Alexandra"}, ["body", "kind"], "literal_error", "Input should be 'tick' or 'cross'"),
    ]
    for body, loc, rule, words in cases:
        refused = await http.post(path, json=body, headers=CLINICIAN)
        assert refused.status_code == 422, body
        [entry] = refused.json()["detail"]
        assert (entry["loc"], entry["type"]) == (loc, rule), body
        assert words is None or entry["msg"] == words, body
        assert "Alexandra" not in refused.text and "vermilion" not in refused.text


def test_the_document_shows_a_body_of_shapes_and_what_it_takes_only_in_one() -> None:
    spec = edge_app().openapi()
    mark = spec["components"]["schemas"]["Mark"]
    assert mark["discriminator"]["propertyName"] == "kind" and len(mark["oneOf"]) == 2
    why = spec["components"]["schemas"]["Tick"]["properties"]["why"]
    assert why["type"] == "null" and "why_only_crossed" in why["description"]
