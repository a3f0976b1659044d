"""Store round trips per episode, by service, command and collection: what `make bench` prints beside throughput.

Each Stepwise service counts every command it sends to MongoDB in ``stepwise_store_commands{command, collection}``
on its ``/metrics`` (``services/common/store_commands.py``); each stage of the raw baseline counts the same way
with the same listener rules and keeps its totals in a file (``bench.raw_pipeline.CommandCounts``). A run reads
them before and after and divides by the episodes: every command the run caused, the background passes (outbox
relays, the dispatcher, reminders) included, as a clinic pays for them. A scrape's own probes (the outbox backlog,
the set-aside count) are taken out: a second scrape right after the first measures them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

import httpx

Counts = dict[str, float]
"""``"service command collection"`` -> commands so far."""

CountsOf = Callable[[], Awaitable[Counts]]

LINE = re.compile(r"^stepwise_store_commands_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def parse_metrics(service: str, text: str) -> Counts:
    """The store command counters of one ``/metrics`` page."""
    counts: Counts = {}
    for line in text.splitlines():
        found = LINE.match(line)
        if found:
            labels = dict(LABEL.findall(found["labels"]))
            key = f"{service} {labels.get('command', '')} {labels.get('collection', '')}"
            counts[key] = counts.get(key, 0.0) + float(found["value"])
    return counts


def scraped(instances: Mapping[str, Iterable[Callable[[], str]]]) -> CountsOf:
    """Counts summed over every instance of each service, from their ``/metrics`` (``url()`` -> base URL)."""

    async def counts() -> Counts:
        total: Counts = {}
        async with httpx.AsyncClient(timeout=10) as client:
            for service, urls in instances.items():
                for url in urls:
                    page = (await client.get(f"{url()}/metrics")).text
                    for key, value in parse_metrics(service, page).items():
                        total[key] = total.get(key, 0.0) + value
        return total

    return counts


def from_files(files: Mapping[str, Path]) -> CountsOf:
    """Counts the raw stages keep in their files (``--counts``), by stage."""

    async def counts() -> Counts:
        await asyncio.sleep(0.3)  # a stage rewrites its file at most every 0.1 s
        total: Counts = {}
        for service, path in files.items():
            kept = json.loads(path.read_text()) if path.exists() else {}
            for name, value in kept.items():
                total[f"{service} {name}"] = float(value)
        return total

    return counts


def difference(after: Counts, before: Counts) -> Counts:
    return {key: value - before.get(key, 0.0) for key, value in after.items() if value - before.get(key, 0.0) > 0}


async def counted(counts_of: CountsOf, before: Counts) -> Counts:
    """The commands since ``before``, without those of the reading itself (a scrape's probes): a second reading
    right after the first measures them."""
    first = await counts_of()
    second = await counts_of()
    probes = difference(second, first)
    return {key: value - probes.get(key, 0.0) for key, value in difference(first, before).items()
            if value - probes.get(key, 0.0) > 0}  # fmt: skip


def per_episode(counts: Counts, episodes: int) -> Counts:
    return {key: value / episodes for key, value in sorted(counts.items())}


def by_service(rows: Counts) -> dict[str, float]:
    totals: dict[str, float] = {}
    for key, value in rows.items():
        service = key.split(" ", 1)[0]
        totals[service] = totals.get(service, 0.0) + value
    return totals


def table(stepwise: Counts, raw: Counts, services: Iterable[str]) -> list[str]:
    """The round trips per episode of both pipelines, by service, command and collection, with totals."""
    lines = ["\nstore round trips per episode (PyMongo command monitoring)", f"  {'service':16}{'command':16}"
             f"{'collection':28}{'Stepwise':>10}{'raw':>8}"]  # fmt: skip
    for service in services:
        keys = sorted({key for key in (*stepwise, *raw) if key.split(" ", 1)[0] == service})
        for key in keys:
            _, command, collection = [*key.split(" "), "", ""][:3]
            lines.append(f"  {service:16}{command:16}{collection:28}{stepwise.get(key, 0.0):>10.2f}"
                         f"{raw.get(key, 0.0):>8.2f}")  # fmt: skip
        if keys:
            lines.append(f"  {service + ', all':60}{by_service(stepwise).get(service, 0.0):>10.2f}"
                         f"{by_service(raw).get(service, 0.0):>8.2f}")  # fmt: skip
    lines.append(f"  {'total':60}{sum(stepwise.values()):>10.2f}{sum(raw.values()):>8.2f}")
    return lines
