"""Due measures end to end, on a real broker and store: an intake assessment that scored none of the episode's
instruments leaves the admission measure due (care_plan publishes iop.measure.due); notifications asks intake for a
questionnaire link as it sends and texts and emails it; the patient answers on intake's page (a real HTTP form
post), intake publishes iop.measure.recorded and care_plan holds the measure done. The link is in no delivery log,
no notifications document and no log line."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx

from .conftest import (
    HTTP_TIMEOUT,
    IOP_DIMENSIONS,
    Episode,
    Stack,
    care_plan_of,
    events,
    eventually,
    mail_to,
    new_episode,
)

SUBJECT = "A short questionnaire for you"
LINK = re.compile(r"https?://\S+/q/[A-Za-z0-9_\-]+")


class Form(HTMLParser):
    """The page's form: where it posts and its hidden fields (the CSRF token among them)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.hidden: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form":
            self.action = found.get("action")
        if tag == "input" and found.get("type") == "hidden" and found.get("name"):
            self.hidden[str(found["name"])] = found.get("value") or ""


async def admitted_without_a_baseline(stack: Stack) -> Episode:
    """An episode whose intake assessment scored no instrument: its admission measure (PHQ-9, GAD-7) is due now."""
    episode = await new_episode(stack)
    async with stack.http("intake", "intake_staff") as intake:
        response = await intake.post(f"/v1/episodes/{episode.episode_id}/assessments",
                                     json={"dimensions": IOP_DIMENSIONS, "instruments": {}})  # fmt: skip
    assert response.status_code == 201, response.text
    return episode


async def answer(stack: Stack, link: str) -> httpx.Response:
    """Open the link as a phone's browser does (at the stack's intake, whatever host PUBLIC_BASE_URL names) and post
    the form, every item answered 1; a page refused is the answer."""
    url = stack.services["intake"].url + "/q/" + link.rsplit("/q/", 1)[1]
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as browser:
        page = await browser.get(url)
        if page.status_code != 200:
            return page  # a link used or expired: the page refuses it
        assert page.headers["Referrer-Policy"] == "no-referrer" and "no-store" in page.headers["Cache-Control"]
        form = Form()
        form.feed(page.text)
        fields = form.hidden | {f"phq9.{n}": "1" for n in range(1, 10)} | {f"gad7.{n}": "1" for n in range(1, 8)}
        return await browser.post(httpx.URL(url).join(form.action or url), data=fields)


async def measures_due(stack: Stack, episode: Episode) -> list[dict[str, Any]]:
    async with stack.http("care_plan") as care_plan:
        response = await care_plan.get(f"/v1/episodes/{episode.episode_id}/measures-due")
    assert response.status_code == 200, response.text
    return list(response.json()["measures"])


async def test_a_due_measure_is_sent_as_a_link_answered_on_the_phone_and_done(stack: Stack) -> None:
    episode = await admitted_without_a_baseline(stack)
    await eventually(lambda: care_plan_of(stack, episode), "the care plan")
    [due] = await eventually(lambda: events(stack, "iop.measure.due", episode), "iop.measure.due")
    assert due.data.reason == "admission" and due.data.instruments == ["phq9", "gad7"]
    [mail] = await mail_to(stack, episode.email, subject=SUBJECT)
    found = LINK.search(mail.get_content())
    assert found is not None
    url = found.group()
    text = await eventually(lambda: _texted(stack, episode), "the text with a link")
    texted = LINK.search(text)
    assert texted is not None and texted.group() != url  # a link of its own for each message

    answered = await answer(stack, url)
    assert answered.status_code in (200, 303) and answered.request.method == "POST", answered.text
    [recorded] = await eventually(lambda: events(stack, "iop.measure.recorded", episode), "iop.measure.recorded")
    assert recorded.data.source == "measure"
    assert sorted(i.instrument for i in recorded.data.instruments) == ["gad7", "phq9"]

    async def done() -> list[dict[str, Any]] | None:
        measures = await measures_due(stack, episode)
        return measures if measures and measures[0]["status"] == "done" else None

    [measure] = await eventually(done, "the due measure done")
    assert measure["due_id"] == due.data.due_id
    again = await answer(stack, url)
    assert again.status_code >= 400  # the link works once

    await _no_link_kept(stack, episode, url)


async def _texted(stack: Stack, episode: Episode) -> str | None:
    texts = [t.body for t in stack.texts.to(episode.phone) if "/q/" in t.body]
    return texts[0] if texts else None


async def _no_link_kept(stack: Stack, episode: Episode, url: str) -> None:
    token = url.rsplit("/", 1)[1]
    async with stack.http("notifications") as notifications:
        log = await notifications.get("/v1/notifications", params={"episode_id": episode.episode_id, "limit": 500})
    assert log.status_code == 200 and token not in log.text
    assert {entry["purpose"] for entry in log.json()} >= {"measure_due"}
    database = stack.database("notifications")
    for name in await database.list_collection_names():
        documents = [document async for document in database[name].find({})]
        assert token not in str(documents), name
    for service in stack.services.values():
        assert token not in service.log_path.read_text(), service.name
