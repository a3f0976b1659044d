# Stepwise: `make run` starts everything locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck audit unit faults asyncapi lock bench bench-outbox clean mutate

install: $(STAMP)

$(STAMP): pyproject.toml shared/pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e shared -e ".[dev]"
	touch $(STAMP)

run: install
	$(PY) -m tools.run

test: install lint typecheck audit
	$(PY) -m pytest
	$(PY) -m tools.faults --quick

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

audit: install
	$(PY) -m tools.audit

unit: install
	$(PY) -m pytest tests/unit tests/service tests/test_event_checklist.py

faults: install
	$(PY) -m tools.faults

asyncapi: install
	$(PY) -m tools.asyncapi --write

# Mutation testing (not part of test): MODULES="outbox idempotency" for some (docs/development.md).
mutate: install
	$(PY) -m tools.mutate --modules "$(MODULES)"

bench: install
	$(PY) -m bench.pipeline

bench-outbox: install
	$(PY) -m bench.outbox_relay

lock: install
	(echo "# Constraints for every install (make install): the exact versions CI and developers run."; \
	 echo "# Regenerate with: make lock"; $(PY) -m pip freeze --exclude-editable) > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
