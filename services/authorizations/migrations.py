"""One-off steps of the authorizations service after an upgrade.

    python -m services.authorizations.migrations import-care-plan FILE --payer ID

Records each authorization care_plan kept on a plan (exported by ``python -m services.care_plan.migrations
export-authorizations FILE``) as an authorization here: the payer ``ID`` (care_plan never knew it), the level, the
payer's reference as its authorization number, from the day the plan began (or its authorized-through date) to its
authorized-through date, approved, counting days but no limit of units (care_plan kept none: a coordinator adds
them with a decision). Each goes through the one change path as a ``migrated`` revision, so
``iop.authorization.changed`` follows (never with the number). Idempotent: an authorization recorded already (the
same payer and number for the episode) is left. It reads MONGODB_URL and AUTHORIZATIONS_DB like the service and
prints counts, never a number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from services.common.mongo import connect
from services.common.outbox import no_relay

from .changes import Desk, change_known
from .domain.authorizations import NewAuthorization, record
from .domain.coverage import Rules
from .domain.model import AuthorizationError, Coverage
from .domain.policy import PAYER_ID, load_policy
from .settings import AuthorizationsSettings
from .store import CoverageStore

MIGRATION = "migration"


def migrated(line: dict[str, Any], payer: str) -> NewAuthorization:
    through = date.fromisoformat(line["authorized_through"])
    since = date.fromisoformat(line["since"]) if line.get("since") else through
    return NewAuthorization(payer=payer, authorization_number=line["reference"], level=line["level"], unit="day",
                            units_authorized=None, start_date=min(since, through), end_date=through,
                            status="approved", review_type="initial")  # fmt: skip


async def import_care_plan(desk: Desk, lines: list[dict[str, Any]], payer: str) -> dict[str, int]:
    counts = {"recorded": 0, "already there": 0}
    for line in lines:
        new = migrated(line, payer)

        def decide(coverage: Coverage, now: datetime, new: NewAuthorization = new) -> tuple[Coverage, None]:
            return record(coverage, new, desk.rules.policy, MIGRATION, now, migrated=True)[0], None

        try:
            await change_known(desk, line["episode_id"], decide)
            counts["recorded"] += 1
        except AuthorizationError as error:
            if error.code != "authorization_exists":
                raise
            counts["already there"] += 1
    return counts


async def run(lines: list[dict[str, Any]], payer: str, settings: AuthorizationsSettings) -> dict[str, int]:
    policy = load_policy(settings.authorizations_policy_file)
    rules = Rules(policy, settings.review_lead_business_days, settings.units_low_days, settings.clinic_timezone)
    client = connect(settings.mongodb_url.get_secret_value(), tls_ca_file=settings.mongodb_tls_ca_file)
    try:
        store = CoverageStore(client[settings.authorizations_db], wake_relay=no_relay)  # the service's relay sends
        return await import_care_plan(Desk(store, rules), lines, payer)
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["import-care-plan"])
    parser.add_argument("file", type=Path, help="what export-authorizations wrote")
    parser.add_argument("--payer", required=True, help="the payer id (lower case) they are recorded under")
    args = parser.parse_args(argv)
    if not re.fullmatch(PAYER_ID, args.payer):
        parser.error("--payer: a payer id of the policy, lower case (e.g. carelon)")
    lines = [json.loads(text) for text in args.file.read_text(encoding="utf-8").splitlines() if text.strip()]
    counts = asyncio.run(run(lines, args.payer, AuthorizationsSettings()))
    print("import-care-plan: " + ", ".join(f"{count} {what}" for what, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
