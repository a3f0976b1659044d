# Stepwise: `make run` starts everything locally, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The MongoDB server `make test` runs the store tier and the end-to-end spine on as well (marker second_server;
# docs/development.md, "Backends"). Empty: not run, and said so.
SECOND_SERVER ?= ferretdb-pg

.PHONY: install run test second-server lint typecheck audit unit faults asyncapi schemas lock bench bench-outbox bench-fetch clean mutate chart caseload-rebuild

install: $(STAMP)

$(STAMP): pyproject.toml shared/pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements.lock -e shared -e ".[dev]"
	touch $(STAMP)

run: install
	$(PY) -m tools.dev.run

# The tiers without backends (unit, service, the documents' checks) in two processes side by side, then those with
# a real broker and store in one (one stack for the run). tools/dev/fast_tiers.py says why they are split so.
test: install lint typecheck audit
	$(PY) -m tools.dev.fast_tiers
	$(PY) -m pytest --durations=15 tests/store tests/integration
	$(MAKE) --no-print-directory second-server
	$(PY) -m tests.faults --quick

second-server: install
ifeq ($(SECOND_SERVER),)
	@echo "second server: NOT RUN (SECOND_SERVER is empty): the store tier and the spine ran on one server only"
else
	env -u MONGODB_URL STEPWISE_MONGODB_SERVER=$(SECOND_SERVER) $(PY) -m pytest -m second_server tests/store tests/integration
endif

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

audit: install
	$(PY) -m tools.check.audit

unit: install
	$(PY) -m pytest tests/unit tests/service tests/test_event_checklist.py

faults: install
	$(PY) -m tests.faults

asyncapi: install
	$(PY) -m tools.generate.asyncapi --write

# The JSON Schema of every event version (shared/stepwise_contract/schemas), from the contract's models.
schemas: install
	$(PY) -m tools.generate.schemas --write

# The Helm chart: helm lint and helm template | kubeconform against deploy/helm/schemas. Not part of test: the
# first run builds helm and kubeconform from the Go module proxy (~6 min on two cores; docs/deployment.md).
chart: install
	$(PY) -m tools.deploy.chart

# Mutation testing (not part of test): MODULES="outbox idempotency" for some (docs/development.md).
mutate: install
	$(PY) -m tools.check.mutate --modules "$(MODULES)"

# Rebuild caseload's projection from the iop.* topics into a fresh collection and swap it in (safe while it runs).
caseload-rebuild: install
	$(PY) -m services.caseload.rebuild

bench: install
	$(PY) -m bench.pipeline
	$(PY) -m bench.caseload

bench-outbox: install
	$(PY) -m bench.outbox_relay

bench-fetch: install
	$(PY) -m bench.fetch_pace

# Two locks: requirements.lock (every install's constraints, dev tools included) and requirements.prod.lock (the
# runtime dependencies at those versions, with hashes, for the image's --require-hashes install; reaches PyPI).
lock: install
	(echo "# Constraints for every install (make install): the exact versions CI and developers run."; \
	 echo "# Regenerate with: make lock"; $(PY) -m pip freeze --exclude-editable) > requirements.lock
	$(PY) -m tools.generate.prod_lock

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
