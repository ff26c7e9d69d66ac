"""Shared fixtures: a real emulator over HTTP on 127.0.0.1, a client pointed at it, and a
PostgreSQL dataset dropped after the test. What tests import lives in tests/helpers.py."""

from __future__ import annotations

import os
import uuid

import psycopg2
import pytest

# No telemetry calls from test runs (there is no network here anyway); set before dlt is imported.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

from serpstat_refdomains.emulator import SerpstatEmulator
from tests.helpers import DAY, PG_URL, TODAY, TOKEN, fast_client

__all__ = ["DAY", "TOKEN"]  # re-exported for the test modules that still import them from here


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
    with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
        for schema in (name, f"{name}_staging"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
