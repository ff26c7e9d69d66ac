# Each target bootstraps .venv from the lock file, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench chaos clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/refdomains demo

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

chaos: $(STAMP)
	CHAOS_EXAMPLES=200 $(BIN)/python -m pytest -q -s tests/test_chaos.py

clean:
	rm -rf $(VENV) demo .pytest_cache
