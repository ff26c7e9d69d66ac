# Each target bootstraps .venv from the lock file, so a fresh machine needs only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# `make lock` runs pip-tools from a venv of its own, so the lock never depends on what the test
# venv happens to hold; both are pinned so a relock reads the same resolver every time.
LOCK_VENV := .venv-lock
LOCK_TOOLS := pip==26.3 pip-tools==7.6.2

.PHONY: install test e2e engines lint docs demo bench chaos lock clean

# The lock pins the test and lint extras too, so this one install brings pytest, ruff and mypy.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Two processes (pytest-xdist), each taking whole test files, so a module's fixtures (a loaded
# history, the demo) are built once: most tests wait on HTTP, subprocesses or PostgreSQL, so two
# keep both cores busy. Files are handed out in tests/conftest.py's order, longest first
# (--no-loadscope-reorder keeps it). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# A new user's install from the built wheel, in fresh venvs (tests/test_e2e_install.py): minutes,
# so `make test` leaves it out. Needs PyPI; PostgreSQL for the workflow and Airflow parts.
e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e tests/test_e2e_install.py

# The models executed on other engines than DuckDB and PostgreSQL (tests/test_engines_*.py): Spark
# SQL on a local Spark, and the whole run through dlt's snowflake destination against fakesnow, a
# Snowflake-wire server. Their packages are pinned here, not in the lock: pyspark is 400 MB that
# only this target needs, and snowflake-connector-python moves python-dateutil below the lock's pin
# (boto3 wants <3). So they go into .venv-engines (the lock, the package, and these), never .venv.
# fakesnow wants newer duckdb and sqlglot than the project allows: its server runs from a venv of
# its own. Spark needs Java 17 (Debian: openjdk-17-jre-headless; .ci/run installs it).
ENGINES_VENV := .venv-engines
ENGINES_TOOLS := pyspark==4.3.0 snowflake-connector-python==4.8.1
FAKESNOW_VENV := .venv-fakesnow
FAKESNOW_TOOLS := fakesnow[server]==0.12.1 snowflake-connector-python==4.8.1

$(ENGINES_VENV)/.installed: requirements.lock pyproject.toml Makefile
	$(PYTHON) -m venv $(ENGINES_VENV)
	$(ENGINES_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(ENGINES_VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(ENGINES_VENV)/bin/python -m pip install --quiet --no-deps -e .
	$(ENGINES_VENV)/bin/python -m pip install --quiet $(ENGINES_TOOLS)
	touch $@

$(FAKESNOW_VENV)/.installed: Makefile
	$(PYTHON) -m venv $(FAKESNOW_VENV)
	$(FAKESNOW_VENV)/bin/python -m pip install --quiet $(FAKESNOW_TOOLS)
	touch $@

engines: $(ENGINES_VENV)/.installed $(FAKESNOW_VENV)/.installed
	REFDOMAINS_REQUIRE_SPARK=1 REFDOMAINS_REQUIRE_SNOWFLAKE=1 FAKESNOW_PYTHON=$(abspath $(FAKESNOW_VENV))/bin/python \
		$(ENGINES_VENV)/bin/python -m pytest -q -s -m engines tests/test_engines_spark.py tests/test_engines_snowflake.py

# Ruff (style, imports, likely bugs) over all the Python; mypy over the package ([tool.mypy]);
# import-linter holds the package's imports to one direction (.importlinter).
lint: $(STAMP)
	$(BIN)/ruff check pipelines tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# docs/models.md and the README's table of models, from the doc file beside each model in sql/
# (tests/test_model_catalog.py fails while either is out of date).
docs: $(STAMP)
	$(BIN)/python -m serpstat_refdomains.models.docs .

demo: $(STAMP)
	$(BIN)/refdomains demo

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# The long randomized runs: fault sequences with SIGKILL, page seams at every total up to the
# depth cap, random histories against the models' oracle, churn during pulls, PostgreSQL sessions
# terminated at random. `make test` runs the same tests with a
# few examples each; these counts are what `make chaos` adds (CI passes smaller ones to fit).
CHAOS_EXAMPLES ?= 200
SEAM_EXAMPLES ?= 50000
WINDOWS_TOTAL_STEP ?= 1
MODEL_SEEDS ?= 24
CHURN_EXAMPLES ?= 400
TERMINATION_ROUNDS ?= 6
chaos: $(STAMP)
	CHAOS_EXAMPLES=$(CHAOS_EXAMPLES) SEAM_EXAMPLES=$(SEAM_EXAMPLES) WINDOWS_TOTAL_STEP=$(WINDOWS_TOTAL_STEP) \
		MODEL_SEEDS=$(MODEL_SEEDS) CHURN_EXAMPLES=$(CHURN_EXAMPLES) TERMINATION_ROUNDS=$(TERMINATION_ROUNDS) \
		$(BIN)/python -m pytest -q -s tests/test_chaos.py tests/test_windows.py tests/test_model_rewrite.py \
		tests/test_churn.py tests/test_lease.py

# Rewrites requirements.lock with a hash for every file of every pinned release. pip-compile keeps
# the versions already in the lock (nothing upgrades by accident); to move one on purpose:
# `make lock LOCK_FLAGS=--upgrade-package=dlt`. setuptools is pinned too (--allow-unsafe): dlt
# needs it at run time, and pip's hash-checking mode refuses any dependency the lock does not pin.
lock: $(LOCK_VENV)/.installed
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --extra test --extra lint \
		--generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links \
		$(LOCK_FLAGS) --output-file requirements.lock pyproject.toml

$(LOCK_VENV)/.installed:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet $(LOCK_TOOLS)
	touch $@

clean:
	rm -rf $(VENV) $(LOCK_VENV) $(ENGINES_VENV) $(FAKESNOW_VENV) demo .pytest_cache
