"""`make run` gives its own services working credentials, whatever the developer set, prints only tokens that
work, gives routes to staff, and fails loudly (non-zero, naming the port or the service) when it cannot run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.common.settings import parse_api_tokens
from services.notifications.domain.messages import MESSAGE_EVENTS
from services.notifications.domain.policy import DEFAULT_POLICY_FILE as NOTIFICATIONS_POLICY_FILE
from services.notifications.domain.policy import load_policy
from services.notifications.domain.safety import StaffRoutes
from services.notifications.settings import NotificationsSettings
from tools.dev.devstack import ROOT, ServiceProcess
from tools.dev.run import (
    DEV_CARE_TEAM_EMAIL,
    DEV_ON_CALL_PHONE,
    DEV_UR_TEAM_EMAIL,
    NotRunning,
    console_lines,
    credentials,
    dev_tokens,
    ports_taken,
    staff_routes,
    token_lines,
    ur_route,
    watch,
)
from tools.dev.servers import free_port

TOKENS = dev_tokens()


def test_without_api_tokens_every_role_gets_a_dev_token() -> None:
    made = credentials({}, TOKENS)
    roles = parse_api_tokens(made["API_TOKENS"])
    assert set(roles.values()) == set(TOKENS) and roles[made["INTAKE_TOKEN"]] == "notifications"
    assert roles[made["CARE_PLAN_INTAKE_TOKEN"]] == "care_plan"


def test_your_api_tokens_without_a_notifications_token_get_ours() -> None:
    made = credentials({"API_TOKENS": "mine:clinician"}, TOKENS)
    roles = parse_api_tokens(made["API_TOKENS"])
    assert roles["mine"] == "clinician" and roles[made["INTAKE_TOKEN"]] == "notifications"


def test_your_notifications_token_is_used_for_the_lookups() -> None:
    made = credentials({"API_TOKENS": "mine:clinician,svc:notifications,plans:care_plan"}, TOKENS)
    assert made == {"API_TOKENS": "mine:clinician,svc:notifications,plans:care_plan", "INTAKE_TOKEN": "svc",
                    "CARE_PLAN_INTAKE_TOKEN": "plans"}  # fmt: skip


def test_an_intake_token_that_is_not_a_notifications_token_is_replaced_by_a_working_one() -> None:
    made = credentials({"API_TOKENS": "mine:clinician", "INTAKE_TOKEN": "mine"}, TOKENS)
    assert parse_api_tokens(made["API_TOKENS"])[made["INTAKE_TOKEN"]] == "notifications"


# Loud when it cannot run: a port taken, a service that exits; only tokens that work are printed.


class OtherStack:
    """Another stack on some ports: it answers every request, readiness included, with 200."""

    def __init__(self, count: int) -> None:
        class Answer(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: object) -> None:
                pass

        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Answer) for _ in range(count)]
        self.ports = [server.server_address[1] for server in self.servers]

    def __enter__(self) -> OtherStack:
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def test_ports_taken_by_another_stack_stop_make_run_naming_them() -> None:
    """It once printed "Stepwise is running" with the other stack's URLs, while its own services had died."""
    with OtherStack(3) as other:
        env = {**os.environ, **dict(zip(("INTAKE_PORT", "CARE_PLAN_PORT", "NOTIFICATIONS_PORT"), map(str, other.ports),
                                         strict=True)),
               # configured backends and sinks: nothing is started for them, whatever make run does
               "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "MONGODB_URL": "mongodb://127.0.0.1:9/?directConnection=true",
               "SMTP_HOST": "127.0.0.1", "SMS_PROVIDER_URL": "http://127.0.0.1:9/sms"}  # fmt: skip
        env.pop("BIND_HOST", None)
        try:
            ran = subprocess.run([sys.executable, "-m", "tools.dev.run"], env=env, cwd=ROOT, capture_output=True,
                                 text=True, timeout=60, check=False)  # fmt: skip
        except subprocess.TimeoutExpired as still_running:
            raise AssertionError(f"make run ran on other stack's ports: {still_running.stdout!r}") from None
    assert ran.returncode != 0
    assert "Stepwise is running" not in ran.stdout
    for variable, port in zip(("INTAKE_PORT", "CARE_PLAN_PORT", "NOTIFICATIONS_PORT"), other.ports, strict=True):
        assert f"{variable}={port} is taken" in ran.stderr


def test_a_free_port_is_not_taken() -> None:
    assert ports_taken({"intake": free_port()}, "127.0.0.1") == []


def exited_service(tmp_path: Path, code: int) -> ServiceProcess:
    service = ServiceProcess("care_plan", free_port(), {}, tmp_path / "care_plan.log")
    service.log_path.write_text("INFO started\nERROR [Errno 98] address already in use\n", encoding="utf-8")
    service.process = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    service.process.wait()
    return service


def test_a_service_that_exits_stops_make_run_naming_it_and_its_port(tmp_path: Path) -> None:
    running = ServiceProcess("intake", free_port(), {}, tmp_path / "intake.log")
    running.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    died = exited_service(tmp_path, 3)
    try:
        with pytest.raises(NotRunning) as caught:
            watch([running, died], threading.Event(), every=0.01)
    finally:
        running.kill()
    message = str(caught.value)
    assert f"care_plan (port {died.port}) exited with code 3" in message
    assert "address already in use" in message and str(died.log_path) in message


def test_a_service_that_stopped_with_a_ctrl_c_is_no_failure(tmp_path: Path) -> None:
    """Ctrl-C reaches make run and its services at once: a service that exits first has stopped with us."""
    stop = threading.Event()
    stopped = exited_service(tmp_path, 0)
    threading.Timer(0.2, stop.set).start()  # make run hears of the Ctrl-C a moment after the service
    watch([stopped], stop, every=0.01, stopping_grace=5.0)  # returns: no NotRunning
    with pytest.raises(NotRunning):  # and without a Ctrl-C, the same exit is a failure
        watch([stopped], threading.Event(), every=0.01, stopping_grace=0.05)


def test_make_run_stops_watching_when_asked(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    watch([], stop)


DEV_TOKEN = re.compile(r"dev-[a-z_]+-[\w-]{16}")


@pytest.mark.parametrize("yours", [None, "mine:clinician", "mine:clinician,ours:admin,svc:notifications"])
def test_only_tokens_that_work_are_printed(yours: str | None) -> None:
    made = credentials({"API_TOKENS": yours} if yours else {}, TOKENS)
    roles = parse_api_tokens(made["API_TOKENS"])
    lines = token_lines(made["API_TOKENS"], TOKENS)
    printed = [token for line in lines for token in DEV_TOKEN.findall(line)]
    for token in printed:
        assert token in roles, f"make run printed {token}, which API_TOKENS does not hold"
        assert any(f"{roles[token]}" in line and token in line for line in lines)
    if yours:
        assert printed == [] and any("API_TOKENS" in line for line in lines)
    else:
        people = ("clinician", "intake_staff", "admin", "utilization_review", "sms_provider")
        assert set(printed) == {TOKENS[role] for role in people}


def test_make_run_gives_the_care_team_and_the_on_call_clinician_a_dev_route() -> None:
    assert staff_routes({}) == {"CARE_TEAM_EMAIL": DEV_CARE_TEAM_EMAIL, "ON_CALL_PHONE": DEV_ON_CALL_PHONE}
    assert staff_routes({"SMTP_HOST": "mail.clinic.test", "SMS_PROVIDER_URL": "https://sms.test"}) == staff_routes({})
    assert staff_routes({"CARE_TEAM_WEBHOOK_URL": "http://hook"})["CARE_TEAM_EMAIL"] == DEV_CARE_TEAM_EMAIL
    assert staff_routes({"CARE_TEAM_EMAIL": "mine@clinic.test", "ON_CALL_WEBHOOK_URL": "http://page"}) == {
        "CARE_TEAM_EMAIL": "mine@clinic.test"
    }
    assert staff_routes({"ON_CALL_PHONE": "+12025550123"}) == {"CARE_TEAM_EMAIL": DEV_CARE_TEAM_EMAIL}
    dev_routes: dict[str, Any] = {name.lower(): value for name, value in staff_routes({}).items()}
    settings = NotificationsSettings(_env_file=None, sms_provider_url="http://sms", contact_hash_key="k",
                                     **dev_routes)  # fmt: skip
    routes = StaffRoutes(settings.care_team_email, settings.care_team_webhook_url, settings.on_call_phone,
                         settings.on_call_webhook_url, sms=True)  # make run always has an SMS provider  # fmt: skip
    assert routes.problems() == {}  # notifications is ready under make run


def test_make_run_gives_the_ur_desk_a_dev_mailbox_and_notifications_is_ready() -> None:
    assert ur_route({}) == {"UR_TEAM_EMAIL": DEV_UR_TEAM_EMAIL}
    assert ur_route({"UR_TEAM_EMAIL": "ur@clinic.test"}) == {"UR_TEAM_EMAIL": "ur@clinic.test"}
    settings = NotificationsSettings(_env_file=None, care_team_email=DEV_CARE_TEAM_EMAIL,
                                     on_call_webhook_url="http://page", webhook_secret="s",
                                     ur_team_email=ur_route({})["UR_TEAM_EMAIL"])  # fmt: skip
    policy = load_policy(NOTIFICATIONS_POLICY_FILE, frozenset(MESSAGE_EVENTS))
    routes = StaffRoutes(settings.care_team_email, None, on_call_webhook_url=settings.on_call_webhook_url,
                         ur_team_email=settings.ur_team_email, ur_purposes=policy.ur_purposes())  # fmt: skip
    assert routes.problems() == {}


def test_make_run_says_where_the_console_is_and_which_token_signs_in() -> None:
    made = credentials({}, TOKENS)
    [line] = console_lines("http://127.0.0.1:8005", made["API_TOKENS"], TOKENS)
    assert "http://127.0.0.1:8005/console" in line and "dev clinician token" in line
    mine = credentials({"API_TOKENS": "mine:clinician"}, TOKENS)["API_TOKENS"]
    [yours] = console_lines("http://127.0.0.1:8005", mine, TOKENS)
    assert "token of yours" in yours
