"""Generate the JSON Schema of every event version from the contract's models.

`make schemas` writes shared/stepwise_contract/schemas/<type>.v<version>.json (and removes files of events that are
gone); without --write it checks them, as the test suite does.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from stepwise_contract import json_schema

FOLDER = Path(str(resources.files(json_schema.__package__))) / json_schema.PACKAGE_DIRECTORY


def rendered() -> dict[str, str]:
    return {name: json_schema.render(schema) for name, schema in json_schema.all_schemas().items()}


def stale(folder: Path = FOLDER) -> list[str]:
    """Files missing, different from what the models generate, or of no event."""
    expected = rendered()
    present = {path.name for path in folder.glob("*.json")}
    differ = [name for name, text in expected.items() if name not in present or (folder / name).read_text() != text]
    return sorted(differ + sorted(present - set(expected)))


def write(folder: Path = FOLDER) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    expected = rendered()
    for path in folder.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (folder / name).write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="write the schemas instead of checking them")
    if parser.parse_args().write:
        write()
        return 0
    out_of_date = stale()
    if out_of_date:
        print(f"JSON Schemas out of date: {', '.join(out_of_date)}; run `make schemas`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
