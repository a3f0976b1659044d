"""The docs hold together: every relative link and ``#anchor`` in README.md, docs/*.md and shared/README.md
resolves (the file exists; the anchor is a heading of it, slugged as GitHub does), every file in docs/ is reached
from the README, and the README stays short (at most 200 lines: the rest lives in docs/)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
CHECKED = [README, *DOCS, ROOT / "shared" / "README.md"]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:[ \t]*<?([^\s>]+)>?", re.MULTILINE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `#` in a shell block is no heading, a link in one no link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without markup, lower case, punctuation other than `-` and `_`
    dropped, each space a `-` (github-slugger's rule)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets `-1`, `-2`, … as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def link_targets(text: str) -> list[str]:
    """Every link's target (inline, image or reference definition), outside code; a link's text or a code span
    may run over a line break, never over a paragraph's end."""
    targets = []
    for paragraph in "\n".join(prose_lines(text)).split("\n\n"):
        prose = CODE_SPAN.sub("", paragraph)
        targets += INLINE_LINK.findall(prose)
        targets += REFERENCE.findall(prose)
    return targets


def broken_links(source: Path, text: str) -> list[str]:
    """What in `text` (the content of `source`) points nowhere: a relative file that does not exist (or lies
    outside the repository), or an anchor no heading of its file has."""
    broken = []
    for target in link_targets(text):
        if SCHEME.match(target):
            continue  # http(s), mailto: not ours to check
        path_part, _, anchor = target.partition("#")
        if not path_part:
            if anchor not in anchors(text):
                broken.append(f"{target}: no heading #{anchor} here")
            continue
        file = (source.parent / path_part).resolve()
        if not file.is_relative_to(ROOT) or not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    return broken


@pytest.mark.parametrize("doc", CHECKED, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc: Path) -> None:
    assert broken_links(doc, doc.read_text()) == []


def test_every_doc_is_reached_from_the_readme() -> None:
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for target in link_targets(README.read_text())
        if not SCHEME.match(target) and target.partition("#")[0]
    }
    unreached = [str(doc.relative_to(ROOT)) for doc in DOCS if doc.resolve() not in linked]
    assert unreached == [], "link these from README.md"


def test_the_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail to docs/ and link it"


# The checker itself: GitHub's anchors, and links it must refuse.


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Deployment for clinics: `docker compose up`", "deployment-for-clinics-docker-compose-up"),
        ("Staff sign-in: OpenID Connect", "staff-sign-in-openid-connect"),
        ("Configuration (environment variables)", "configuration-environment-variables"),
        ("The clinic's week: program groups", "the-clinics-week-program-groups"),
        ("`Idempotency-Key`", "idempotency-key"),
        (
            "One consumer per lane, episodes concurrently, each episode in order",
            "one-consumer-per-lane-episodes-concurrently-each-episode-in-order",
        ),
        ("Retry budgets are time, not counts", "retry-budgets-are-time-not-counts"),
        ("`care_plan` and **its** [groups](x.md)", "care_plan-and-its-groups"),
        ("`make test`: first runs and wall time", "make-test-first-runs-and-wall-time"),
    ],
)
def test_anchors_are_slugged_as_github_does(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug


def test_a_repeated_heading_gets_a_numbered_anchor_and_code_is_no_heading() -> None:
    text = "# Notes\n\n## Notes\n\n```sh\n# 1. not a heading\n```\n"
    assert anchors(text) == {"notes", "notes-1"}


def test_broken_links_are_found() -> None:
    source = ROOT / "docs" / "probe.md"  # never written: only its folder matters
    text = (
        "[ok](../README.md#the-two-commands) [ok](#here) [web](https://example.org/x#y)\n"
        "# Here\n"
        "[gone](missing.md) [no heading](../README.md#no-such-heading) [self](#nowhere)\n"
        "`[in code](nowhere.md)` and `a span\nover two lines [in code](nowhere.md)`\n"
        "[a link over\ntwo lines](#two)\n"
        "\n"
        "[ref]: gone-too.md\n"
        "[outside](../../etc/passwd)\n"
    )
    assert broken_links(source, text) == [
        "missing.md: no such file",
        "../README.md#no-such-heading: no heading #no-such-heading in README.md",
        "#nowhere: no heading #nowhere here",
        "#two: no heading #two here",
        "../../etc/passwd: no such file",
        "gone-too.md: no such file",
    ]
