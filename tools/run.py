"""`make run`: backends (configured, or started here: Apache Kafka and a MongoDB server; see tools/devstack.py),
the three services.

Prints the URLs and dev tokens; Ctrl-C stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path

from services.common.settings import parse_api_tokens
from tools.devstack import ServiceProcess, backends
from tools.servers import free_port
from tools.sms_sink import SmsSink
from tools.smtp_sink import SmtpSink

PORTS = {
    "intake": ("INTAKE_PORT", 8001),
    "care_plan": ("CARE_PLAN_PORT", 8002),
    "notifications": ("NOTIFICATIONS_PORT", 8003),
}


def dev_tokens() -> dict[str, str]:
    return {
        role: f"dev-{role}-{secrets.token_urlsafe(12)}"
        for role in ("clinician", "intake_staff", "admin", "notifications", "care_plan", "sms_provider")
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


DEV_CARE_TEAM_EMAIL = "care-team@stepwise.localhost"
DEV_ON_CALL_PHONE = "+12025550100"
"""A number of the range set aside for fiction (555-0100 to 0199): the dev SMS sink prints what is texted to it."""


def staff_routes(environ: Mapping[str, str]) -> dict[str, str]:
    """Routes to the care team and the on-call clinician, so a safety alert and its escalation reach someone the
    walkthrough shows: yours if set, else a dev mailbox (also when SMTP_HOST points at your own server) and a dev
    on-call number (texted through the SMS sink, or your SMS_PROVIDER_URL)."""
    routes = {"CARE_TEAM_EMAIL": environ.get("CARE_TEAM_EMAIL") or DEV_CARE_TEAM_EMAIL}
    if not (environ.get("ON_CALL_PHONE") or environ.get("ON_CALL_WEBHOOK_URL")):
        routes["ON_CALL_PHONE"] = DEV_ON_CALL_PHONE
    return routes


def main() -> None:
    tokens = dev_tokens()
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
        }
        ports = {name: int(os.environ.get(var, default)) for name, (var, default) in PORTS.items()}
        env["INTAKE_URL"] = os.environ.get("INTAKE_URL") or f"http://127.0.0.1:{ports['intake']}"
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
            service.start()
        print("\nBackends:")
        for line in started.describe():
            print(f"  {line}")
        print(f"\nStepwise is running (service logs in {logs}):")
        for service in services:
            print(f"  {service.name:<14} {service.url}/docs")
        print(f"\n  dev token (clinician): {tokens['clinician']}")
        print(f"  other dev tokens:      intake_staff={tokens['intake_staff']} admin={tokens['admin']}")
        print(f"  SMS provider callback: sms_provider={tokens['sms_provider']}")
        on_call = env.get("ON_CALL_PHONE") or os.environ.get("ON_CALL_WEBHOOK_URL", "")
        print(f"  safety alerts:         care team {env['CARE_TEAM_EMAIL']}, on call {on_call}")
        print("  mail and texts sent to people are printed below. Ctrl-C stops everything.\n", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
        print("\nstopping…", flush=True)


if __name__ == "__main__":
    main()
