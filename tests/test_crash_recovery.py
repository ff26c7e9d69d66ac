"""Crashes: a run killed mid-fetch, a load package left behind, a load job applied twice. The next
run loads what was paid for, fetches only what is missing, and leaves no row twice."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import dlt
import duckdb

from serpstat_refdomains import warehouse
from serpstat_refdomains.config import filter_hash
from serpstat_refdomains.emulator import Fault
from serpstat_refdomains.paging import SnapshotFetcher
from serpstat_refdomains.source import ref_domains_resource
from serpstat_refdomains.spec import SnapshotSpec
from serpstat_refdomains.targets import Target
from tests.helpers import (
    DAY,
    cli_env,
    fast_client,
    ledger,
    loaded_domains,
    query,
    ref_requests,
    refdomains_on,
    run_cli,
    run_pipeline,
    snapshot_cost,
    truth,
)


def test_killed_mid_run_then_rerun_pays_nothing_twice(tmp_path, emulator):
    for name, size in (("first.com", 2500), ("second.com", 3000), ("third.com", 500)):
        emulator.set_profile(name, size)
    # second.com pages crawl, so the kill lands while it is in flight
    emulator.faults.add(Fault("delay", query="second.com", page=2, seconds=30, times=1))
    env = cli_env(tmp_path, emulator, '["first.com", "second.com", "third.com"]')
    proc = subprocess.Popen([*refdomains_on(DAY), "run", "--kind", "full", "--no-models"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # kill once first.com's load package is committed, while second.com still waits on its page
    deadline = time.monotonic() + 60
    # (on a busy machine first.com's load can commit before second.com's first request is sent)
    while not (any(loaded.iterdir() for loaded in tmp_path.glob("dlt/refdomains/*/*/serpstat_refdomains/load/loaded"))
               and any(e.query == "second.com" for e in emulator.log)):
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.05)
    assert proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    charged_before = {q: sum(e.charge for e in ref_requests(emulator, q)) for q in ("first.com", "second.com")}
    assert charged_before["first.com"] == snapshot_cost(2500)

    emulator.faults.clear()
    emulator.api.clear_log()
    rerun = run_cli(tmp_path, env, "run", "--kind", "full", "--no-models", day=DAY)
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




def test_a_package_left_by_a_killed_run_is_loaded_not_fetched_again(tmp_path, emulator):
    """Killed after dlt packaged a snapshot but before it loaded: the next run loads that package
    (no second payment) and still fetches the other snapshots (dlt would otherwise load the
    pending package instead of the new data and silently drop the latter)."""
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
