"""One-off steps on care_plan's stored records after an upgrade.

    python -m services.care_plan.migrations export-authorizations FILE

The payer-authorized level care_plan kept on a plan (``PUT /v1/episodes/{id}/authorization``, gone since issue 26)
moved to the authorizations service, which has its own database. This writes every plan's authorization to FILE,
one JSON line each (episode, level, authorized through, the payer's reference, the day the plan began), for
``python -m services.authorizations.migrations import-care-plan FILE --payer ID``. FILE holds payers' numbers: it
is created for its owner only (mode 0600); delete it after the import. Nothing is changed or removed here: the
plans keep their ``authorization`` as it was. It reads MONGODB_URL and CARE_PLAN_DB like the service and prints a
count, never a reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from pymongo.asynchronous.database import AsyncDatabase

from services.common.mongo import Document, connect

from .settings import CarePlanSettings
from .store import PLANS


async def exported_authorizations(database: AsyncDatabase[Document]) -> list[str]:
    """Every plan's authorization as a JSON line: episode, level, authorized through, reference, the day it began."""
    query = {"authorization": {"$type": "object"}}
    lines = []
    async for plan in database[PLANS].find(query, {"authorization": 1, "level_history": 1}).sort("_id", 1):
        history = plan.get("level_history") or [{}]
        began = str(history[0].get("since", ""))[:10] or None
        lines.append(json.dumps({"episode_id": plan["_id"], **plan["authorization"], "since": began}, sort_keys=True))
    return lines


def write_private(out: Path, lines: list[str]) -> None:
    """``out`` created for its owner only (0600), refused if it exists: it holds payers' numbers."""
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.writelines(line + "\n" for line in lines)


async def run(settings: CarePlanSettings) -> list[str]:
    client = connect(settings.mongodb_url.get_secret_value(), tls_ca_file=settings.mongodb_tls_ca_file)
    try:
        return await exported_authorizations(client[settings.care_plan_db])
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["export-authorizations"])
    parser.add_argument("file", type=Path, help="where to write them (must not exist)")
    args = parser.parse_args(argv)
    lines = asyncio.run(run(CarePlanSettings()))
    write_private(args.file, lines)
    print(f"export-authorizations: {len(lines)} authorization(s) written to {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
