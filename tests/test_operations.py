"""Operator actions and operational failures (issue 12, items 5-7, 9-12, 17): `--force`,
`--domain`, credits in `status`, the ledger agreeing with the rows, one-line failures, PostgreSQL
without a password, and requests sent after credits ran out."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from pathlib import Path

import dlt
import duckdb
import pytest

from serpstat_refdomains.contract import snapshot_key
from serpstat_refdomains.emulator import Fault
from serpstat_refdomains.emulator.api import GET_STATS
from serpstat_refdomains.paging import PARTITION_ATTEMPTS
from tests.helpers import (
    DAY,
    PG_SERVER_URL,
    PG_URL,
    TOKEN,
    cli_env,
    fast_client,
    ledger,
    loaded_domains,
    needs_postgres,
    pg_rows,
    query,
    ref_requests,
    run_cli,
    run_main,
    run_pipeline,
    snapshot_cost,
    truth,
)

NOTHING = [[{"field": "domain_rank", "compareType": "between", "value": [1000, 2000]}]]  # ranks are 0-100


def rows_of(workdir: Path, key_like: str) -> int:
    return query(workdir, "SELECT count(*) FROM serpstat.ref_domains WHERE snapshot_key LIKE ?", [key_like])[0][0]


def readable(workdir: Path, target: str, kind: str) -> list[tuple]:
    """What the models read of a target: (date, rows) of its readable snapshots."""
    return query(workdir, "SELECT snapshot_date, rows_loaded FROM serpstat.stg_snapshots WHERE target_domain = ? "
                          "AND snapshot_kind = ? ORDER BY snapshot_date", [target, kind])


# --- item 5: --force replaces a snapshot exactly, also by nothing -------------------------------
def test_force_with_an_empty_last_week_result_removes_the_old_rows(tmp_path, emulator):
    run_pipeline(tmp_path, emulator, ["gone.com"], kind="last_week")  # the graph's own donors
    assert rows_of(tmp_path, "gone.com|%|last_week|%") > 0
    emulator.faults.add(Fault("empty", query="gone.com", times=-1))
    forced = run_pipeline(tmp_path, emulator, ["gone.com"], kind="last_week", force=True, build_models=True)
    assert (forced.results[0].status, forced.results[0].rows) == ("complete", 0)
    assert rows_of(tmp_path, "gone.com|%|last_week|%") == 0
    row = ledger(tmp_path, "gone.com", "last_week")
    assert (row["status"], row["rows_loaded"]) == ("complete", 0)
    assert readable(tmp_path, "gone.com", "last_week") == [(DAY, 0)]  # the models read it
    emulator.api.clear_log()
    again = run_pipeline(tmp_path, emulator, ["gone.com"], kind="last_week")
    assert again.results[0].status == "already_complete" and ref_requests(emulator) == []


def test_force_with_an_empty_full_result_removes_the_old_rows(tmp_path, emulator):
    emulator.set_profile("gone.com", 300)
    run_pipeline(tmp_path, emulator, ["gone.com"], kind="full")
    emulator.set_profile("gone.com", 0)
    forced = run_pipeline(tmp_path, emulator, ["gone.com"], kind="full", force=True, build_models=True)
    assert (forced.results[0].status, forced.results[0].rows) == ("complete", 0)
    assert loaded_domains(tmp_path, "gone.com") == []
    assert readable(tmp_path, "gone.com", "full") == [(DAY, 0)]


def test_same_day_filter_change_to_a_filter_matching_nothing_replaces_the_snapshot(tmp_path, emulator):
    emulator.set_profile("filtered.com", 200)
    run_pipeline(tmp_path, emulator, ["filtered.com"], kind="full")
    changed = run_pipeline(tmp_path, emulator, ["filtered.com"], kind="full", build_models=True,
                           settings_options={"complex_filter": NOTHING})
    assert (changed.results[0].status, changed.results[0].rows) == ("complete", 0)
    assert loaded_domains(tmp_path, "filtered.com") == []
    assert readable(tmp_path, "filtered.com", "full") == [(DAY, 0)]


# --- item 6: --force accepts a confirmed-empty full snapshot ------------------------------------
def test_force_accepts_a_confirmed_empty_snapshot_and_every_donor_shows_as_lost(tmp_path, emulator):
    emulator.set_profile("deserted.com", 40)
    run_pipeline(tmp_path, emulator, ["deserted.com"], kind="full")
    before = truth(emulator, "deserted.com")
    later = DAY + dt.timedelta(days=7)
    emulator.today = later
    emulator.set_profile("deserted.com", 0)
    suspect = run_pipeline(tmp_path, emulator, ["deserted.com"], later, kind="full")
    assert suspect.results[0].status == "suspect_empty"
    assert "rerun with --force" in ledger(tmp_path, "deserted.com")["error"]
    emulator.api.clear_log()
    forced = run_pipeline(tmp_path, emulator, ["deserted.com"], later, kind="full", force=True, build_models=True)
    assert forced.results[0].status == "complete" and forced.exit_code == 0
    assert [e.page for e in ref_requests(emulator)] == [1, 1]  # still confirmed by a second try
    row = ledger(tmp_path, "deserted.com")
    assert (row["status"], row["rows_loaded"]) == ("complete", 0)
    lost = query(tmp_path, "SELECT ref_domain, lost_on, last_seen_on FROM serpstat.lost_ref_domains "
                           "WHERE target_domain = 'deserted.com'")
    assert {r[0] for r in lost} == before and len(before) == 40
    assert {(r[1], r[2]) for r in lost} == {(later, DAY)}


# --- item 7: --domain keeps what is configured for the domain -----------------------------------
CONFIGURED = '[{"query": "narrow.com", "search_type": "domain"}, "wide.com"]'


def test_domain_flag_keeps_the_configured_search_type(tmp_path, emulator):
    env = cli_env(tmp_path, emulator, CONFIGURED)
    done = run_cli(tmp_path, env, "run", "--kind", "full", "--no-models", "--domain", "Narrow.com", day=DAY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {(e.query, e.search_type) for e in ref_requests(emulator)} == {("narrow.com", "domain")}
    with duckdb.connect(str(tmp_path / "serpstat_refdomains.duckdb"), read_only=True) as con:
        assert con.execute("SELECT target_domain, search_type FROM serpstat.snapshots").fetchall() == \
            [("narrow.com", "domain")]


def test_domain_flag_for_an_unconfigured_domain_is_a_usage_error(tmp_path, emulator):
    env = cli_env(tmp_path, emulator, CONFIGURED)
    done = run_cli(tmp_path, env, "run", "--domain", "other.com")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "--domain other.com is not configured" in lines[0] and "narrow.com, wide.com" in lines[0]
    assert ref_requests(emulator) == [] and list(tmp_path.iterdir()) == []


# --- item 9: every attempt's credits are kept ---------------------------------------------------
def test_status_credits_equal_what_serpstat_charged_over_failed_forced_and_rerun_attempts(tmp_path, emulator):
    emulator.set_profile("kept.com", 1500)
    emulator.set_profile("flaky.com", 2500)
    env = cli_env(tmp_path, emulator, "kept.com,flaky.com", SOURCES__SERPSTAT__PAGE_SIZE="500")
    full = ["--kind", "full", "--no-models"]
    # the runs and status in this process (cli.main): exit codes and printed lines are main's own
    # flaky.com fails after paying for some pages
    emulator.faults.add(Fault("api_error", query="flaky.com", page=3, times=-1))
    assert run_main(tmp_path, env, "run", *full, day=DAY).returncode == 1
    emulator.faults.clear()
    assert run_main(tmp_path, env, "run", *full, day=DAY).returncode == 0  # the rerun fetches flaky.com again
    # a forced refetch whose result moves twice (incomplete): the complete snapshot stays, it cost
    emulator.faults.add(Fault("insert_rows", query="kept.com", page=2, count=1, times=PARTITION_ATTEMPTS))
    forced = run_main(tmp_path, env, "run", "--force", "--domain", "kept.com", *full, day=DAY)
    assert forced.returncode == 1 and "already loaded is kept" in forced.stdout
    emulator.faults.clear()
    # a forced refetch that fails: no ledger change, but it cost too
    emulator.faults.add(Fault("api_error", query="kept.com", page=2, times=-1))
    assert run_main(tmp_path, env, "run", "--force", "--domain", "kept.com", *full, day=DAY).returncode == 1
    charged = emulator.api.credits_charged
    assert charged > 1500 + 2500 + 1501  # every kind of attempt above paid something
    status = run_main(tmp_path, env, "status", day=DAY)  # this month is the runs' month
    assert status.returncode == 0, status.stderr
    assert f"Credits spent this month: {charged}\n" in status.stdout, (charged, status.stdout)
    with duckdb.connect(str(tmp_path / "serpstat_refdomains.duckdb"), read_only=True) as con:
        statuses = sorted(r[0] for r in con.execute("SELECT status FROM serpstat.snapshot_attempts").fetchall())
        ledger_sum = con.execute("SELECT sum(credits_spent) FROM serpstat.snapshots").fetchall()[0][0]
    assert statuses == ["complete", "complete", "failed", "failed", "incomplete"]
    assert ledger_sum < charged  # the ledger alone keeps only the latest attempt of each snapshot


# --- item 10: a ledger row and its snapshot's rows agree ----------------------------------------
def test_a_snapshot_stopped_without_a_fetch_keeps_no_rows_of_an_earlier_incomplete_attempt(tmp_path, emulator):
    emulator.set_profile("first.com", 2500)
    emulator.set_profile("half.com", 300)
    emulator.faults.add(Fault("insert_rows", query="half.com", page=2, count=1, times=PARTITION_ATTEMPTS))
    run_pipeline(tmp_path, emulator, ["half.com"], kind="full", settings_options={"page_size": 100})
    assert ledger(tmp_path, "half.com")["status"] == "incomplete"
    # An unpartitioned incomplete fetch loads nothing now; rows an older release (or a partitioned
    # fetch's verified partitions) left under the incomplete snapshot are what must not survive.
    with duckdb.connect(str(tmp_path / "refdomains.duckdb")) as con:
        con.execute("INSERT INTO serpstat.ref_domains (snapshot_key, target_domain, search_type, snapshot_date, "
                    "snapshot_kind, ref_domain, domain_from, registrable_domain) "
                    "VALUES ('half.com|domain_with_subdomains|full|' || ?, 'half.com', 'domain_with_subdomains', ?, "
                    "'full', 'left.example', 'left.example', 'left.example')", [str(DAY), DAY])
    assert loaded_domains(tmp_path, "half.com") == ["left.example"]
    emulator.faults.clear()
    # the token stops working during first.com: half.com is not fetched (or its look-ahead is stopped)
    emulator.faults.add(Fault("api_error", query="first.com", page=2, code=403, message="Invalid token!",
                              times=-1),
                        Fault("api_error", query="half.com", code=403, message="Invalid token!", times=-1))
    report = run_pipeline(tmp_path, emulator, ["first.com", "half.com"], kind="full",
                          settings_options={"page_size": 1000})
    assert {str(r.target): r.status for r in report.results} == {"first.com": "failed", "half.com": "failed"}
    row = ledger(tmp_path, "half.com")
    assert row["status"] == "failed" and row["rows_loaded"] == 0
    assert loaded_domains(tmp_path, "half.com") == []


def test_a_ledger_complete_without_its_rows_is_fetched_again(tmp_path, emulator):
    """A crash between the two tables' merges, then a fresh runner (no local dlt state): the
    ledger says complete, the rows are not there. Planning must see it and fetch again."""
    emulator.set_profile("torn.com", 1200)
    emulator.set_profile("whole.com", 100)
    run_pipeline(tmp_path, emulator, ["torn.com", "whole.com"], kind="full")
    with duckdb.connect(str(tmp_path / "refdomains.duckdb")) as con:
        con.execute("DELETE FROM serpstat.ref_domains WHERE target_domain = 'torn.com' AND ref_domain < 'm'")
    shutil.rmtree(tmp_path / "pipelines")
    emulator.api.clear_log()
    report = run_pipeline(tmp_path, emulator, ["torn.com", "whole.com"], kind="full", build_models=True)
    assert {str(r.target): r.status for r in report.results} == {"torn.com": "complete",
                                                                  "whole.com": "already_complete"}
    assert emulator.api.credits_charged == snapshot_cost(1200, first_pull=False)
    assert set(loaded_domains(tmp_path, "torn.com")) == truth(emulator, "torn.com")
    assert ledger(tmp_path, "torn.com")["rows_loaded"] == 1200
    assert readable(tmp_path, "torn.com", "full") == [(DAY, 1200)]


def test_rows_of_another_pull_under_a_complete_ledger_row_are_fetched_again(tmp_path, emulator):
    """A crash between the two tables' merges of a refetch, then a fresh runner: the rows of one
    pull sit under the ledger row of another, as many rows (an outside review reproduced it with
    --force and a kill). Planning sees rows of another pull and fetches again; until then the
    models do not read the snapshot."""
    emulator.set_profile("torn.com", 300)
    run_pipeline(tmp_path, emulator, ["torn.com"], kind="full", build_models=True)
    with duckdb.connect(str(tmp_path / "refdomains.duckdb")) as con:
        con.execute("UPDATE serpstat.ref_domains SET pulled_at = pulled_at + INTERVAL 1 HOUR "
                    "WHERE target_domain = 'torn.com'")
    shutil.rmtree(tmp_path / "pipelines")
    emulator.api.clear_log()
    report = run_pipeline(tmp_path, emulator, ["torn.com"], kind="full", build_models=True)
    assert [r.status for r in report.results] == ["complete"]
    assert emulator.api.credits_charged == snapshot_cost(300, first_pull=False)
    with duckdb.connect(str(tmp_path / "refdomains.duckdb")) as con:
        assert con.execute("SELECT count(*) FROM serpstat.ref_domains loaded JOIN serpstat.snapshots ledger "
                           "USING (snapshot_key) WHERE loaded.pulled_at = ledger.started_at").fetchone() == (300,)
    assert readable(tmp_path, "torn.com", "full") == [(DAY, 300)]


def test_the_rows_check_stays_fast_with_a_year_of_history(tmp_path):
    """The count behind the check reads one day's blocks, however long the history."""
    import time

    from serpstat_refdomains import ledger, warehouse

    database = tmp_path / "year.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE SCHEMA serpstat")
        # 52 weekly days x 100k rows (7 targets), appended day after day as the runs do
        con.execute("CREATE TABLE serpstat.ref_domains AS SELECT DATE '2025-01-06' + 7 * (i // 100000)::INT AS "
                    "snapshot_date, 't' || (i % 7) || '.com|domain_with_subdomains|full|' || "
                    "(DATE '2025-01-06' + 7 * (i // 100000)::INT) AS snapshot_key, 'd' || i AS ref_domain "
                    "FROM range(5200000) r(i)")
    day = dt.date(2025, 1, 6) + dt.timedelta(weeks=51)
    keys = [snapshot_key(f"t{n}.com", "domain_with_subdomains", kind, day)
            for n in range(7) for kind in ("full", "last_week")]
    run = warehouse.make_pipeline(dlt.destinations.duckdb(str(database)), "serpstat", str(tmp_path / "p"))
    ledger.rows_present(run, day, keys)  # warm: the first call pays for opening the file
    started = time.perf_counter()
    counts = ledger.rows_present(run, day, keys)
    elapsed = time.perf_counter() - started
    assert sum(counts.values()) == 100_000 and len(counts) == 7
    assert elapsed < 2.0, elapsed  # 0.05 s measured; the bound leaves room for a loaded CI machine


# --- item 11: one line, the right exit code, what loaded stays loaded ---------------------------
def test_a_models_build_that_fails_after_loading_is_one_line_exit_1_and_keeps_the_snapshots(tmp_path, emulator):
    emulator.set_profile("built.com", 200)
    database = tmp_path / "serpstat_refdomains.duckdb"
    with duckdb.connect(str(database)) as con:  # a user's table pins a model table: its drop must fail
        con.execute("CREATE SCHEMA serpstat")
        con.execute("CREATE TABLE serpstat.new_ref_domains (ref_domain VARCHAR PRIMARY KEY)")
        con.execute("CREATE TABLE serpstat.pinned (ref_domain VARCHAR REFERENCES serpstat.new_ref_domains)")
    env = cli_env(tmp_path, emulator, "built.com")
    done = run_cli(tmp_path, env, "run", "--kind", "full", day=DAY)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0]  # progress lines may precede it
    assert "models could not be rebuilt" in errors[0] and "refdomains models" in errors[0]
    assert "RUNTIME__LOG_LEVEL=DEBUG" in errors[0] and "built.com" in done.stdout and "complete" in done.stdout
    with duckdb.connect(str(database), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM serpstat.ref_domains").fetchall() == [(200,)]
    models = run_cli(tmp_path, env, "models")
    assert models.returncode == 1 and len(models.stderr.strip().splitlines()) == 1, models.stderr
    assert "Traceback" not in models.stderr and "models could not be rebuilt" in models.stderr
    debug = run_cli(tmp_path, {**env, "RUNTIME__LOG_LEVEL": "DEBUG"}, "models")
    assert debug.returncode == 1 and "Traceback" in debug.stderr  # the details, when asked for


def test_an_unreachable_destination_is_one_line_exit_1(tmp_path, emulator):
    env = cli_env(tmp_path, emulator, "example.com",
                  DESTINATION__POSTGRES__CREDENTIALS="postgresql://loader:pw@127.0.0.1:9/nowhere")
    done = run_cli(tmp_path, env, "run", "--destination", "postgres")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "destination 'postgres' at 127.0.0.1:9/nowhere failed" in lines[0] and "run again" in lines[0]
    assert ref_requests(emulator) == [] and TOKEN not in done.stderr and "pw@" not in done.stderr


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs")
def test_a_read_only_disk_is_one_line_exit_1_and_keeps_what_loaded(tmp_path, emulator):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk):
        pytest.skip("tmpfs cannot be mounted here")
    try:
        emulator.set_profile("disk.com", 100)
        env = cli_env(disk, emulator, "disk.com")
        assert run_cli(disk, env, "run", "--kind", "full", day=DAY).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        done = run_cli(disk, env, "run", "--kind", "full", day=DAY + dt.timedelta(days=1))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "Read-only file system" in lines[0] and "run again" in lines[0]
        with duckdb.connect(str(disk / "serpstat_refdomains.duckdb"), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM serpstat.ref_domains").fetchall() == [(100,)]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --- item 12: PostgreSQL without a password -----------------------------------------------------
@needs_postgres
def test_a_postgres_url_without_a_password_loads(tmp_path, emulator, pg_dataset):
    emulator.set_profile("trusted.com", 150)
    passwordless = PG_URL.replace(PG_URL.split("//", 1)[1].split("@", 1)[0],
                                  PG_URL.split("//", 1)[1].split("@", 1)[0].split(":", 1)[0])
    assert ":" not in passwordless.split("//", 1)[1].split("@", 1)[0]
    env = cli_env(tmp_path, emulator, "trusted.com", DESTINATION__POSTGRES__CREDENTIALS=passwordless)
    done = run_cli(tmp_path, env, "run", "--destination", "postgres", "--dataset-name", pg_dataset,
                   "--kind", "full", day=DAY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert pg_rows(pg_dataset, "SELECT count(*) FROM {ds}.ref_domains") == [(150,)]
    assert pg_rows(pg_dataset, "SELECT status FROM {ds}.snapshots") == [("complete",)]


# --- item 17: every request is recorded; each message names its cause ---------------------------
def test_look_ahead_requests_after_credits_run_out_are_recorded(tmp_path, emulator):
    emulator.set_profile("big.com", 2500)
    emulator.set_profile("next.com", 300)
    # big.com's second page waits, so the look-ahead of next.com goes out; then credits run out
    # (the account is shared: someone else spent them after the preflight)
    emulator.faults.add(Fault("delay", query="big.com", page=2, seconds=0.5),
                        Fault("api_error", query="big.com", page=2, code=32012, message="Credits exceeded", times=-1),
                        Fault("api_error", query="next.com", code=32012, message="Credits exceeded", times=-1))
    report = run_pipeline(tmp_path, emulator, ["big.com", "next.com"], kind="full")
    statuses = {str(r.target): r.status for r in report.results}
    assert statuses == {"big.com": "skipped_budget", "next.com": "failed"}
    sent = ref_requests(emulator, "next.com")
    assert sent, "the look-ahead sent nothing: the test did not reproduce the case"
    row = ledger(tmp_path, "next.com")
    assert row["requests"] == len(sent) and row["credits_spent"] == sum(e.charge for e in sent)
    assert "credits are exhausted" in row["error"] and "not fetched" not in row["error"]
    attempts = query(tmp_path, "SELECT sum(requests), sum(credits_spent) FROM serpstat.snapshot_attempts")
    assert attempts == [(len(ref_requests(emulator)), emulator.api.credits_charged)]
    assert report.credits_spent == emulator.api.credits_charged


def test_a_look_ahead_fetched_whole_before_credits_ran_out_is_loaded_not_thrown_away(tmp_path, emulator):
    emulator.set_profile("big.com", 2500)
    emulator.set_profile("next.com", 300)
    emulator.faults.add(Fault("delay", query="big.com", page=2, seconds=0.5),
                        Fault("api_error", query="big.com", page=2, code=32012, message="Credits exceeded", times=-1))
    report = run_pipeline(tmp_path, emulator, ["big.com", "next.com"], kind="full")
    assert {str(r.target): r.status for r in report.results} == {"big.com": "skipped_budget", "next.com": "complete"}
    assert set(loaded_domains(tmp_path, "next.com")) == truth(emulator, "next.com")
    assert ledger(tmp_path, "next.com")["credits_spent"] == snapshot_cost(300)


def test_preflight_with_exhausted_credits_says_so(tmp_path, emulator):
    emulator.faults.add(Fault("api_error", method=GET_STATS, code=32012, message="Credits exceeded", times=-1))
    env = cli_env(tmp_path, emulator, "example.com")
    done = run_cli(tmp_path, env, "run")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "credits are exhausted" in lines[0] and "could not reach" not in lines[0]


def test_a_network_outage_at_the_preflight_is_transient(tmp_path, emulator):
    from serpstat_refdomains.errors import ServiceUnavailable

    emulator.faults.add(Fault("drop", method=GET_STATS, times=-1))
    with pytest.raises(ServiceUnavailable, match=r"could not reach Serpstat.*run again later"):
        run_pipeline(tmp_path, emulator, ["example.com"], kind="full")
    assert ref_requests(emulator) == [] and not (tmp_path / "refdomains.duckdb").exists()


@needs_postgres
def test_a_passwordless_url_still_lets_libpq_read_pgpass(tmp_path, monkeypatch):
    """The empty password filled in is 'none given' to libpq: .pgpass is still asked."""
    import psycopg2

    from serpstat_refdomains.warehouse import resolve_destination

    user_host = PG_SERVER_URL.split("//", 1)[1]  # a .pgpass line names the database alone
    user, rest = user_host.split("@", 1)
    passfile = tmp_path / "pgpass"
    host_port, database = rest.split("/", 1)
    host, _, port = host_port.partition(":")
    passfile.write_text(f"{host}:{port or 5432}:{database}:{user.split(':')[0]}:from-pgpass\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", f"postgresql://{user.split(':')[0]}@{rest}")
    credentials = resolve_destination("postgres").config_params["credentials"]
    assert credentials.password == ""
    with psycopg2.connect(credentials.to_native_representation()) as con:
        assert con.info.password == "from-pgpass"


# --- found by the chaos test under load: a run killed while dlt was writing its package ---------
def test_a_package_left_half_written_by_a_killed_extract_does_not_stop_the_next_run(tmp_path, emulator):
    from serpstat_refdomains import warehouse
    from serpstat_refdomains.config import filter_hash
    from serpstat_refdomains.paging import SnapshotFetcher
    from serpstat_refdomains.source import ref_domains_resource
    from serpstat_refdomains.spec import SnapshotSpec
    from serpstat_refdomains.targets import Target

    emulator.set_profile("cut.com", 300)
    destination = dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb"))
    killed = warehouse.make_pipeline(destination, None, str(tmp_path / "pipelines"))
    spec = SnapshotSpec(Target("cut.com", "domain_with_subdomains"), "full", DAY, None, filter_hash(None))
    with fast_client(emulator) as client:
        killed.extract(ref_domains_resource([SnapshotFetcher(client, spec)]))
    [load_id] = killed.list_extracted_load_packages()
    # the state a SIGKILL leaves when it lands before dlt wrote the package's job list
    shutil.rmtree(tmp_path / "pipelines" / "serpstat_refdomains" / "normalize" / "extracted" / load_id / "new_jobs")
    emulator.api.clear_log()
    report = run_pipeline(tmp_path, emulator, ["cut.com"], kind="full", destination=destination)
    assert report.results[0].status == "complete" and emulator.api.credits_charged == snapshot_cost(300)
    assert set(loaded_domains(tmp_path, "cut.com")) == truth(emulator, "cut.com")


# --- operator actions spend only what they name, and never leave a half-done replacement -------
def test_force_with_a_domain_refetches_that_domain_not_its_competitors(tmp_path, emulator):
    """`--domain mysite.com --force` refetched its two competitors too: 5,878 credits, not 269."""
    for name, size in (("mysite.com", 260), ("rival-a.com", 2800), ("rival-b.com", 2800)):
        emulator.set_profile(name, size)
    domains = '[{"query": "mysite.com", "competitors": ["rival-a.com", "rival-b.com"]}]'
    env = cli_env(tmp_path, emulator, domains)
    assert run_cli(tmp_path, env, "run", "--kind", "full", "--no-models", day=DAY).returncode == 0
    emulator.api.clear_log()
    done = run_cli(tmp_path, env, "run", "--kind", "full", "--no-models", "--domain", "mysite.com", "--force", day=DAY)
    assert done.returncode == 0, done.stderr
    assert {e.query for e in ref_requests(emulator)} == {"mysite.com"}
    assert emulator.api.credits_charged == snapshot_cost(260, first_pull=False)
    statuses = {line.split()[0]: line.split()[-3] for line in done.stdout.splitlines()[1:4]}
    assert statuses == {"mysite.com": "complete", "rival-a.com": "already_complete", "rival-b.com": "already_complete"}


def test_a_full_snapshot_day_pulls_no_last_week(tmp_path, emulator):
    """On a day that pulls a full snapshot, the last_week pull cost credits and added nothing a
    model uses: the full snapshot holds every donor it lists. The days between pull it."""
    emulator.set_profile("weekly.com", 120)
    report = run_pipeline(tmp_path, emulator, ["weekly.com"])  # auto: the first full snapshot
    assert [r.kind for r in report.results] == ["full"]
    day = DAY + dt.timedelta(days=1)
    emulator.today = day
    report = run_pipeline(tmp_path, emulator, ["weekly.com"], day)
    assert [r.kind for r in report.results] == ["last_week"]
    day = DAY + dt.timedelta(days=7)
    emulator.today = day
    report = run_pipeline(tmp_path, emulator, ["weekly.com"], day)
    assert [r.kind for r in report.results] == ["full"]


def test_a_forced_empty_replacement_cut_before_its_last_delete_heals(tmp_path, emulator, monkeypatch):
    """`--force` when Serpstat now answers empty, cut before the delete that removes the old rows:
    the ledger said complete with 0 rows while 2,900 old rows stayed, every rerun said
    already_complete and lost_ref_domains stayed 0 instead of 2,900, forever."""
    from serpstat_refdomains import ledger as ledger_module

    emulator.set_profile("gone.com", 2900)
    run_pipeline(tmp_path, emulator, ["gone.com"], kind="full")
    later = DAY + dt.timedelta(days=7)
    emulator.today = later
    run_pipeline(tmp_path, emulator, ["gone.com"], later, kind="full")  # complete, 2,900 rows
    emulator.set_profile("gone.com", 0)  # later the same day, every donor went
    real_delete = ledger_module.delete_snapshot_rows

    def cut(*args, **kwargs):  # the process dies where the empty result's old rows would go
        raise KeyboardInterrupt

    monkeypatch.setattr(ledger_module, "delete_snapshot_rows", cut)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tmp_path, emulator, ["gone.com"], later, kind="full", force=True)
    monkeypatch.setattr(ledger_module, "delete_snapshot_rows", real_delete)
    row = ledger(tmp_path, "gone.com")
    assert (row["status"], row["rows_loaded"], str(row["snapshot_date"])) == ("complete", 0, str(later))
    assert len(loaded_domains(tmp_path, "gone.com", day=later)) == 2900, "the cut left the old rows"
    emulator.api.clear_log()
    report = run_pipeline(tmp_path, emulator, ["gone.com"], later, kind="full", build_models=True)
    assert [r.status for r in report.results] == ["already_complete"] and ref_requests(emulator) == []
    assert loaded_domains(tmp_path, "gone.com", day=later) == []
    assert query(tmp_path, "SELECT count(*) FROM serpstat.lost_ref_domains WHERE lost_on = ?", [later]) == [(2900,)]
