"""`make run`: backends (configured, or started here: Apache Kafka and a MongoDB server; see tools/dev/devstack.py),
the five services.

Prints the URLs and the dev tokens that work; Ctrl-C stops everything it started. It fails loudly (a message
naming the port or the service, and a non-zero exit) when a service's port is taken already, or a service
exits, rather than report another stack's services as its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from services.common.settings import parse_api_tokens
from tools.dev.devstack import ServiceProcess, backends
from tools.dev.servers import free_port
from tools.dev.sms_sink import SmsSink
from tools.dev.smtp_sink import SmtpSink

PORTS = {
    "intake": ("INTAKE_PORT", 8001),
    "care_plan": ("CARE_PLAN_PORT", 8002),
    "notifications": ("NOTIFICATIONS_PORT", 8003),
    "authorizations": ("AUTHORIZATIONS_PORT", 8004),
    "caseload": ("CASELOAD_PORT", 8005),
}


def dev_tokens() -> dict[str, str]:
    return {
        role: f"dev-{role}-{secrets.token_urlsafe(12)}"
        for role in (
            "clinician",
            "intake_staff",
            "admin",
            "notifications",
            "care_plan",
            "sms_provider",
            "utilization_review",
        )
    }


INTAKE_TOKEN_OF = {"notifications": "INTAKE_TOKEN", "care_plan": "CARE_PLAN_INTAKE_TOKEN"}
"""The services that call intake, and the variable naming the token each presents there (care_plan's is passed
to it as its INTAKE_TOKEN)."""


def credentials(environ: Mapping[str, str], tokens: dict[str, str]) -> dict[str, str]:
    """API_TOKENS and the tokens notifications and care_plan present at intake: yours if set, and always a working
    one for each (your API_TOKENS gets ours for a service role it has no token of)."""
    own = environ.get("API_TOKENS")
    if not own:
        made = {"API_TOKENS": ",".join(f"{t}:{r}" for r, t in tokens.items())}
        return made | {variable: tokens[role] for role, variable in INTAKE_TOKEN_OF.items()}
    roles = parse_api_tokens(own)
    made = {}
    for role, variable in INTAKE_TOKEN_OF.items():
        token = environ.get(variable) or next((t for t, r in roles.items() if r == role), "")
        if roles.get(token) != role:
            token = tokens[role]
            own = f"{own},{token}:{role}"
        made[variable] = token
    return {"API_TOKENS": own, **made}


TOKENS_SHOWN = ("clinician", "intake_staff", "admin", "utilization_review", "sms_provider")
"""The dev tokens make run prints (the people's roles, and the SMS provider's reply callback)."""


def token_lines(api_tokens: str, tokens: dict[str, str]) -> list[str]:
    """The lines naming the dev tokens that work: those ``api_tokens`` (the services' API_TOKENS) gives their role.
    With your own API_TOKENS, ours for people are not in it: none is printed, and yours are meant."""
    roles = parse_api_tokens(api_tokens)
    works = {role: tokens[role] for role in TOKENS_SHOWN if roles.get(tokens[role]) == role}
    if not works:
        return ["  tokens: yours (API_TOKENS); make run added none for people"]
    lines = [f"  dev token (clinician): {works['clinician']}"] if "clinician" in works else []
    people = ("intake_staff", "admin", "utilization_review")
    others = " ".join(f"{role}={works[role]}" for role in people if role in works)
    lines += [f"  other dev tokens:      {others}"] if others else []
    lines += [f"  SMS provider callback: sms_provider={works['sms_provider']}"] if "sms_provider" in works else []
    return lines


def console_lines(caseload_url: str, api_tokens: str, tokens: dict[str, str]) -> list[str]:
    """Where the staff console is, and which token signs in (the dev clinician's, when API_TOKENS holds it)."""
    works = parse_api_tokens(api_tokens).get(tokens["clinician"]) == "clinician"
    how = "the dev clinician token above signs in" if works else "a clinician or intake_staff token of yours signs in"
    return [f"  staff console:         {caseload_url}/console ({how})"]


class NotRunning(Exception):
    """make run cannot run (a port taken, a service that exited): what it says is printed, and it exits non-zero."""


def ports_taken(ports: Mapping[str, int], host: str) -> list[str]:
    """What stands in the way of the services listening on ``ports`` at ``host``, naming each variable and port."""
    problems = []
    for name, port in ports.items():
        variable = PORTS[name][0]
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: only a listener is in the way
            try:
                probe.bind((host, port))
            except OSError as error:
                problems.append(f"{variable}={port} is taken on {host} ({error.strerror}): stop what listens there, "
                                f"or set {variable} to a free port")  # fmt: skip
    if len(set(ports.values())) < len(ports):
        problems.append(f"two services are given the same port ({', '.join(f'{n}={p}' for n, p in ports.items())})")
    return problems


def _log_tail(service: ServiceProcess, lines: int = 12) -> str:
    with contextlib.suppress(OSError):
        tail = service.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return f"; the end of its log ({service.log_path}):\n" + "\n".join(f"    {line}" for line in tail)
    return f"; its log: {service.log_path}"


def start(service: ServiceProcess) -> None:
    """Start ``service`` and wait until it is ready, or raise NotRunning saying why not."""
    try:
        service.start()
    except (RuntimeError, TimeoutError) as error:
        raise NotRunning(f"{service.name} (port {service.port}) did not start: {error}{_log_tail(service)}") from None


def still_running(services: Sequence[ServiceProcess]) -> None:
    """Raise NotRunning for a service that has exited."""
    for service in services:
        code = service.process.poll() if service.process else None
        if code is not None:
            raise NotRunning(f"{service.name} (port {service.port}) exited with code {code}{_log_tail(service)}")


def watch(
    services: Sequence[ServiceProcess], stop: threading.Event, every: float = 0.5, stopping_grace: float = 2.0
) -> None:
    """Until ``stop`` is set (Ctrl-C, SIGTERM): a service that exits raises NotRunning. Ctrl-C reaches the services
    too (one process group), and one may exit before this process hears of it: a service that ended while ``stop``
    is set within ``stopping_grace`` seconds stopped with us, and is no failure."""
    while True:
        try:
            still_running(services)
        except NotRunning:
            if stop.wait(stopping_grace):
                return
            raise
        if stop.wait(every):
            return


DEV_CARE_TEAM_EMAIL = "care-team@stepwise.localhost"
DEV_ON_CALL_PHONE = "+12025550199"
"""A number of the range set aside for fiction (555-0100 to 0199): the dev SMS sink prints what is texted to it."""


def staff_routes(environ: Mapping[str, str]) -> dict[str, str]:
    """Routes to the care team and the on-call clinician, so a safety alert and its escalation reach someone the
    walkthrough shows: yours if set, else a dev mailbox (also when SMTP_HOST points at your own server) and a dev
    on-call number (texted through the SMS sink, or your SMS_PROVIDER_URL)."""
    routes = {"CARE_TEAM_EMAIL": environ.get("CARE_TEAM_EMAIL") or DEV_CARE_TEAM_EMAIL}
    if not (environ.get("ON_CALL_PHONE") or environ.get("ON_CALL_WEBHOOK_URL")):
        routes["ON_CALL_PHONE"] = DEV_ON_CALL_PHONE
    return routes


DEV_UR_TEAM_EMAIL = "utilization-review@stepwise.localhost"


def ur_route(environ: Mapping[str, str]) -> dict[str, str]:
    """The utilization-review mailbox (reviews due, units low, exhaustion, unauthorized services): yours if set, else
    a dev mailbox whose mail is printed (notifications is not ready without one)."""
    return {"UR_TEAM_EMAIL": environ.get("UR_TEAM_EMAIL") or DEV_UR_TEAM_EMAIL}


def main() -> None:
    tokens = dev_tokens()
    ports = {name: int(os.environ.get(var, default)) for name, (var, default) in PORTS.items()}
    if taken := ports_taken(ports, os.environ.get("BIND_HOST") or "127.0.0.1"):
        raise NotRunning("\n  ".join(["cannot listen where the services should:", *taken]))
    logs = Path(tempfile.mkdtemp(prefix="stepwise-run-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.ExitStack() as stack:
        started = stack.enter_context(backends())
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": started.kafka_bootstrap_servers,
            "MONGODB_URL": started.mongodb_url,
            **credentials(os.environ, tokens),
            # The walkthrough should show its mail at any hour; set both to try quiet hours locally.
            "QUIET_HOURS_START": os.environ.get("QUIET_HOURS_START", "00:00"),
            "QUIET_HOURS_END": os.environ.get("QUIET_HOURS_END", "00:00"),
            **staff_routes(os.environ),
            **ur_route(os.environ),
        }
        for name in ("intake", "care_plan", "notifications"):  # whom caseload asks for names and its console acts at
            variable = f"{name.upper()}_URL"
            env[variable] = os.environ.get(variable) or f"http://127.0.0.1:{ports[name]}"
        if not os.environ.get("SMTP_HOST"):
            sink = stack.enter_context(SmtpSink(free_port(), print_messages=True))
            env |= {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port)}
        if not os.environ.get("SMS_PROVIDER_URL"):
            sms_token = secrets.token_urlsafe(16)
            texts = stack.enter_context(SmsSink(free_port(), token=sms_token, print_messages=True))
            env |= {"SMS_PROVIDER_URL": texts.url, "SMS_PROVIDER_TOKEN": sms_token,
                    "CONTACT_HASH_KEY": secrets.token_urlsafe(24)}  # fmt: skip
        own_env = {"care_plan": {"INTAKE_TOKEN": env["CARE_PLAN_INTAKE_TOKEN"]}}
        services = [ServiceProcess(name, port, env | own_env.get(name, {}), logs / f"{name}.log")
                    for name, port in ports.items()]  # fmt: skip
        for service in services:
            stack.callback(service.stop)
            start(service)
        still_running(services)  # what answered on their ports is theirs: none exited once it answered
        print("\nBackends:")
        for line in started.describe():
            print(f"  {line}")
        print(f"\nStepwise is running (service logs in {logs}):")
        for service in services:
            print(f"  {service.name:<14} {service.url}/docs")
        print()
        for line in token_lines(env["API_TOKENS"], tokens):
            print(line)
        caseload = next(service for service in services if service.name == "caseload")
        for line in console_lines(caseload.url, env["API_TOKENS"], tokens):
            print(line)
        on_call = env.get("ON_CALL_PHONE") or os.environ.get("ON_CALL_WEBHOOK_URL", "")
        print(f"  safety alerts:         care team {env['CARE_TEAM_EMAIL']}, on call {on_call}")
        print(f"  utilization review:    {env['UR_TEAM_EMAIL']}")
        print("  mail and texts sent to people are printed below. Ctrl-C stops everything.\n", flush=True)
        signal.signal(signal.SIGINT, lambda *_: stop.set())  # Ctrl-C: stop watching, then stop everything
        try:
            with contextlib.suppress(KeyboardInterrupt):
                watch(services, stop)
        finally:
            print("\nstopping…", flush=True)


if __name__ == "__main__":
    try:
        main()
    except NotRunning as failure:
        sys.exit(f"\nmake run failed: {failure}")
