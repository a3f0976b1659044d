"""`python -m tests.faults`: the fault suite (suite.py)."""

from tests.faults.suite import cli

cli()
