"""One project, one state: each project folder keeps dlt's working state per destination and
dataset, so nothing one project left (pending packages, schema, state, lock) is ever read or
loaded by another, also when they run at the same time; and `serpstat_refdomains.dataset()` reads
exactly what `refdomains run` wrote for the folder it is called in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import psycopg2

from serpstat_refdomains.constants import PIPELINE_NAME
from tests.helpers import (
    PG_URL,
    cli_env,
    drop_dataset,
    needs_postgres,
    pg_rows,
    run_cli,
    run_main,
)


def project(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    return folder


def shared_env(root: Path, emulator, domains: str, **extra: str) -> dict[str, str]:
    """Two projects on one machine: the same dlt data folder, as every project shared before."""
    return {**cli_env(root, emulator, domains, **extra), "DLT_DATA_DIR": str(root / "shared-dlt")}


def targets_in(database: Path) -> list[tuple[str, int]]:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute("SELECT target_domain, count(*) FROM serpstat.ref_domains GROUP BY 1 ORDER BY 1").fetchall()


def test_a_killed_projects_pending_load_is_never_loaded_into_another_project(tmp_path, today_emulator, monkeypatch):
    """Project A is killed while dlt loads its first snapshot (its package pending); project B runs
    next in another folder: B's database holds B's donors only, and A's next run loads A's."""
    from dlt.pipeline.pipeline import Pipeline

    emulator = today_emulator
    emulator.set_profile("client-a.com", 300)
    emulator.set_profile("client-b.com", 200)
    a, b = project(tmp_path, "a"), project(tmp_path, "b")
    real_load = Pipeline.load

    def killed(self, *args, **kwargs):  # what SIGKILL during "Running file loading" leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "load", killed)
    done = run_main(a, shared_env(tmp_path, emulator, "client-a.com"), "run", "--kind", "full")
    assert done.returncode == 1 and "interrupted" in done.stderr
    monkeypatch.setattr(Pipeline, "load", real_load)
    pending = [p for p in (tmp_path / "shared-dlt").rglob("normalized") if any(p.iterdir())]
    assert pending, "A's package waits in A's working folder"

    done = run_cli(b, shared_env(tmp_path, emulator, "client-b.com"), "run", "--kind", "full")
    assert done.returncode == 0, done.stderr
    assert targets_in(b / f"{PIPELINE_NAME}.duckdb") == [("client-b.com", 200)]
    done = run_cli(a, shared_env(tmp_path, emulator, "client-a.com"), "run", "--kind", "full")
    assert done.returncode == 0, done.stderr
    assert targets_in(a / f"{PIPELINE_NAME}.duckdb") == [("client-a.com", 300)]
    assert targets_in(b / f"{PIPELINE_NAME}.duckdb") == [("client-b.com", 200)]


def test_two_projects_running_at_once_each_load_their_own(tmp_path, today_emulator):
    emulator = today_emulator
    emulator.api.latency = 0.02  # both runs overlap for a while
    folders = {}
    for name in ("one", "two"):
        emulator.set_profile(f"{name}.com", 1500)
        folders[name] = project(tmp_path, name)
    procs = {name: subprocess.Popen([sys.executable, "-m", "serpstat_refdomains.cli", "run", "--kind", "full",
                                     "--no-models"], cwd=folder, text=True,
                                    env={**shared_env(tmp_path, emulator, f"{name}.com"),
                                         "SOURCES__SERPSTAT__PAGE_SIZE": "100"},
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for name, folder in folders.items()}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, (name, out, err)
    for name, folder in folders.items():
        assert targets_in(folder / f"{PIPELINE_NAME}.duckdb") == [(f"{name}.com", 1500)]


def test_the_working_folder_is_the_projects_and_a_second_run_of_it_waits_its_turn(tmp_path, today_emulator):
    """Without DLT_DATA_DIR the working state lies in the project (.dlt/pipelines/...), never in
    dlt's global folder; a second run of the same project while one runs fetches nothing."""
    emulator = today_emulator
    emulator.set_profile("own.com", 40)
    folder = project(tmp_path, "own")
    env = {k: v for k, v in cli_env(folder, emulator, "own.com").items() if k != "DLT_DATA_DIR"}
    env["HOME"] = str(tmp_path / "home")  # dlt's global folder, if anything went there
    assert run_cli(folder, env, "run", "--kind", "full").returncode == 0
    working = list((folder / ".dlt" / "pipelines").iterdir())
    assert [p.name.split("__")[:2] for p in working if p.is_dir()] == [["duckdb", "serpstat"]]
    assert not (tmp_path / "home" / ".dlt" / "pipelines").exists()
    lock = next(p for p in (folder / ".dlt" / "pipelines").rglob(f"{PIPELINE_NAME}.lock"))
    import fcntl

    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what the first run holds
        second = run_cli(folder, env, "run", "--kind", "full", "--force")
    assert second.returncode == 2 and "another refdomains run" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1


def test_dataset_reads_this_projects_data_whatever_ran_elsewhere(tmp_path, today_emulator):
    emulator = today_emulator
    emulator.set_profile("here.com", 30)
    emulator.set_profile("elsewhere.com", 50)
    here, elsewhere = project(tmp_path, "here"), project(tmp_path, "elsewhere")
    assert run_cli(here, shared_env(tmp_path, emulator, "here.com"), "run").returncode == 0
    assert run_cli(elsewhere, shared_env(tmp_path, emulator, "elsewhere.com"), "run").returncode == 0
    reader = ("import serpstat_refdomains, json; ds = serpstat_refdomains.dataset(); "
              "print(json.dumps([ds['ref_domains'].select('target_domain').arrow().column(0).unique().to_pylist(), "
              "len(ds['new_ref_domains'].arrow())]))")
    done = subprocess.run([sys.executable, "-c", reader], cwd=here, capture_output=True, text=True,
                          env=shared_env(tmp_path, emulator, "here.com"), timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith('[["here.com"], ')


@needs_postgres
def test_two_postgres_datasets_loaded_at_once_keep_their_own_snapshots(tmp_path, today_emulator, pg_dataset):
    emulator = today_emulator
    emulator.api.latency = 0.02
    other = f"{pg_dataset}_b"
    for name in ("client-a.com", "client-b.com"):
        emulator.set_profile(name, 1200)
    folder = project(tmp_path, "agency")
    procs = []
    for dataset, domain in ((pg_dataset, "client-a.com"), (other, "client-b.com")):
        env = {**shared_env(tmp_path, emulator, domain, DESTINATION__POSTGRES__CREDENTIALS=PG_URL),
               "SOURCES__SERPSTAT__PAGE_SIZE": "100"}
        procs.append(subprocess.Popen([sys.executable, "-m", "serpstat_refdomains.cli", "run", "--kind", "full",
                                       "--no-models", "--destination", "postgres", "--dataset-name", dataset],
                                      cwd=folder, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, (out, err)
        assert pg_rows(pg_dataset, "SELECT target_domain, count(*) FROM {ds}.ref_domains GROUP BY 1") == [
            ("client-a.com", 1200)]
        with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
            cur.execute(f'SELECT target_domain, count(*) FROM "{other}".ref_domains GROUP BY 1')
            assert cur.fetchall() == [("client-b.com", 1200)]
    finally:
        drop_dataset(other)


@needs_postgres
def test_a_postgres_run_leaves_no_warning_in_another_projects_duckdb_runs(tmp_path, today_emulator, pg_dataset):
    """A shared schema file kept PostgreSQL's CSV loader format: every DuckDB run elsewhere then
    warned about it, ~37 times."""
    emulator = today_emulator
    emulator.set_profile("warm.com", 20)
    pg_project, duck_project = project(tmp_path, "pg"), project(tmp_path, "duck")
    env = shared_env(tmp_path, emulator, "warm.com", DESTINATION__POSTGRES__CREDENTIALS=PG_URL,
                     RUNTIME__LOG_LEVEL="WARNING")
    assert run_cli(pg_project, env, "run", "--destination", "postgres", "--dataset-name", pg_dataset).returncode == 0
    done = run_cli(duck_project, env, "run")
    assert done.returncode == 0, done.stderr
    assert "loader_file_format" not in done.stderr and "csv" not in done.stderr.lower()


def test_report_reads_the_folders_database_and_a_dataset_without_snapshots_is_one_line(tmp_path, today_emulator):
    emulator = today_emulator
    emulator.set_profile("shown.com", 25)
    folder = project(tmp_path, "shown")
    env = shared_env(tmp_path, emulator, "shown.com")
    assert run_cli(folder, env, "run", "--no-models").returncode == 0
    # the models were never built: say so, and how to build them
    done = run_cli(folder, env, "report")
    assert done.returncode == 2 and "models are not built yet" in done.stderr and "refdomains models" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli(folder, env, "report", "--dataset-name", "nothing_here")
    assert done.returncode == 2 and "dataset 'nothing_here' holds no snapshots" in done.stderr
    assert run_cli(folder, env, "models").returncode == 0
    assert run_cli(folder, env, "report").returncode == 0
