"""`refdomains run` as a process: a SIGKILL mid-run, then a rerun; exit codes and one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from serpstat_refdomains.emulator import Fault
from tests.conftest import DAY, TOKEN
from tests.helpers import ref_requests, snapshot_cost, truth

REFDOMAINS = [sys.executable, "-m", "serpstat_refdomains.cli"]


def cli_env(workdir: Path, emulator, domains: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOURCES__", "DESTINATION__"))}
    env.update({
        "DLT_DATA_DIR": str(workdir / "dlt"),
        "SOURCES__SERPSTAT__API_TOKEN": TOKEN,
        "SOURCES__SERPSTAT__API_URL": emulator.url,
        "SOURCES__SERPSTAT__DOMAINS": domains,
        "SOURCES__SERPSTAT__REQUESTS_PER_SECOND": "1000",
        **extra,
    })
    return env


def run_cli(workdir: Path, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(REFDOMAINS + list(args), cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_killed_mid_run_then_rerun_pays_nothing_twice(tmp_path, emulator):
    for name, size in (("first.com", 2500), ("second.com", 3000), ("third.com", 500)):
        emulator.set_profile(name, size)
    # second.com pages crawl, so the kill lands while it is in flight
    emulator.faults.add(Fault("delay", query="second.com", page=2, seconds=30, times=1))
    env = cli_env(tmp_path, emulator, '["first.com", "second.com", "third.com"]')
    day = DAY.isoformat()
    proc = subprocess.Popen(REFDOMAINS + ["run", "--snapshot-date", day, "--kind", "full", "--no-models"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # kill once first.com's load package is committed, while second.com still waits on its page
    loaded = tmp_path / "dlt" / "pipelines" / "serpstat_refdomains" / "load" / "loaded"
    deadline = time.monotonic() + 60
    while not (loaded.is_dir() and any(loaded.iterdir())):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.05)
    assert any(e.query == "second.com" for e in emulator.log) and proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    charged_before = {q: sum(e.charge for e in ref_requests(emulator, q)) for q in ("first.com", "second.com")}
    assert charged_before["first.com"] == snapshot_cost(2500)

    emulator.faults.clear()
    emulator.api.clear_log()
    rerun = run_cli(tmp_path, env, "run", "--snapshot-date", day, "--kind", "full", "--no-models")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert {e.query for e in ref_requests(emulator)} == {"second.com", "third.com"}
    assert emulator.api.credits_charged == snapshot_cost(3000) + snapshot_cost(500)
    with duckdb.connect(str(tmp_path / "serpstat_refdomains.duckdb"), read_only=True) as con:
        for target in ("first.com", "second.com", "third.com"):
            rows = [r[0] for r in con.execute(
                "SELECT ref_domain FROM serpstat.ref_domains WHERE target_domain = ?", [target]).fetchall()]
            assert len(rows) == len(set(rows)) and set(rows) == truth(emulator, target), target
        statuses = dict(con.execute("SELECT target_domain, status FROM serpstat.snapshots").fetchall())
    assert statuses == {"first.com": "complete", "second.com": "complete", "third.com": "complete"}
    assert "already_complete" in rerun.stdout
    assert f"credits spent: {snapshot_cost(3000) + snapshot_cost(500)}" in rerun.stdout


def test_run_prints_a_table_and_exit_code_1_on_failure(tmp_path, emulator):
    emulator.set_profile("good.com", 10)
    emulator.faults.add(Fault("api_error", query="down.com", times=-1))
    env = cli_env(tmp_path, emulator, "good.com,down.com")
    done = run_cli(tmp_path, env, "run", "--kind", "full", "--no-models", "--snapshot-date", DAY.isoformat())
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["target", "kind", "date", "status", "rows", "credits"]
    assert lines[1].split() == ["good.com", "full", DAY.isoformat(), "complete", "10", "10"]
    assert lines[2].split()[:4] == ["down.com", "full", DAY.isoformat(), "failed"]
    assert "32016 Large query domains not supported" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, emulator):
    cases = [
        ({"SOURCES__SERPSTAT__API_TOKEN": ""}, [], "token is missing"),
        ({"SOURCES__SERPSTAT__API_TOKEN": "wrong-token"}, [], "Invalid token!"),
        ({"SOURCES__SERPSTAT__DOMAINS": '["https://example.com/page"]'}, [], "is a URL"),
        ({"SOURCES__SERPSTAT__DOMAINS": '["my site.com"]'}, [], "not a domain"),
        ({"SOURCES__SERPSTAT__DOMAINS": "[]"}, [], "no domains to track"),
        ({"SOURCES__SERPSTAT__SEARCH_TYPE": "url"}, [], "search_type 'url' is unknown"),
        ({"SOURCES__SERPSTAT__PAGE_SIZE": "0"}, [], "page_size 0 is out of range"),
        ({"SOURCES__SERPSTAT__PAGE_SIZE": "5000"}, [], "page_size 5000 is out of range"),
        ({"SOURCES__SERPSTAT__COMPLEX_FILTER": "[[{"}, [], "complex_filter is not valid JSON"),
        ({"SOURCES__SERPSTAT__COMPLEX_FILTER": '[[{"field": "check", "compareType": "gt", "value": [1]}]]'},
         [], "complex_filter field 'check' is unknown"),
        ({}, ["--snapshot-date", "2026-13-01"], "is not a date"),
        ({}, ["--kind", "weekly"], "--kind 'weekly' is unknown"),
        ({}, ["--destination", "nowhere"], "destination 'nowhere' is unknown"),
    ]
    for extra, flags, fragment in cases:
        env = cli_env(tmp_path, emulator, '["example.com"]', **extra)
        done = run_cli(tmp_path, env, "run", *flags)
        assert done.returncode == 2, (fragment, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0], (fragment, done.stderr)
        assert "Traceback" not in done.stderr and TOKEN not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a config error wrote files"
    assert ref_requests(emulator) == []


def test_a_package_left_by_a_killed_run_is_loaded_not_fetched_again(tmp_path, emulator):
    """Killed after dlt packaged a snapshot but before it loaded: the next run loads that package
    (no second payment) and still fetches the other snapshots (dlt would otherwise load the
    pending package instead of the new data and silently drop the latter)."""
    import dlt

    from serpstat_refdomains import warehouse
    from serpstat_refdomains.config import Target, filter_hash
    from serpstat_refdomains.paging import SnapshotFetcher, SnapshotSpec
    from serpstat_refdomains.source import ref_domains_resource
    from tests.helpers import fast_client, loaded_domains, run_pipeline

    emulator.set_profile("packed.com", 1500)
    emulator.set_profile("other.com", 700)
    destination = dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb"))
    interrupted = warehouse.make_pipeline(destination, None, str(tmp_path / "pipelines"))
    spec = SnapshotSpec(Target("packed.com", "domain_with_subdomains"), "full", DAY, None,
                        filter_hash(None))
    with fast_client(emulator) as client:
        interrupted.extract(ref_domains_resource([SnapshotFetcher(client, spec)]))
        interrupted.normalize()  # ... and the process dies before load
    assert interrupted.has_pending_data
    emulator.api.clear_log()
    report = run_pipeline(tmp_path, emulator, ["packed.com", "other.com"], kind="full", destination=destination)
    statuses = {str(r.target): r.status for r in report.results}
    assert statuses == {"packed.com": "already_complete", "other.com": "complete"}
    assert {e.query for e in ref_requests(emulator)} == {"other.com"}
    assert len(loaded_domains(tmp_path, "packed.com")) == 1500 and len(loaded_domains(tmp_path, "other.com")) == 700


def test_a_load_job_applied_twice_leaves_no_duplicates(tmp_path, emulator):
    """dlt runs a job again when a crash hits after it ran but before it was marked done. Model
    that by a package whose rows job file appears twice: staging then holds every row twice and
    the merge must still write each row once (found by the chaos test: a whole snapshot doubled)."""
    import shutil

    import dlt

    from serpstat_refdomains import warehouse
    from serpstat_refdomains.config import Target, filter_hash
    from serpstat_refdomains.paging import SnapshotFetcher, SnapshotSpec
    from serpstat_refdomains.source import ref_domains_resource
    from tests.helpers import fast_client, ledger, query

    emulator.set_profile("twice.com", 1500)
    destination = dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb"))
    crashed = warehouse.make_pipeline(destination, None, str(tmp_path / "pipelines"))
    spec = SnapshotSpec(Target("twice.com", "domain_with_subdomains"), "full", DAY, None, filter_hash(None))
    with fast_client(emulator) as client:
        crashed.extract(ref_domains_resource([SnapshotFetcher(client, spec)]))
    crashed.normalize()
    [load_id] = crashed.list_normalized_load_packages()
    jobs = tmp_path / "pipelines" / "serpstat_refdomains" / "load" / "normalized" / load_id / "new_jobs"
    for job in list(jobs.iterdir()):
        if job.name.startswith(("ref_domains.", "snapshots.")):
            name, file_id, retry, ext = job.name.split(".")
            shutil.copy(job, jobs / f"{name}.{file_id}x.{retry}.{ext}")
    crashed.load()
    assert query(tmp_path, "SELECT count(*), count(DISTINCT ref_domain) FROM serpstat.ref_domains") == [(1500, 1500)]
    assert query(tmp_path, "SELECT count(*) FROM serpstat.snapshots") == [(1,)]
    assert ledger(tmp_path, "twice.com")["rows_loaded"] == 1500


def test_a_replayed_job_is_repaired_when_the_run_finishes_the_interrupted_load(tmp_path, emulator):
    """`refdomains run` merges on the snapshot key alone (no per-row deduplication: the cost of a
    load would grow with the history), so a replayed job doubles the rows in the destination;
    the run that finishes the interrupted load must collapse them before planning, and pay
    nothing. Without repair_replayed_snapshots this leaves 3000 rows for 1500 donors."""
    import shutil

    import dlt

    from serpstat_refdomains import warehouse
    from serpstat_refdomains.config import Target, filter_hash
    from serpstat_refdomains.paging import SnapshotFetcher, SnapshotSpec
    from serpstat_refdomains.source import ref_domains_resource
    from tests.helpers import fast_client, ledger, query, run_pipeline

    emulator.set_profile("twice.com", 1500)
    emulator.set_profile("other.com", 300)
    destination = dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb"))
    run_pipeline(tmp_path, emulator, ["other.com"], kind="full", destination=destination)  # tables exist
    crashed = warehouse.make_pipeline(destination, None, str(tmp_path / "pipelines"))
    spec = SnapshotSpec(Target("twice.com", "domain_with_subdomains"), "full", DAY, None, filter_hash(None))
    with fast_client(emulator) as client:
        crashed.extract(ref_domains_resource([SnapshotFetcher(client, spec)], deduplicate_in_merge=False))
    crashed.normalize()
    [load_id] = crashed.list_normalized_load_packages()
    jobs = tmp_path / "pipelines" / "serpstat_refdomains" / "load" / "normalized" / load_id / "new_jobs"
    for job in list(jobs.iterdir()):
        if job.name.startswith("ref_domains."):
            name, file_id, retry, ext = job.name.split(".")
            shutil.copy(job, jobs / f"{name}.{file_id}x.{retry}.{ext}")
    emulator.api.clear_log()
    report = run_pipeline(tmp_path, emulator, ["twice.com", "other.com"], kind="full", destination=destination)
    assert {str(r.target): r.status for r in report.results} == {"twice.com": "already_complete",
                                                                  "other.com": "already_complete"}
    assert emulator.api.credits_charged == 0
    assert query(tmp_path, "SELECT count(*), count(DISTINCT ref_domain) FROM serpstat.ref_domains "
                           "WHERE target_domain = 'twice.com'") == [(1500, 1500)]
    assert query(tmp_path, "SELECT count(*) FROM serpstat.ref_domains WHERE target_domain = 'other.com'") == [(300,)]
    assert ledger(tmp_path, "twice.com")["rows_loaded"] == 1500
    assert query(tmp_path, "SELECT count(*) FROM information_schema.tables WHERE table_name = '_ref_domains_repair'") \
        == [(0,)]


def test_each_folder_keeps_its_own_database_under_one_dlt_data_dir(tmp_path, emulator):
    """dlt would put a relative DuckDB file in the folder where the pipeline FIRST ran: a second
    project (or `refdomains report` run elsewhere) then silently shared the first one's database."""
    emulator.set_profile("one.com", 20)
    emulator.set_profile("two.com", 30)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shared = {"DLT_DATA_DIR": str(tmp_path / "dlt")}
    for folder, domain in ((first, "one.com"), (second, "two.com")):
        env = {**cli_env(folder, emulator, f'["{domain}"]'), **shared}
        done = run_cli(folder, env, "run", "--kind", "full", "--snapshot-date", DAY.isoformat(), "--no-models")
        assert done.returncode == 0, done.stderr
    for folder, domain, rows in ((first, "one.com", 20), (second, "two.com", 30)):
        with duckdb.connect(str(folder / "serpstat_refdomains.duckdb"), read_only=True) as con:
            assert con.execute("SELECT target_domain, count(*) FROM serpstat.ref_domains GROUP BY 1").fetchall() \
                == [(domain, rows)]
