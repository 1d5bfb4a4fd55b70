# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Where `dev up` keeps the local stack's state and logs, and its options (e.g. ports:
# DEV_UP_ARGS="--kafka-port 0 --dynamodb-port 0 --registry-port 0" picks free ones).
DEVSTACK_DIR ?= .devstack
DEV_UP_ARGS ?=

.PHONY: install lint test test-unit test-fast demo dev-up dev-down dev-up-kafka apache-kafka bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# setup.py builds the C transcoder: a changed source must be compiled again.
# The dev tools are their own distribution (devtools/pyproject.toml), installed beside the dev extra.
$(VENV)/.installed: pyproject.toml devtools/pyproject.toml setup.py connectors/dynamodb/_transcode.c connectors/dynamodb/typed/_typed.c | $(BIN)/python
	$(BIN)/python -m pip install -q -e ./devtools -e ".[dev]"
	touch $@

install: $(VENV)/.installed

## ruff (lint and import order) and mypy (types), as configured in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

## Lint and types, then the whole suite: unit, integration (local stack started by the tests) and slow end-to-end.
test: install lint
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

## Everything but the slow end-to-end tests.
test-fast: install
	$(BIN)/python -m pytest tests -m "not slow" $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

## Local stack + demo table + bridge + a consumer printing decoded events.
demo: install
	$(BIN)/ddb-kafka-bridge dev up --dir $(DEVSTACK_DIR) $(DEV_UP_ARGS)
	$(BIN)/ddb-kafka-bridge demo --dir $(DEVSTACK_DIR)
	@echo "local stack still running: 'make dev-down' stops it"

dev-up: install
	$(BIN)/ddb-kafka-bridge dev up --dir $(DEVSTACK_DIR) $(DEV_UP_ARGS)

## The same stack on Apache Kafka (KRaft, on the JDK; jars resolved once with mvn).
dev-up-kafka: install
	$(BIN)/ddb-kafka-bridge dev up --dir $(DEVSTACK_DIR) --broker kafka $(DEV_UP_ARGS)

dev-down:
	$(BIN)/ddb-kafka-bridge dev down --dir $(DEVSTACK_DIR)

## Resolve Apache Kafka's jars into the user cache now (the tests do it on first use).
apache-kafka: install
	$(BIN)/python -c "from devtools.apache_kafka import ensure_distribution; print(ensure_distribution())"

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(DEVSTACK_DIR) .pytest_cache *.egg-info
