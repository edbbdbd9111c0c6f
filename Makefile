# One entry point for people and CI. `make demo` and `make test` set themselves up.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
CHECKOV_VENV := .venv-checkov

.PHONY: setup demo test lint checkov bench bench-tenants emulator clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

setup: $(VENV)/.installed node_modules/.installed

## The main job on the embedded default: Azurite + the tenant emulator, no Azure account.
demo: setup
	$(PY) -m devtools.demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m devtools.permissions --check

checkov: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --config-file infra/.checkov.yaml

## Everything CI runs: lint (ruff, mypy strict on shared/), the permission file check,
## checkov, and the test suite.
test: setup checkov lint
	CHECKOV_BIN=$(CURDIR)/$(CHECKOV_VENV)/bin/checkov $(PY) -m pytest

bench: setup
	$(PY) -m bench.storm --sizes 100 500 1000 --repeat 3
	$(PY) -m bench.storm --sizes 500 --instances 2
	$(PY) -m bench.storm --sizes 500 --instances 3

## Ten tenants on one deployment, and a newcomer tenant after another tenant's storm
## (a few minutes on 2 cores): bench/out/tenants.json and bench/RESULTS.md's tenants block.
bench-tenants: setup
	$(PY) -m bench.tenants

emulator: setup
	$(PY) -m devtools.emulator --host 127.0.0.1 --port 8765 --token local-emulator-token

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .pytest_cache .ruff_cache
