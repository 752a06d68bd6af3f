# lienthong — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo test test-at test-fast test-faults contracts contracts-check config-reference bench fuzz up migrate backup clean lint

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## make run: the whole suite in one process (SQLite under var/, in-process broker, demo data)
run: $(STAMP)
	LIENTHONG_DEMO=true $(PY) -m lienthong run

## make demo: against a running suite (make run in another terminal), walk the main flow as the roles would
demo: $(STAMP)
	$(PY) -m lienthong demo

## make up: distributed mode, every part its own process (PostgreSQL + RabbitMQ from the environment)
up: $(STAMP)
	$(PY) -m lienthong up

migrate: $(STAMP)
	$(PY) -m lienthong migrate

## make test: every test, then the contracts check
test: $(STAMP)
	$(PY) -m pytest -q
	$(PY) -m lienthong contracts --check

## make test-at AT="2026-12-31 23:30:00": every test with this machine's clock moved (libfaketime; apt-get install faketime)
test-at: $(STAMP)
	@command -v faketime >/dev/null || { echo "test-at needs libfaketime: apt-get install faketime"; exit 2; }
	faketime '$(AT)' $(PY) -m pytest -q $(TESTS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not pg and not amqp and not faults"

test-faults: $(STAMP)
	$(PY) -m pytest -q tests/faults

contracts: $(STAMP)
	$(PY) -m lienthong contracts

contracts-check: $(STAMP)
	$(PY) -m lienthong contracts --check

config-reference: $(STAMP)
	$(PY) -m lienthong.configref

## make fuzz: a longer schemathesis run over every role
fuzz: $(STAMP)
	LIENTHONG_FUZZ_EXAMPLES=100 LIENTHONG_FUZZ_ROLES=citizen,desk_officer,specialist,leader,clerk,admin,auditor,integrator \
		$(PY) -m pytest -q -s tests/e2e/test_fuzz.py

## make screenshots: every console page as a PNG in var/screenshots/ (headless Chromium drives the main flow)
screenshots: $(STAMP)
	mkdir -p var/screenshots
	LIENTHONG_SCREENSHOTS=$(CURDIR)/var/screenshots $(PY) -m pytest -q tests/console/test_browser.py
	@ls var/screenshots

## make bench [ONLY=mixed,gateway] [PROFILE=intake] [BENCH_SECONDS=5]: benchmarks, figures in bench/results/
bench: $(STAMP)
	ONLY='$(ONLY)' PROFILE='$(PROFILE)' $(PY) -m bench

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf var .pytest_cache
