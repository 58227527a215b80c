# The two commands: `make demo` brings the mesh up on the embedded broker and runs the
# demo; `make test` runs the test suite against real brokers (the embedded one and Apache
# Kafka). Both create .venv on first use; `make test` also installs the system packages the
# suite needs when they are missing (deploy/system-deps.sh).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml setup.py schemas/_avro.c streams/_hmac.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/citymesh demo

test: $(STAMP)
	bash deploy/system-deps.sh
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .citymesh .pytest_cache
