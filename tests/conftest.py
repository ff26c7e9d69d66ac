"""Shared fixtures: a real emulator over HTTP on 127.0.0.1, a client pointed at it."""

from __future__ import annotations

import datetime as dt
import os

import pytest

# No telemetry calls from test runs (there is no network here anyway).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

from serpstat_refdomains.client import SerpstatClient
from serpstat_refdomains.emulator import SerpstatEmulator

TOKEN = "tok-SECRET-7f3a9c"  # distinctive, so a leak is found by a plain substring scan
DAY = dt.date(2026, 3, 2)


@pytest.fixture
def emulator():
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=7) as emu:
        yield emu


@pytest.fixture
def client(emulator):
    with SerpstatClient(TOKEN, api_url=emulator.url, requests_per_second=None, timeout=5,
                        backoff_initial=0.01, backoff_max=0.05, max_retry_wait=20) as c:
        yield c
