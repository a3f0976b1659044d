"""deploy/observability: the alert rules pass promtool's check and their unit tests (each alert fires on what it is
for, after its `for`), and the rules and the Grafana dashboard name only metrics the services export."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY

import services.common.metrics  # noqa: F401 - registers the services' metrics
from tests import strict_yaml
from tools.dev import promtool

HERE = Path(__file__).resolve().parent.parent / "deploy" / "observability"
NAME = re.compile(r"\bstepwise_[a-z_]+")
SUFFIXES = ("_total", "_bucket", "_count", "_sum")


def exported() -> set[str]:
    return {metric.name for collector in list(REGISTRY._collector_to_names) for metric in collector.collect()}


def family(sample: str) -> str:
    """A sample's metric: ``stepwise_http_requests`` of ``stepwise_http_requests_total``."""
    return next((sample.removesuffix(suffix) for suffix in SUFFIXES if sample.endswith(suffix)), sample)


def named(expressions: list[str]) -> set[str]:
    return {family(sample) for expression in expressions for sample in NAME.findall(expression)}


def test_the_rules_and_the_dashboard_name_only_exported_metrics() -> None:
    rules = yaml.safe_load((HERE / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((HERE / "grafana-dashboard.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert named(expressions) - exported() == set()
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    operations = (HERE.parent.parent / "docs" / "operations.md").read_text()
    assert [alert for alert in sorted(alerts) if alert not in operations] == [], "docs/operations.md explains each"


@pytest.mark.skipif(promtool.missing() is not None, reason=str(promtool.missing()))
def test_promtool_checks_the_rules_and_runs_their_tests() -> None:
    tool = str(promtool.ensure())
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"],
                    ["check", "config", "prometheus.yml"]):  # fmt: skip
        done = subprocess.run([tool, *command], cwd=HERE, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_example_scrape_configuration_has_a_job_for_each_service_at_its_compose_address() -> None:
    """Job ``stepwise-<compose service>`` (the rules and the dashboard group by it) at that service's host and port."""
    compose = strict_yaml.load((HERE.parent.parent / "docker-compose.yml").read_text(encoding="utf-8"))
    apps = {name: service for name, service in compose["services"].items()
            if str(service.get("command", [""])[0]).startswith("services.")}  # fmt: skip
    expected = {
        f"stepwise-{name}": [f"{name}:{service['environment'][name.replace('-', '_').upper() + '_PORT']}"]
        for name, service in apps.items()
    }
    config = strict_yaml.load((HERE / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]] for job in config["scrape_configs"]
    }
    assert len(apps) == 5
    assert jobs == expected
