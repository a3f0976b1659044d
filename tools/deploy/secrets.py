"""Writes the ./secrets folder a new `docker compose` deployment reads (docker-compose.yml, `secrets:`): random tokens
and keys that agree with each other, each file mode 0600, never overwriting a file that is there.

    python3 -m tools.deploy.secrets [--dir secrets]

Run it from the repository (next to docker-compose.yml); it needs nothing but Python. It writes

  api_tokens                   who may call the APIs, one "token:role" a line: a token for each staff role (UR
                               coordinators' utilization_review among them) and integration, and the two service
                               tokens below with their roles at intake
  notifications_intake_token   the token notifications presents at intake (in api_tokens as "...:notifications")
  care_plan_intake_token       the token care plan presents at intake (in api_tokens as "...:care_plan")
  webhook_secret               the key safety-alert webhooks are signed with (give it to the on-call system)
  contact_hash_key             the key numbers that replied STOP are kept under; never change it once used
  mongodb_root_password        MongoDB's administrator (compose creates it on the first start; restores use it)
  mongodb_<service>_url        each service's MONGODB_URL_FILE: its own MongoDB user, limited to its database
                               (deploy/mongodb/init-users.js creates the users from these files)
  mongodb_backup_url           the nightly backup's MongoDB user (role backup: reads every database)
  kafka_<principal>_password   each Kafka principal's SCRAM password (kafka-init creates the users and their ACLs,
                               deploy/kafka/principals.sh); kafka_integration_password is for the clinic's EHR
  backup_key                   the key the nightly backups are encrypted with: keep a copy OFF this host

and prints the staff tokens to hand out. The secrets a provider issues (smtp_password, sms_provider_token) are not
written: compose asks for them only in the override that turns those channels on (see docker-compose.yml). Run it
again after removing a file to make that one anew; the tokens it finds are checked against api_tokens.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

API_TOKENS = "api_tokens"
STAFF_ROLES = ("clinician", "intake_staff", "admin", "integration", "utilization_review")
"""The roles that get a token in a new api_tokens (integration: another clinic system, e.g. the EHR)."""
SERVICE_TOKENS = {"notifications": "notifications_intake_token", "care_plan": "care_plan_intake_token"}
"""The role intake gives a service's token → the file that service reads it from (INTAKE_TOKEN_FILE)."""
KEYS = ("webhook_secret", "contact_hash_key")
"""Keys the clinic itself makes: random is what they should be."""
MONGODB_USERS = {
    "intake": "stepwise_intake",
    "care_plan": "stepwise_care_plan",
    "notifications": "stepwise_notifications",
    "authorizations": "stepwise_authorizations",
    "caseload": "stepwise_caseload",
}
"""A MongoDB user per service (the name its Kafka principal has) → the one database it may read and write."""
KAFKA_PRINCIPALS = ("intake", "care_plan", "notifications", "authorizations", "caseload", "integration")
"""Kafka's principals (tools/deploy/kafka_acls.py derives what each may do; tests/test_compose.py keeps the two
lists equal)."""
MONGODB_HOST = "mongodb:27017"


def mongodb_url(user: str, password: str, database: str) -> str:
    """A user's MONGODB_URL on compose's MongoDB; it logs in where the user was created (its database, or admin)."""
    return f"mongodb://{user}:{password}@{MONGODB_HOST}/{database}?authSource={database}&directConnection=true"


def generated_names() -> tuple[str, ...]:
    """Every file the generator writes besides api_tokens and the service tokens."""
    return (
        *KEYS,
        "mongodb_root_password",
        *(f"mongodb_{user}_url" for user in MONGODB_USERS),
        "mongodb_backup_url",
        *(f"kafka_{principal}_password" for principal in KAFKA_PRINCIPALS),
        "backup_key",
    )


def _new_value(name: str) -> str:
    if name == "mongodb_backup_url":
        return mongodb_url("backup", new_secret(), "admin")
    if name.startswith("mongodb_") and name.endswith("_url"):
        user = name.removeprefix("mongodb_").removesuffix("_url")
        return mongodb_url(user, new_secret(), MONGODB_USERS[user])
    return new_secret()


PROVIDER_ISSUED = ("smtp_password", "sms_provider_token", "console_oidc_client_secret")
"""Secrets a provider issues: never made up here."""
CONTAINER_USER = (10001, 10001)
"""The uid and gid the services run as in their image (Dockerfile, USER). Compose mounts a secret file as it is on
the host, so on Linux the file must be theirs to read."""


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def token_roles(text: str) -> dict[str, str]:
    """``token:role`` entries separated by commas or new lines → {token: role} (as the services read API_TOKENS)."""
    entries = (entry.strip() for entry in text.replace("\n", ",").split(","))
    return {token: role for token, _, role in (entry.rpartition(":") for entry in entries if entry) if token}


@dataclass
class Written:
    """What a run did: files written and kept, the new staff tokens, and what does not agree."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    staff_tokens: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _write(path: Path, content: str, owner: tuple[int, int] | None) -> None:
    # O_EXCL: never overwrite, not even a file that appeared a moment ago; 0600 from the start.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(content + "\n")
    if owner is not None:
        os.chown(path, *owner)


def _read(path: Path, run: Written) -> str | None:
    """An existing secret file's value (trailing newline stripped), None if there is none. One that cannot be read,
    or is empty (the services refuse it), is a problem."""
    if not path.exists():
        return None
    run.kept.append(path)
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        run.problems.append(f"cannot read {path} ({getattr(error, 'strerror', None) or type(error).__name__})")
        return ""
    if not value.strip():
        run.problems.append(f"{path} is empty, and the services refuse an empty secret: remove it and run again")
    return value


def write_secrets(directory: Path, owner: tuple[int, int] | None = None) -> Written:
    """Writes whatever of the deployment's secret files is missing in ``directory``, giving them to ``owner`` (uid,
    gid). If a file there cannot be used (unreadable, empty), nothing is written."""
    run = Written()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    api_tokens_path = directory / API_TOKENS
    existing = {
        name: _read(directory / name, run) for name in (API_TOKENS, *SERVICE_TOKENS.values(), *generated_names())
    }
    if run.problems:
        return run
    roles = token_roles(existing[API_TOKENS] or "")
    service_tokens: dict[str, str] = {}
    for role, name in SERVICE_TOKENS.items():
        token = existing[name]
        if token is None:
            # A new file for a kept api_tokens takes the token api_tokens gives the role, so the two agree.
            token = next((t for t, r in roles.items() if r == role), None) or new_secret()
            _write(directory / name, token, owner)
            run.written.append(directory / name)
        service_tokens[role] = token
    if existing[API_TOKENS] is None:
        run.staff_tokens = {role: new_secret() for role in STAFF_ROLES}
        entries = [*run.staff_tokens.items(), *service_tokens.items()]
        _write(api_tokens_path, "\n".join(f"{token}:{role}" for role, token in entries), owner)
        run.written.append(api_tokens_path)
    else:
        for role, token in service_tokens.items():
            if roles.get(token) != role:
                run.problems.append(
                    f"{api_tokens_path} does not give the token in {directory / SERVICE_TOKENS[role]} the role {role}:"
                    f" add a line '<that token>:{role}' to it"
                )
    for name in generated_names():
        if existing[name] is None:
            _write(directory / name, _new_value(name), owner)
            run.written.append(directory / name)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.deploy.secrets", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--dir", type=Path, default=Path("secrets"), help="the folder to write (default: secrets)")
    args = parser.parse_args(argv)
    as_root = getattr(os, "geteuid", lambda: -1)() == 0
    run = write_secrets(args.dir, owner=CONTAINER_USER if as_root else None)
    for path in run.written:
        print(f"wrote {path}")
    for path in run.kept:
        print(f"kept  {path} (it was there)")
    if run.staff_tokens:
        print(f"\nStaff tokens to hand out (they are in {args.dir / API_TOKENS}; nothing else prints them):")
        for role, token in run.staff_tokens.items():
            print(f"  {role:<13} {token}")
    print(
        f"\nNot written, as a provider issues them: {', '.join(PROVIDER_ISSUED)}. Put them in {args.dir}/ when the"
        " mail relay, the SMS provider or the console's client at the OpenID Connect provider is set up, and turn"
        " them on as the top of docker-compose.yml shows."
    )
    uid, gid = CONTAINER_USER
    if run.written and as_root:
        print(f"The files written belong to uid {uid}, the user the services run as in their containers.")
    elif run.written:
        print(
            f"The services run as uid {uid} in their containers and compose mounts these files as they are: on Linux,"
            f" `sudo chown {uid}:{gid} {args.dir}/*` before `docker compose up` (or run this as root)."
        )
    for problem in run.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if run.problems else 0


if __name__ == "__main__":
    sys.exit(main())
