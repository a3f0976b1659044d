"""A static render of the Grafana dashboard (deploy/observability/grafana-dashboard.json) from a real run, where no
Grafana server can run: starts the stack (as `make run` does, on free ports), drives patients through intake (one of
them with a high-risk answer: an open safety alert; some of their mail refused by the relay for now: a failing
channel), scrapes every service's /metrics each second, and draws the dashboard's panels as an SVG, each from the
same series its PromQL reads (rates over 10 s windows, p95 from the histograms' buckets).

    .venv/bin/python -m tools.dev.dashboard_render --seconds 60 --out docs/images/dashboard.svg
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from html import escape
from pathlib import Path

import httpx

from tools.dev.devstack import ServiceProcess, backends
from tools.dev.servers import free_port
from tools.dev.sms_sink import SmsSink
from tools.dev.smtp_sink import Mailbox, SmtpSink

ROOT = Path(__file__).resolve().parent.parent.parent
DASHBOARD = ROOT / "deploy" / "observability" / "grafana-dashboard.json"
SAMPLE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")
Labels = frozenset[tuple[str, str]]
Scrape = dict[tuple[str, Labels], float]
WINDOW = 10
CSSRS_HIGH = {"q1": True, "q2": True, "q3": True, "q4": True, "q5": False, "q6": False}
DIMENSIONS = {"withdrawal": 1, "biomedical": 0, "emotional": 2, "readiness": 2, "relapse": 2, "environment": 1}


def parse(text: str, job: str) -> Scrape:
    samples: Scrape = {}
    for line in text.splitlines():
        if (found := SAMPLE.match(line)) is not None:
            labels = frozenset([*re.findall(r'(\w+)="([^"]*)"', found[2] or ""), ("job", job)])
            samples[found[1], labels] = float(found[3])
    return samples


@contextlib.contextmanager
def stack(folder: Path) -> Iterator[tuple[dict[str, str], dict[str, str], Mailbox]]:
    """The three services on free ports: their URLs, the tokens by role, the mailbox."""
    tokens = {role: f"dash-{role}-{secrets.token_urlsafe(8)}" for role in
              ("clinician", "intake_staff", "admin", "notifications", "care_plan")}  # fmt: skip
    ports = {"intake": free_port(), "care_plan": free_port(), "notifications": free_port()}
    with contextlib.ExitStack() as running:
        started = running.enter_context(backends())
        mail = running.enter_context(SmtpSink(free_port()))
        sms_token = secrets.token_urlsafe(12)
        texts = running.enter_context(SmsSink(free_port(), token=sms_token))
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": started.kafka_bootstrap_servers, "MONGODB_URL": started.mongodb_url,
            "API_TOKENS": ",".join(f"{token}:{role}" for role, token in tokens.items()),
            "INTAKE_URL": f"http://127.0.0.1:{ports['intake']}", "INTAKE_TOKEN": tokens["notifications"],
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(mail.port), "CARE_TEAM_EMAIL": "care-team@clinic.test",
            "ON_CALL_PHONE": "+12025550188", "SMS_PROVIDER_URL": texts.url, "SMS_PROVIDER_TOKEN": sms_token,
            "CONTACT_HASH_KEY": secrets.token_urlsafe(16), "QUIET_HOURS_START": "00:00", "QUIET_HOURS_END": "00:00",
            "OUTBOX_POLL_SECONDS": "0.5", "DISPATCH_POLL_SECONDS": "0.5", "LOG_FORMAT": "json",
        }  # fmt: skip
        own = {"care_plan": {"INTAKE_TOKEN": tokens["care_plan"]}}
        for name, port in ports.items():
            service = ServiceProcess(name, port, env | own.get(name, {}), folder / f"{name}.log")
            running.callback(service.stop)
            service.start()
        yield {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}, tokens, mail.mailbox


async def drive(urls: dict[str, str], tokens: dict[str, str], mailbox: Mailbox, until: float) -> None:
    """Patients admitted and assessed, one of them at high risk; every third one's mail refused for now (450)."""
    staff = {"Authorization": f"Bearer {tokens['intake_staff']}"}
    async with httpx.AsyncClient(base_url=urls["intake"], headers=staff, timeout=10) as intake:
        n = 0
        while time.monotonic() < until:
            n += 1
            phone = f"+1555{n:07d}"
            if n % 3 == 0:
                mailbox.greylisted.add(f"d{n}@example.org")
            patient = await intake.post("/v1/patients", json={"name": f"Dash Patient {n}", "date_of_birth":
                                        "1980-01-01", "email": f"d{n}@example.org", "phone": phone})  # fmt: skip
            patient.raise_for_status()
            episode = await intake.post(
                f"/v1/patients/{patient.json()['patient_id']}/episodes", json={"program": "adult"}
            )
            episode.raise_for_status()
            instruments: dict[str, object] = {"phq9": [1, 2, 1, 2, 1, 1, 2, 1, 0]}
            if n == 5:
                instruments["cssrs"] = CSSRS_HIGH
            await intake.post(f"/v1/episodes/{episode.json()['episode_id']}/assessments",
                              json={"dimensions": DIMENSIONS, "instruments": instruments})  # fmt: skip
            await intake.get("/v1/patients/no-such-patient")  # a 404 among the 201s
            await asyncio.sleep(0.5)


async def scrape_all(urls: dict[str, str], until: float) -> list[tuple[float, Scrape]]:
    scrapes: list[tuple[float, Scrape]] = []
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < until:
            merged: Scrape = {}
            for name, url in urls.items():
                with contextlib.suppress(httpx.HTTPError):
                    merged |= parse((await client.get(f"{url}/metrics")).text, f"stepwise-{name.replace('_', '-')}")
            scrapes.append((time.monotonic(), merged))
            await asyncio.sleep(1)
    return scrapes


Series = dict[str, list[float]]


def by(scrape: Scrape, name: str, keys: tuple[str, ...], where: Callable[[dict[str, str]], bool] = lambda _: True
       ) -> dict[str, float]:  # fmt: skip
    summed: dict[str, float] = defaultdict(float)
    for (metric, labels), value in scrape.items():
        named = dict(labels)
        if metric == name and where(named):
            summed[" ".join(named.get(key, "") for key in keys)] += value
    return summed


def gauge(scrapes: list[tuple[float, Scrape]], name: str, keys: tuple[str, ...], **kw: object) -> Series:
    out: Series = defaultdict(list)
    for _, scrape in scrapes:
        for key, value in by(scrape, name, keys, **kw).items():  # type: ignore[arg-type]
            out[key].append(value)
    return out


def rate(scrapes: list[tuple[float, Scrape]], name: str, keys: tuple[str, ...], **kw: object) -> Series:
    out: Series = defaultdict(list)
    for (t0, before), (t1, after) in zip(scrapes, scrapes[WINDOW:], strict=False):
        old = by(before, name, keys, **kw)  # type: ignore[arg-type]
        for key, value in by(after, name, keys, **kw).items():  # type: ignore[arg-type]
            out[key].append((value - old.get(key, 0.0)) / (t1 - t0))
    return out


def p95(scrapes: list[tuple[float, Scrape]], name: str, keys: tuple[str, ...], **kw: object) -> Series:
    out: Series = defaultdict(list)
    for (_, before), (_, after) in zip(scrapes, scrapes[WINDOW:], strict=False):
        buckets: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for le_key, value in by(after, name + "_bucket", (*keys, "le"), **kw).items():  # type: ignore[arg-type]
            old = by(before, name + "_bucket", (*keys, "le"), **kw).get(le_key, 0.0)  # type: ignore[arg-type]
            key, _, le = le_key.rpartition(" ")
            buckets[key].append((float(le), value - old))
        for key, counts in buckets.items():
            counts.sort()
            total = counts[-1][1] if counts else 0
            out[key].append(next((le for le, c in counts if total and c >= 0.95 * total), 0.0))
    return out


def panels(scrapes: list[tuple[float, Scrape]]) -> list[tuple[str, Series, str]]:
    """Each panel of the dashboard (its title), with the series its queries read."""
    not_up = lambda labels: labels.get("state") != "up"  # noqa: E731
    failed = lambda labels: labels.get("outcome") == "failed"  # noqa: E731
    sent = lambda labels: labels.get("outcome") == "sent"  # noqa: E731
    return [
        ("Safety alerts not acknowledged", gauge(scrapes, "stepwise_safety_alerts_open", ()), "stat"),
        ("Events set aside, waiting for review", gauge(scrapes, "stepwise_set_aside_events", ()), "stat"),
        ("Oldest unpublished event (s)", gauge(scrapes, "stepwise_outbox_oldest_seconds", ()), "stat"),
        ("Dependencies not up", gauge(scrapes, "stepwise_dependency_state", (), where=not_up), "stat"),
        ("HTTP requests/s by route and status",
         rate(scrapes, "stepwise_http_requests_total", ("job", "route", "status")), ""),
        ("HTTP latency p95 by route (s)", p95(scrapes, "stepwise_http_request_duration_seconds", ("job", "route")), ""),
        ("Events applied/s by topic", rate(scrapes, "stepwise_events_applied_total", ("job", "topic")), ""),
        ("Events set aside/s by topic", rate(scrapes, "stepwise_events_set_aside_total", ("job", "topic", "kind")), ""),
        ("Consumer lag by topic", gauge(scrapes, "stepwise_consumer_lag", ("group", "topic")), ""),
        ("Outbox backlog (pending)", gauge(scrapes, "stepwise_outbox_pending", ("job", "outbox")), ""),
        ("Notifications by status and channel", gauge(scrapes, "stepwise_notifications", ("status", "channel")), ""),
        ("Send latency p95 (s) and failures/s by channel",
         {**p95(scrapes, "stepwise_notification_send_seconds", ("channel",), where=sent),
          **{f"{k} failed/s": v for k, v in rate(scrapes, "stepwise_notification_send_seconds_count", ("channel",),
                                                  where=failed).items()}}, ""),
    ]  # fmt: skip


COLOURS = ["#7eb26d", "#eab839", "#6ed0e0", "#ef843c", "#e24d42", "#1f78c1", "#ba43a9", "#705da0"]


def svg(drawn: list[tuple[str, Series, str]], seconds: int) -> str:
    width, columns = 1500, 4
    parts, y = [], 60
    row: list[tuple[str, Series, str]] = []
    rows: list[list[tuple[str, Series, str]]] = []
    for panel in drawn:
        if panel[2] == "stat":
            row.append(panel)
            if len(row) == columns:
                rows.append(row)
                row = []
        else:
            if row:
                rows.append(row)
                row = []
            rows.append([panel])
    merged: list[list[tuple[str, Series, str]]] = []
    for each in rows:  # two graphs a row
        if each[0][2] != "stat" and merged and merged[-1][0][2] != "stat" and len(merged[-1]) == 1:
            merged[-1].append(each[0])
        else:
            merged.append(each)
    for each in merged:
        height = 110 if each[0][2] == "stat" else 300
        w = (width - 20) / len(each)
        for i, (title, series, kind) in enumerate(each):
            x = 10 + i * w
            parts.append(_panel(x, y, w - 10, height, title, series, kind))
        y += height + 10
    header = (
        f'<text x="10" y="35" font-size="22" fill="#d8d9da">Stepwise — static render of grafana-dashboard.json'
        f" from {seconds} s of real /metrics scrapes (intake, care plan, notifications)</text>"
    )
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" font-family="sans-serif">'
            f'<rect width="100%" height="100%" fill="#111217"/>{header}{"".join(parts)}</svg>\n')  # fmt: skip


def _panel(x: float, y: float, w: float, h: float, title: str, series: Series, kind: str) -> str:
    out = [f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="4" fill="#181b1f" stroke="#2c3235"/>',
           f'<text x="{x + 10}" y="{y + 22}" font-size="14" fill="#ccccdc">{escape(title)}</text>']  # fmt: skip
    if kind == "stat":
        value = sum(values[-1] for values in series.values() if values)
        colour = "#e24d42" if value and "Oldest" not in title else "#73bf69"
        out.append(f'<text x="{x + 20}" y="{y + 85}" font-size="44" fill="{colour}">{value:g}</text>')
        return "".join(out)
    shown = sorted(series.items(), key=lambda item: -max(item[1] or [0]))[:8]
    top = max([max(values) for _, values in shown if values] + [1e-9])
    plot_x, plot_y, plot_w, plot_h = x + 50, y + 35, w * 0.55, h - 60
    out.append(f'<text x="{x + 5}" y="{plot_y + 10}" font-size="11" fill="#8e8e8e">{top:.3g}</text>')
    out.append(f'<text x="{x + 5}" y="{plot_y + plot_h}" font-size="11" fill="#8e8e8e">0</text>')
    out.append(f'<line x1="{plot_x}" y1="{plot_y + plot_h}" x2="{plot_x + plot_w}" y2="{plot_y + plot_h}" '
               f'stroke="#2c3235"/>')  # fmt: skip
    for i, (key, values) in enumerate(shown):
        if not values:
            continue
        step = plot_w / max(len(values) - 1, 1)
        points = " ".join(
            f"{plot_x + j * step:.1f},{plot_y + plot_h - v / top * plot_h:.1f}" for j, v in enumerate(values)
        )
        colour = COLOURS[i % len(COLOURS)]
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        legend_y = plot_y + 12 + i * 16
        out.append(f'<rect x="{plot_x + plot_w + 12}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        label = escape(key.strip() or "total")[:58]
        out.append(f'<text x="{plot_x + plot_w + 26}" y="{legend_y}" font-size="11" fill="#ccccdc">{label}</text>')
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard.svg")
    arguments = parser.parse_args()
    assert json.loads(DASHBOARD.read_text())["panels"], "the dashboard has panels"
    with tempfile.TemporaryDirectory() as folder, stack(Path(folder)) as (urls, tokens, mailbox):
        until = time.monotonic() + arguments.seconds

        async def run() -> list[tuple[float, Scrape]]:
            scraping = asyncio.create_task(scrape_all(urls, until + WINDOW))
            await drive(urls, tokens, mailbox, until)
            return await scraping

        scrapes = asyncio.run(run())
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(svg(panels(scrapes), arguments.seconds))
    print(f"wrote {arguments.out} from {len(scrapes)} scrapes")


if __name__ == "__main__":
    main()
