"""Dates cannot lie: Serpstat answers with its index of today, so a snapshot is filed under today's
date only (today somewhere on Earth: a late schedule at 00:05 UTC may file yesterday), never in
the future and never before the latest snapshot of its series. Anything else is one line, exit 2,
nothing fetched and nothing written."""

from __future__ import annotations

import datetime as dt

import pytest

from serpstat_refdomains.constants import PIPELINE_NAME
from tests.helpers import cli_env, query_file, ref_requests, run_main

D = dt.date(2026, 6, 10)


def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=dt.UTC)


@pytest.mark.parametrize("filed, clock, why", [
    (D + dt.timedelta(days=365), at(D, 12), "is in the future"),  # a typo of the year
    (D + dt.timedelta(days=1), at(D, 9), "is in the future"),  # not yet tomorrow anywhere
    (D - dt.timedelta(days=7), at(D, 12), "is in the past"),  # a backfill
    (D - dt.timedelta(days=1), at(D, 12, 30), "is in the past"),  # yesterday is over everywhere
])
def test_a_date_that_is_not_today_anywhere_is_refused_before_anything_is_fetched(tmp_path, emulator, filed,
                                                                                  clock, why):
    emulator.today = D
    env = cli_env(tmp_path, emulator, "dated.com")
    done = run_main(tmp_path, env, "run", "--snapshot-date", filed.isoformat(), day=clock)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and why in lines[0], done.stderr
    assert "leave --snapshot-date out" in lines[0]
    assert ref_requests(emulator) == [] and not (tmp_path / f"{PIPELINE_NAME}.duckdb").exists()


@pytest.mark.parametrize("filed, clock", [
    (D - dt.timedelta(days=1), at(D, 0, 5)),  # a late schedule: still yesterday west of UTC
    (D + dt.timedelta(days=1), at(D, 13)),  # already tomorrow in Auckland
    (D, at(D, 23, 59)),
])
def test_today_somewhere_on_earth_is_accepted(tmp_path, emulator, filed, clock):
    emulator.today = D
    emulator.set_profile("dated.com", 20)
    done = run_main(tmp_path, cli_env(tmp_path, emulator, "dated.com"), "run", "--snapshot-date", filed.isoformat(),
                    "--no-models", day=clock)
    assert done.returncode == 0, done.stderr
    assert query_file(tmp_path, "SELECT DISTINCT snapshot_date FROM serpstat.snapshots") == [(filed,)]


def test_a_date_before_the_latest_snapshot_of_a_series_is_refused(tmp_path, emulator):
    """Filed between two full snapshots, today's index read as 30 false lost, 30 false new and
    30 false returned."""
    emulator.today = D
    emulator.set_profile("dated.com", 20)
    env = cli_env(tmp_path, emulator, "dated.com")
    assert run_main(tmp_path, env, "run", "--no-models", day=at(D, 0, 1)).returncode == 0
    emulator.api.clear_log()
    done = run_main(tmp_path, env, "run", "--snapshot-date", (D - dt.timedelta(days=1)).isoformat(), day=at(D, 0, 5))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"is before the latest snapshot of dated.com ({D})" in lines[0] and "history cannot be rewritten" in lines[0]
    assert ref_requests(emulator) == []
    assert query_file(tmp_path, "SELECT DISTINCT snapshot_date FROM serpstat.snapshots") == [(D,)]
