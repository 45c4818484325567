# Two commands after cloning: `make run` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-engine bench notebook clean

$(BIN)/aps: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/aps

run: $(BIN)/aps
	$(BIN)/aps serve

test: $(BIN)/aps
	$(BIN)/python -m pytest

# Real-engine tests: installs vLLM's CPU build into .engines/vllm when missing (about 5 minutes,
# 3 GB), then runs the tests marked `engine` (about 3 minutes: three vLLM starts).
test-engine: $(BIN)/aps
	bash scripts/engines/setup_vllm.sh
	$(BIN)/python -m pytest -m engine -s

bench: $(BIN)/aps
	$(BIN)/aps bench core

# Re-run the research notebook and save it with its outputs (about a minute).
notebook: $(BIN)/aps
	$(BIN)/python scripts/run_notebook.py notebooks/research_demo.ipynb

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
