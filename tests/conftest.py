"""Shared fixtures: a real emulator over HTTP on 127.0.0.1, a client pointed at it, and a
PostgreSQL dataset dropped after the test. What tests import lives in tests/helpers.py."""

from __future__ import annotations

import os
import uuid

import pytest

# No telemetry calls from test runs (there is no network here anyway); set before dlt is imported.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

from serpstat_refdomains.emulator import SerpstatEmulator
from tests.helpers import DAY, TODAY, TOKEN, drop_dataset, fast_client

__all__ = ["DAY", "TOKEN"]  # re-exported for the test modules that still import them from here

# `make test` runs two processes that each take whole files, the next file when one is done:
# the longest files go first, so that neither process ends waiting for the other's last long
# file (xdist's own order, by number of tests, put the 25 s chaos file, one test, last). Files
# not named keep their place after these; tests keep their order within a file.
LONGEST_FIRST = ["test_scale.py", "test_warehouse.py", "test_alerts.py", "test_operations.py", "test_link_gap.py",
                 "test_model_catalog.py", "test_cli_commands.py", "test_models.py", "test_lease.py", "test_run.py",
                 "test_isolation.py", "test_model_rewrite.py", "test_chaos.py", "test_churn.py", "test_hostile.py",
                 "test_target_roles.py", "test_credits.py", "test_config.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture
def emulator():
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=7) as emu:
        yield emu


@pytest.fixture
def today_emulator():
    """The emulator serving today: what a `refdomains run` process, which files its snapshot under
    today's date and no other, is pointed at."""
    with SerpstatEmulator(token=TOKEN, today=TODAY, seed=7) as emu:
        yield emu


@pytest.fixture
def client(emulator):
    with fast_client(emulator) as c:
        yield c


@pytest.fixture
def pg_dataset():
    """A fresh dataset name on the test server; the dataset and dlt's staging beside it are dropped."""
    name = f"rd_test_{uuid.uuid4().hex[:10]}"
    yield name
    drop_dataset(name)
