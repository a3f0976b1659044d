"""Generate the JSON Schema of every event version from the contract's models.

`make schemas` writes shared/stepwise_contract/schemas/<type>.v<version>.json (and removes files of events that are
gone); without --write it checks them, as the test suite does. With --base URL --out DIR it writes them for a clinic
to host, each ``$id`` under its base (docs/deployment.md).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from stepwise_contract import json_schema
from stepwise_contract.envelope import DEFAULT_SCHEMA_BASE, checked_schema_base

FOLDER = Path(str(resources.files(json_schema.__package__))) / json_schema.PACKAGE_DIRECTORY


def rendered(base: str = DEFAULT_SCHEMA_BASE) -> dict[str, str]:
    return {name: json_schema.render(schema) for name, schema in json_schema.all_schemas(base).items()}


def stale(folder: Path = FOLDER) -> list[str]:
    """Files missing, different from what the models generate, or of no event."""
    expected = rendered()
    present = {path.name for path in folder.glob("*.json")}
    differ = [name for name, text in expected.items() if name not in present or (folder / name).read_text() != text]
    return sorted(differ + sorted(present - set(expected)))


def write(folder: Path = FOLDER, base: str = DEFAULT_SCHEMA_BASE) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    expected = rendered(base)
    for path in folder.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (folder / name).write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the schemas instead of checking them")
    parser.add_argument("--base", help="the URL the schemas are hosted at (SCHEMA_BASE_URL); with --out")
    parser.add_argument("--out", type=Path, help="the folder to write them to for hosting; with --base")
    args = parser.parse_args()
    if bool(args.base) != bool(args.out):
        parser.error("--base and --out go together")
    if args.out:
        write(args.out, checked_schema_base(args.base))
        return 0
    if args.write:
        write()
        return 0
    out_of_date = stale()
    if out_of_date:
        print(f"JSON Schemas out of date: {', '.join(out_of_date)}; run `make schemas`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
