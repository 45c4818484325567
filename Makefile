# Two commands after cloning: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/aps: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/aps

run: $(BIN)/aps
	$(BIN)/aps serve

test: $(BIN)/aps
	$(BIN)/python -m pytest

bench: $(BIN)/aps
	$(BIN)/aps bench core

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
