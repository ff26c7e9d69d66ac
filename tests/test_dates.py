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


# docs/operations.md, "Dates": removing a snapshot filed under a later date (DuckDB and PostgreSQL alike)
REMOVE_LATER_DATED = ["DELETE FROM serpstat.ref_domains WHERE snapshot_date = DATE '{day}'",
                      "DELETE FROM serpstat.snapshots WHERE snapshot_date = DATE '{day}'"]


def test_after_a_snapshot_filed_tomorrow_a_plain_run_says_what_happened_and_the_way_out(tmp_path, emulator):
    """`--snapshot-date <tomorrow>` is accepted from 10:00 UTC (UTC+14); every plain run that day was
    then refused with a line about a --snapshot-date it was not given, and no way out."""
    import duckdb

    emulator.today = D
    emulator.set_profile("ahead.com", 20)
    env = cli_env(tmp_path, emulator, "ahead.com")
    tomorrow = D + dt.timedelta(days=1)
    assert run_main(tmp_path, env, "run", "--snapshot-date", tomorrow.isoformat(), "--no-models",
                    day=at(D, 10, 30)).returncode == 0
    emulator.api.clear_log()
    done = run_main(tmp_path, env, "run", "--no-models", day=at(D, 12))
    lines = done.stderr.strip().splitlines()
    assert (done.returncode, len(lines)) == (2, 1), done.stderr
    assert lines[0] == (
        f"error: ahead.com already has a snapshot filed under a later date, {tomorrow} (by --snapshot-date, or on a "
        f"machine whose clock was ahead), and this run files under today, {D} (UTC): history cannot be rewritten; "
        f"wait until {tomorrow} (UTC), or run with --snapshot-date {tomorrow} (accepted while it is today somewhere "
        "on Earth), or remove the later-dated snapshot (docs/operations.md, \"Dates\")")
    assert ref_requests(emulator) == []
    # status marks it, rather than showing it as the plain latest state
    status = run_main(tmp_path, env, "status", day=at(D, 12))
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("ahead.com"))
    assert f"{tomorrow} (future)" in row, status.stdout
    assert f"1 latest snapshot(s) dated after today ({D}, UTC)" in status.stdout
    # the documented way out: remove it, then today's run files today's snapshot
    with duckdb.connect(str(tmp_path / f"{PIPELINE_NAME}.duckdb")) as con:
        for sql in REMOVE_LATER_DATED:
            con.execute(sql.format(day=tomorrow))
    again = run_main(tmp_path, env, "run", "--no-models", day=at(D, 12, 5))
    assert again.returncode == 0, again.stderr
    assert query_file(tmp_path, "SELECT DISTINCT snapshot_date FROM serpstat.snapshots") == [(D,)]


def test_a_given_date_before_the_latest_snapshot_names_the_dates_that_are_accepted(tmp_path, emulator):
    emulator.today = D
    emulator.set_profile("dated.com", 20)
    env = cli_env(tmp_path, emulator, "dated.com")
    tomorrow = D + dt.timedelta(days=1)
    assert run_main(tmp_path, env, "run", "--snapshot-date", tomorrow.isoformat(), "--no-models",
                    day=at(D, 11)).returncode == 0
    done = run_main(tmp_path, env, "run", "--snapshot-date", D.isoformat(), "--no-models", day=at(D, 11, 5))
    assert done.returncode == 2 and done.stderr.strip() == (
        f"error: --snapshot-date {D} is before the latest snapshot of dated.com ({tomorrow}): history cannot be "
        f"rewritten; use --snapshot-date {tomorrow} or later (while it is today somewhere on Earth), or leave it out "
        "once today's date has reached it"), done.stderr
