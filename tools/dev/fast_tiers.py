"""``make test``'s tiers without backends, on both cores: two pytest processes side by side.

The service tier and the schema tests (schemathesis drives the same apps) run in one process, because
``tests/service/test_coverage.py`` checks, at the end, what both recorded in it; the unit tier and the documents'
checks run in the other. The first streams its output; the second's is printed when it ends. Exits non-zero when
either fails. The tiers with a real broker and store run after, in one process (one stack for the run)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WITH_THE_APPS = ["tests/service", "tests/test_api_schema.py"]


def the_rest() -> list[str]:
    documents = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py"))
    return ["tests/unit", *(path for path in documents if path not in WITH_THE_APPS)]


def main(arguments: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", *arguments]
    with tempfile.TemporaryFile("w+") as output:
        beside = subprocess.Popen([*pytest, *the_rest()], cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        first = subprocess.run([*pytest, *WITH_THE_APPS], cwd=ROOT, check=False).returncode
        second = beside.wait()
        output.seek(0)
        sys.stdout.write(output.read())
    return first or second


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
