"""History at scale: weekly runs keep succeeding as the history grows, in the memory configured.

The long version is bench/history.py (52 weeks, 150,000 + 4 x 20,000 + 20 x 500 referring
domains); here a few weeks of smaller targets, through the installed CLI where exit codes matter.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from serpstat_refdomains.emulator import SerpstatEmulator
from serpstat_refdomains.emulator.graph import Profile
from serpstat_refdomains.normalize import normalize_domain
from tests.helpers import DAY, PG_URL, TOKEN, needs_postgres, refdomains_on, run_pipeline

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_weekly_runs_of_a_target_over_the_depth_cap_keep_building_models(tmp_path):
    """A target just over the 60,000-row cap, loaded weekly: the third run's models build died
    with `Out of Memory Error ... (60.8 MiB/61.0 MiB used)`, because the 64 MB cap set for the
    loads stayed in force (DuckDB 1.5's `RESET memory_limit` reads back as reset but leaves the
    buffer pool at the old limit). Every run must exit 0 with its models built."""
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=7) as emulator:
        emulator.graph.set_profile("big.example.com", Profile(base_size=61_000))
        # generate the donor universe before the first request: on a busy machine that took longer
        # than the client's retries wait, and the snapshot failed for a reason this test is not about
        emulator.graph.donors("big.example.com", through=DAY + dt.timedelta(days=14))
        for week in range(3):
            emulator.today = DAY + dt.timedelta(days=7 * week)
            report = run_pipeline(tmp_path, emulator, ["big.example.com"], emulator.today, build_models=True)
            assert (week, report.exit_code, report.models_built) == (week, 0, True)
        expected = {normalize_domain(n) for n in emulator.graph.truth("big.example.com", emulator.today)}
    assert len(expected) > 60_000
    with duckdb.connect(str(tmp_path / "refdomains.duckdb"), read_only=True) as con:
        current = {r[0] for r in con.execute("SELECT ref_domain FROM serpstat.ref_domains_current").fetchall()}
    assert current == expected


@pytest.mark.parametrize("value", ["64MB", "lots", "512", "-1GB", "1.5 PB"])
def test_a_bad_duckdb_memory_limit_is_one_line_and_exit_2(tmp_path, value):
    env = {"SOURCES__SERPSTAT__API_TOKEN": TOKEN, "SOURCES__SERPSTAT__DOMAINS": '["a.com"]',
           "SOURCES__SERPSTAT__API_URL": "http://127.0.0.1:9/v4", "SOURCES__SERPSTAT__DUCKDB_MEMORY_LIMIT": value,
           "RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(tmp_path / "dlt"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "serpstat_refdomains.cli", "run"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "duckdb_memory_limit" in done.stderr and "at least 128MB" in done.stderr
    assert "Traceback" not in done.stderr and TOKEN not in done.stderr
    assert not list(tmp_path.glob("*.duckdb"))


def test_a_failed_models_build_is_one_line_and_exit_1_with_the_snapshots_kept(tmp_path, emulator):
    """The models build died as a Python traceback; now it is one line on stderr, exit 1, and the
    snapshots already loaded stay (a rerun of the date costs nothing)."""
    emulator.set_profile("kept.example.com", 30)
    env = {"SOURCES__SERPSTAT__API_TOKEN": TOKEN, "SOURCES__SERPSTAT__DOMAINS": '["kept.example.com"]',
           "SOURCES__SERPSTAT__API_URL": emulator.url, "SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "1000",
           "RUNTIME__DLTHUB_TELEMETRY": "false", "DLT_DATA_DIR": str(tmp_path / "dlt"), "PATH": "/usr/bin:/bin"}
    argv = [*refdomains_on(DAY), "run", "--kind", "full"]
    assert subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path).returncode == 0
    database = tmp_path / "serpstat_refdomains.duckdb"
    with duckdb.connect(str(database)) as con:  # a column the models read is gone
        con.execute("ALTER TABLE serpstat.ref_domains DROP COLUMN ref_pages")
    charged = emulator.api.credits_charged
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and TOKEN not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: the models could not be rebuilt (")
    assert "already_complete" in done.stdout and emulator.api.credits_charged == charged
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM serpstat.ref_domains").fetchone()[0] == 30


SHORT_WEEKS = 3
SHORT_CAP = 2_000  # the emulator's depth cap: the first target is over it


def _short_targets(history):
    return [history.Target("over-cap.example.com", 2_600), history.Target("mid.example.com", 400),
            history.Target("small.example.com", 40)]


@pytest.mark.parametrize("destination", ["duckdb", pytest.param("postgres", marks=needs_postgres)])
def test_a_short_history_of_weekly_runs_exits_0_at_the_minimum_credits(tmp_path, destination, monkeypatch):
    """bench/history.py in small: weekly `refdomains run`s (the CLI: a full snapshot each) over an
    evolving graph, one target over the emulator's depth cap. Every run exits 0, every snapshot
    is complete, and targets under the cap cost exactly the minimum (rows + 1 per empty result +
    the rows their windows share) computed from the emulator's truth for that day."""
    sys.path.insert(0, str(BENCH))
    import history

    monkeypatch.setattr(history, "PG_URL", PG_URL)  # the tests' sessions: no JIT for tables this small
    weeks = history.run_history(SHORT_WEEKS, destination, _short_targets(history), depth_cap=SHORT_CAP,
                                page_size=200, folder=tmp_path)
    assert [w.exit_code for w in weeks] == [0] * SHORT_WEEKS, [w.error for w in weeks]
    assert all(w.statuses == {"complete": 3} for w in weeks)
    assert all(w.rows > SHORT_CAP and w.partitions > 1 for w in weeks)  # partitioned, probes allowed
    under_cap = [{t: e for t, e in w.excess_by_target.items() if t != "over-cap.example.com"} for w in weeks]
    assert under_cap == [{}] * SHORT_WEEKS
    # Over the cap: the first pull pays for the rows it read before Serpstat's (here narrower than
    # assumed) window refused a window: up to the cap, the window that straddles it (at most a
    # page) and the rows those windows share; every later pull starts from the ledger's partition
    # plan and costs no more than docs/operations.md's costs of a partitioned snapshot.
    over_cap = [w.excess_by_target.get("over-cap.example.com", 0) for w in weeks]
    assert 0 < over_cap[0] <= SHORT_CAP + 200 + SHORT_CAP // 20, over_cap
    assert all(excess <= 0 for excess in over_cap[1:]), over_cap


def test_a_runs_models_build_starts_with_its_loads_on_disk_in_the_default_limit(tmp_path, emulator, monkeypatch,
                                                                                caplog):
    """With the database held open through a run, its loads stayed in DuckDB's memory as table
    data until the end of the run: week 2 of the year soak built its models with 72 MB of them
    and failed at 256MB ("failed to pin block"). The build now starts with none in memory, within
    the default limit, and DuckDB's allocator hands what a statement freed back to the system
    (without it, a run's peak held the loads' and every model's leftovers at once)."""
    from serpstat_refdomains import models

    emulator.set_profile("held.com", 20_000)
    seen = {}
    real_build = models.build

    def build(pipeline, *args, **kwargs):  # what DuckDB itself holds when the build starts
        with pipeline.sql_client() as client:
            seen["in_memory_mb"] = client.execute_sql(
                "SELECT coalesce(sum(memory_usage_bytes), 0) / 1048576 FROM duckdb_memory() "
                "WHERE tag = 'IN_MEMORY_TABLE'")[0][0]
            seen["settings"] = client.execute_sql(
                "SELECT current_setting('memory_limit'), current_setting('allocator_background_threads')")[0]
        return real_build(pipeline, *args, **kwargs)

    monkeypatch.setattr(models, "build", build)
    caplog.set_level(logging.INFO, logger="serpstat_refdomains.duckdb_session")
    report = run_pipeline(tmp_path, emulator, ["held.com"], build_models=True)
    assert report.exit_code == 0 and report.models_built
    assert seen["in_memory_mb"] < 1, seen
    assert seen["settings"] == ("244.1 MiB", True), seen  # duckdb_memory_limit's default, 256MB
    # what bench/history.py reads to tell the loads' memory from the build's
    before, after = map(int, re.search(r"peak RSS (\d+) MB before the build, (\d+) MB after", caplog.text).groups())
    assert 0 < before <= after, caplog.text


def test_a_run_whose_loads_spilled_to_disk_still_builds_its_models(tmp_path, emulator, monkeypatch):
    """A run resumed after a year soak's run was killed merged big loads in the loads' quarter of
    the limit, which spilled to the temp directory beside the database; then its models build held
    the database open again and set that directory a second time, which DuckDB refuses once it is
    used ("Cannot switch temporary directory"): exit 1, models stale, every such run. Here a sort
    that spills stands in for the big merge."""
    from serpstat_refdomains import competitor_table

    emulator.set_profile("spilled.com", 300)
    real_record, spilled = competitor_table.record_for_run, []

    def record_after_a_spill(pipeline, settings):  # what a run does between its loads and its build
        with pipeline.sql_client() as client:
            client.execute_sql("CREATE TEMP TABLE sorted AS "
                               "SELECT md5(i::VARCHAR) || md5(i::VARCHAR) AS k FROM range(3000000) t(i) ORDER BY k")
            spilled.append(client.execute_sql("SELECT count(*) FROM duckdb_temporary_files()")[0][0])
        return real_record(pipeline, settings)

    monkeypatch.setattr(competitor_table, "record_for_run", record_after_a_spill)
    report = run_pipeline(tmp_path, emulator, ["spilled.com"], build_models=True)
    assert spilled and spilled[0] > 0, "the sort spilled"
    assert report.exit_code == 0 and report.models_built and report.models_error is None, report.models_error
    with duckdb.connect(str(tmp_path / "refdomains.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM serpstat.ref_domains_current").fetchone() == (300,)


def _build_holding_strings(tmp_path, emulator, monkeypatch, target: str, strings: int):
    """A run at duckdb_memory_limit 128MB whose models build first aggregates `strings` strings of
    ~200 bytes into one list, which DuckDB cannot spill; returns (the limit of each attempt, report)."""
    from serpstat_refdomains import models

    emulator.set_profile(target, 300)
    limits: list[str] = []
    real_build = models.build

    def build(pipeline, *args, **kwargs):
        with pipeline.sql_client() as client:
            limits.append(client.execute_sql("SELECT current_setting('memory_limit')")[0][0])
            client.execute_sql(f"SELECT length(list(repeat('x', 200) || i::VARCHAR)) FROM range({strings}) t(i)")
        return real_build(pipeline, *args, **kwargs)

    monkeypatch.setattr(models, "build", build)
    report = run_pipeline(tmp_path, emulator, [target], build_models=True,
                          settings_options={"duckdb_memory_limit": "128MB"})
    return limits, report


def test_a_models_build_is_built_again_at_doubling_limits_until_it_fits(tmp_path, emulator, caplog, monkeypatch):
    """One doubling was a fixed cap: an outside review's 3M-row target and a year of link gap over
    three 150k-domain sites ran out of 256MB and of 512MB, and the run exited 1, where 1GB built
    them. Here DuckDB itself runs out twice: a list of 1,000,000 strings (about 300MB) fits
    neither 128MB nor 256MB, but 512MB."""
    with caplog.at_level("WARNING"):
        limits, report = _build_holding_strings(tmp_path, emulator, monkeypatch, "tighter.com", 1_000_000)
    assert limits == ["122.0 MiB", "244.1 MiB", "488.2 MiB"]  # 128MB, 256MB, 512MB
    assert report.exit_code == 0 and report.models_built and report.models_error is None
    assert "building it again with 512MB" in caplog.text and "set duckdb_memory_limit to 512MB" in caplog.text


def test_a_models_build_that_runs_out_of_duckdb_memory_is_built_again_with_twice_the_limit(
        tmp_path, emulator, caplog, monkeypatch):
    """DuckDB does not spill everything: the year soak's builds ran out of 512MB in week 5 (and of
    256MB in week 2) where bigger later builds did not, and the run exited 1 with its models
    stale. The build is rolled back and built again with twice the limit. Here 400,000 strings
    do not fit 128MB, but 256MB."""
    with caplog.at_level("WARNING"):
        limits, report = _build_holding_strings(tmp_path, emulator, monkeypatch, "tight.com", 400_000)
    assert limits == ["122.0 MiB", "244.1 MiB"]  # 128MB, then 256MB
    assert report.exit_code == 0 and report.models_built and report.models_error is None
    assert "ran out of duckdb_memory_limit 128MB" in caplog.text and "building it again with 256MB" in caplog.text
    with duckdb.connect(str(tmp_path / "refdomains.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM serpstat.ref_domains_current").fetchone() == (300,)
