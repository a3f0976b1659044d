"""Questionnaire links and the patient's page in intake in-process (issue 24)."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import Any

import httpx

from services.intake.store import EPISODES, IntakeStore
from tests.service.conftest import TIER_CLOCK, queued
from tests.service.intake.helpers import CLINICIAN, MEASURES, NOTIFICATIONS, PATIENT, STAFF, assess, new_episode
from tests.service.memory_mongo import MemoryDatabase

PHQ9_16 = [2] * 8 + [0]


async def link(http: httpx.AsyncClient, episode_id: str, instruments: list[str]) -> dict[str, Any]:
    made = await http.post(f"/v1/episodes/{episode_id}/questionnaire-links", json={"instruments": instruments},
                           headers=NOTIFICATIONS)  # fmt: skip
    assert made.status_code == 201, made.text
    return made.json()  # type: ignore[no-any-return]


def _path(url: str) -> str:
    return "/q/" + url.rsplit("/q/", 1)[1]


async def _open(http: httpx.AsyncClient, url: str) -> tuple[httpx.Response, str]:
    page = await http.get(_path(url))
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None
    return page, found.group(1)


def _answers(instrument: str, values: list[int]) -> dict[str, str]:
    return {f"{instrument}.{n}": str(value) for n, value in enumerate(values, start=1)}


async def test_only_notifications_make_links_for_named_instruments(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http)
    path = f"/v1/episodes/{episode_id}/questionnaire-links"
    assert (await http.post(path, json={"instruments": ["phq9"]}, headers=STAFF)).status_code == 403
    empty = await http.post(path, json={}, headers=NOTIFICATIONS)
    assert empty.status_code == 422 and empty.json()["detail"][0]["loc"] == ["body", "instruments"]
    audit = await http.post(path, json={"instruments": ["audit"]}, headers=NOTIFICATIONS)
    assert audit.status_code == 422
    made = await link(http, episode_id, ["phq9", "gad7"])
    assert made["url"].startswith("http://localhost:8001/q/") and len(made["url"]) > 60
    missing = await http.post("/v1/episodes/nobody/questionnaire-links", json={"instruments": ["phq9"]},
                              headers=NOTIFICATIONS)  # fmt: skip
    assert missing.status_code == 404


async def test_the_page_shows_only_the_questions_and_keeps_the_link_to_itself(
    http: httpx.AsyncClient, store: IntakeStore
) -> None:
    _, episode_id = await new_episode(http)
    made = await link(http, episode_id, ["gad7"])
    page, _ = await _open(http, made["url"])
    assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
    assert "GAD-7" in page.text and "PHQ-9" not in page.text and "<script" not in page.text
    assert PATIENT["name"] not in page.text and "adult" not in page.text and "IOP" not in page.text
    assert page.text.count('<label><input type="radio" name="gad7.') == 7 * 4
    token = made["url"].rsplit("/", 1)[1]
    assert await store.links.find_one({"_id": token}) is None and token not in str(await store.links.find().to_list())


async def test_answers_through_the_link_are_a_measure_and_the_link_is_spent(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    await assess(http, episode_id, {"phq9": PHQ9_16})
    made = await link(http, episode_id, ["phq9"])
    _, csrf = await _open(http, made["url"])
    answered = await http.post(_path(made["url"]), data={"csrf": csrf, **_answers("phq9", [1] * 8 + [0])})
    assert answered.status_code == 200 and "Thank you" in answered.text and "988" not in answered.text
    [*_, (topic, data)] = await queued(database[EPISODES])
    assert (topic, data["source"], data["instruments"][0]["classification"]) == (
        "iop.measure.recorded", "measure", "reliable_improvement")  # fmt: skip
    again = await http.post(_path(made["url"]), data={"csrf": csrf, **_answers("phq9", [0] * 9)})
    assert again.status_code == 404 and "cannot be used" in again.text
    assert (await http.get(_path(made["url"]))).status_code == 404
    series = (await http.get(f"/v1/episodes/{episode_id}/measures", headers=CLINICIAN)).json()["series"]
    assert [point["score"] for point in series[0]["points"]] == [16, 8]


async def test_a_positive_suicide_item_shows_crisis_resources_at_once_and_raises_the_alert(
    http: httpx.AsyncClient, database: MemoryDatabase
) -> None:
    _, episode_id = await new_episode(http)
    made = await link(http, episode_id, ["phq9"])
    _, csrf = await _open(http, made["url"])
    incomplete = await http.post(_path(made["url"]), data={"csrf": csrf, "phq9.9": "2"})
    assert incomplete.status_code == 422 and "988" in incomplete.text and "phq9-1" in incomplete.text
    answered = await http.post(_path(made["url"]), data={"csrf": csrf, **_answers("phq9", [0] * 8 + [2])})
    assert answered.status_code == 200 and MEASURES.crisis_resources.split(".")[0] in answered.text
    topics = [topic for topic, _ in await queued(database[EPISODES])]
    assert topics == ["iop.safety.alert_raised", "iop.measure.recorded"]


async def test_a_post_without_the_pages_csrf_cookie_is_refused(http: httpx.AsyncClient) -> None:
    _, episode_id = await new_episode(http)
    made = await link(http, episode_id, ["gad7"])
    _, csrf = await _open(http, made["url"])
    http.cookies.clear()
    forged = await http.post(_path(made["url"]), data={"csrf": csrf, **_answers("gad7", [0] * 7)})
    assert forged.status_code == 403
    _, fresh = await _open(http, made["url"])
    assert (await http.post(_path(made["url"]), data={"csrf": "x", **_answers("gad7", [0] * 7)})).status_code == 403
    ok = await http.post(_path(made["url"]), data={"csrf": fresh, **_answers("gad7", [0] * 7)})
    assert ok.status_code == 200


async def test_page_requests_are_limited_per_client(http: httpx.AsyncClient) -> None:
    answers = [(await http.get("/q/guessed-token")).status_code for _ in range(21)]
    assert answers == [404] * 20 + [429]


async def test_a_link_carries_256_random_bits(http: httpx.AsyncClient) -> None:
    """32 random bytes, base64url without padding: 43 characters (secrets.token_urlsafe's default, said outright)."""
    _, episode_id = await new_episode(http)
    tokens = {(await link(http, episode_id, ["phq9"]))["url"].rsplit("/q/", 1)[1] for _ in range(3)}
    assert len(tokens) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]{43}", token) for token in tokens)


async def test_a_measure_answered_through_a_link_says_so_and_the_link_when_it_was_spent(
    http: httpx.AsyncClient, store: IntakeStore
) -> None:
    _, episode_id = await new_episode(http)
    made = await link(http, episode_id, ["phq9"])
    _, csrf = await _open(http, made["url"])
    answered = await http.post(_path(made["url"]), data={"csrf": csrf, **_answers("phq9", [1] * 9)})
    assert answered.status_code == 200
    stored = await store.get(episode_id)
    assert stored is not None and [m.channel for m in stored.episode.measures] == ["questionnaire_link"]
    [spent] = await store.links.find().to_list()
    used_at = spent["used_at"].replace(tzinfo=UTC)
    assert spent["used"] is True and TIER_CLOCK <= used_at < TIER_CLOCK + timedelta(minutes=1)
