"""PostgreSQL end to end, portable models, concurrent runs, fresh runners.

PostgreSQL tests skip (with the reason) when no server is reachable, except under
REFDOMAINS_REQUIRE_POSTGRES=1 (set by .ci/run), where an unreachable server is a failure.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading

import dlt
import psycopg2
import pytest

from serpstat_refdomains import recovery, warehouse
from serpstat_refdomains.emulator.graph import Profile
from serpstat_refdomains.errors import ConcurrentRunError
from serpstat_refdomains.models import model_names
from tests.helpers import (
    _PG_ERROR,
    DAY,
    PG_URL,
    drop_dataset,
    fast_client,
    model_rows,
    needs_postgres,
    pg_rows,
    postgres,
    query,
    ref_requests,
    run_pipeline,
    snapshot_cost,
    truth,
    warehouse_of,
)
from tests.scenarios import golden_duckdb, replay_golden

PULL_TIME_COLUMNS = {"started_at", "snapshot_version", "pair_key"}


@pytest.fixture(scope="module")
def duckdb_golden(tmp_path_factory):
    return golden_duckdb(tmp_path_factory)[0]  # replayed once a session, shared with test_models


@needs_postgres
def test_models_are_identical_on_postgres(duckdb_golden, tmp_path, pg_dataset):
    _fulls, _pulls, statuses = replay_golden(tmp_path, destination=postgres(), dataset_name=pg_dataset)
    assert "incomplete" in statuses.values() and "suspect_empty" in statuses.values()
    for model in model_names():
        # the two runs pulled at other times: columns of pull times and keys made of them differ
        columns = [r[0] for r in query(duckdb_golden, "SELECT column_name FROM information_schema.columns "
                                                      "WHERE table_schema = 'serpstat' AND table_name = ? "
                                                      "ORDER BY ordinal_position", [model])
                   if r[0] not in PULL_TIME_COLUMNS]
        select = ", ".join(columns)
        expected = sorted(query(duckdb_golden, f"SELECT {select} FROM serpstat.{model}"), key=repr)
        got = sorted(pg_rows(pg_dataset, f"SELECT {select} FROM {{ds}}.{model}"), key=repr)
        assert got == expected, model
        # the golden timeline tracks no competitors: the link-gap models are compared on a scenario
        # of their own (tests/test_link_gap.py, DuckDB against PostgreSQL and the reference)
        assert expected or model.startswith("stg_") or "link_gap" in model, \
            f"{model} is empty: the comparison proves nothing"
    # raw tables too: the same rows landed
    assert pg_rows(pg_dataset, "SELECT count(*) FROM {ds}.ref_domains") == \
        query(duckdb_golden, "SELECT count(*) FROM serpstat.ref_domains")
    # the report reads the same from both, and its headline adds up across the full snapshots
    # the models compare around (the incomplete and the suspect_empty one)
    from serpstat_refdomains import report
    on_duckdb = report.collect(warehouse.make_pipeline(
        dlt.destinations.duckdb(str(duckdb_golden / "refdomains.duckdb")), None, str(duckdb_golden / "pipelines")))
    on_postgres = report.collect(warehouse.make_pipeline(postgres(), pg_dataset, str(tmp_path / "pipelines")))
    [golden] = on_duckdb.series
    assert [s.summary.change for s in on_postgres.series] == [golden.summary.change]
    for part in ("new", "lost", "last_week_only"):
        assert sorted((r["ref_domain"], r["counted_on"]) for r in on_postgres.rows(part)) == \
            sorted((r["ref_domain"], r["counted_on"]) for r in on_duckdb.rows(part)), part
    sizes = [n for (n,) in query(duckdb_golden, "SELECT rows_loaded FROM serpstat.snapshots WHERE snapshot_kind = "
                                               "'full' AND status = 'complete' ORDER BY snapshot_date")]
    change = golden.summary.change
    assert (change.size_start, change.size_end, len(golden.summary.steps)) == (sizes[0], sizes[-1], len(sizes) - 1)
    assert change.new - change.lost == change.size_end - change.size_start


@needs_postgres
def test_datasets_are_separate_schemas(tmp_path, emulator, pg_dataset):
    other = f"{pg_dataset}_b"
    emulator.set_profile("one.com", 30)
    emulator.set_profile("two.com", 40)
    try:
        run_pipeline(tmp_path / "a", emulator, ["one.com"], kind="full", destination=postgres(),
                     dataset_name=pg_dataset)
        run_pipeline(tmp_path / "b", emulator, ["two.com"], kind="full", destination=postgres(),
                     dataset_name=other)
        assert pg_rows(pg_dataset, "SELECT DISTINCT target_domain FROM {ds}.ref_domains") == [("one.com",)]
        assert pg_rows(other, "SELECT DISTINCT target_domain FROM {ds}.ref_domains") == [("two.com",)]
        assert pg_rows(pg_dataset, "SELECT count(*) FROM {ds}.ref_domains") == [(30,)]
    finally:
        drop_dataset(other)


def _two_runs_at_once(tmp_path, emulator, **destination_options):
    """Start a run that stalls on a slow page, start a second one meanwhile; return both outcomes."""
    from serpstat_refdomains.emulator import Fault
    emulator.set_profile("slow.com", 2500)
    emulator.faults.add(Fault("delay", query="slow.com", page=2, seconds=3))
    outcome: dict = {}

    def first():
        outcome["first"] = run_pipeline(tmp_path / "one", emulator, ["slow.com"], kind="full",
                                        **destination_options)

    thread = threading.Thread(target=first)
    thread.start()
    deadline = dt.datetime.now() + dt.timedelta(seconds=30)
    while not any(e.page == 2 for e in ref_requests(emulator)) and dt.datetime.now() < deadline:
        threading.Event().wait(0.05)
    with pytest.raises(ConcurrentRunError, match="another refdomains run is loading") as second:
        run_pipeline(tmp_path / "two", emulator, ["slow.com"], kind="full", **destination_options)
    thread.join(timeout=60)
    return outcome["first"], second.value


def test_two_runs_at_once_on_duckdb(tmp_path, emulator):
    database = tmp_path / "shared.duckdb"
    first, _ = _two_runs_at_once(tmp_path, emulator, destination=dlt.destinations.duckdb(str(database)))
    assert first.results[0].status == "complete"
    assert sum(e.charge for e in ref_requests(emulator)) == snapshot_cost(2500)  # the second fetched nothing
    import duckdb
    with duckdb.connect(str(database), read_only=True) as con:
        rows = [r[0] for r in con.execute("SELECT ref_domain FROM serpstat.ref_domains").fetchall()]
    assert len(rows) == len(set(rows)) == 2500


@needs_postgres
def test_two_runs_at_once_on_postgres(tmp_path, emulator, pg_dataset):
    first, _ = _two_runs_at_once(tmp_path, emulator, destination=postgres(), dataset_name=pg_dataset)
    assert first.results[0].status == "complete"
    assert sum(e.charge for e in ref_requests(emulator)) == snapshot_cost(2500)
    assert pg_rows(pg_dataset, "SELECT count(*), count(DISTINCT ref_domain) FROM {ds}.ref_domains") == [(2500, 2500)]


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_fresh_runner_without_local_state_pays_nothing_again(tmp_path, emulator, warehouse, request):
    if warehouse == "postgres":
        if _PG_ERROR:
            pytest.skip(f"no PostgreSQL: {_PG_ERROR}")
        dataset = request.getfixturevalue("pg_dataset")
        options = {"destination": postgres(), "dataset_name": dataset}
    else:
        options = {"destination": dlt.destinations.duckdb(str(tmp_path / "kept.duckdb"))}
    emulator.set_profile("fresh.com", 1200)
    run_pipeline(tmp_path, emulator, ["fresh.com"], kind="full", **options)
    shutil.rmtree(tmp_path / "pipelines")  # a new CI runner: no local pipeline folder
    emulator.api.clear_log()
    again = run_pipeline(tmp_path, emulator, ["fresh.com"], kind="full", **options)
    assert ref_requests(emulator) == [] and again.credits_spent == 0
    assert again.results[0].status == "already_complete"
    emulator.today = DAY + dt.timedelta(days=7)
    later = run_pipeline(tmp_path, emulator, ["fresh.com"], DAY + dt.timedelta(days=7), kind="full", **options)
    assert later.results[0].status == "complete"
    if warehouse == "postgres":
        counts = pg_rows(options["dataset_name"], "SELECT snapshot_date, count(*), count(DISTINCT ref_domain) "
                                                  "FROM {ds}.ref_domains GROUP BY 1 ORDER BY 1")
    else:
        import duckdb
        with duckdb.connect(str(tmp_path / "kept.duckdb"), read_only=True) as con:
            counts = con.execute("SELECT snapshot_date, count(*), count(DISTINCT ref_domain) FROM "
                                 "serpstat.ref_domains GROUP BY 1 ORDER BY 1").fetchall()
    assert counts == [(DAY, 1200, 1200), (DAY + dt.timedelta(days=7), 1200, 1200)]


@needs_postgres
def test_postgres_loads_through_csv_copy(tmp_path, emulator, pg_dataset):
    emulator.set_profile("copy.com", 50)
    with fast_client(emulator) as client:
        run_pipeline(tmp_path, emulator, ["copy.com"], kind="full", destination=postgres(), dataset_name=pg_dataset,
                     client=client)
    destination_pipeline = warehouse.make_pipeline(postgres(), pg_dataset, str(tmp_path / "pipelines"))
    assert warehouse.loader_file_format(destination_pipeline) == "csv"
    trace = destination_pipeline.last_trace
    formats = {job.job_file_info.table_name: job.job_file_info.file_format
               for package in trace.last_normalize_info.load_packages for job in package.jobs["new_jobs"]
               if not job.job_file_info.table_name.startswith("_dlt")}
    # dlt's own state rows are dicts (insert_values); our arrow pages go through COPY
    assert formats == {"ref_domains": "csv", "snapshots": "csv", "snapshot_attempts": "csv"}
    assert set(r[0] for r in pg_rows(pg_dataset, "SELECT ref_domain FROM {ds}.ref_domains")) == \
        truth(emulator, "copy.com")


@needs_postgres
def test_rows_doubled_by_a_replayed_job_are_repaired_on_postgres(tmp_path, emulator, pg_dataset):
    """repair_replayed_snapshots runs portable SQL (scratch table, DISTINCT, one transaction a
    key): on PostgreSQL too it restores a doubled snapshot exactly and leaves the others alone."""
    emulator.set_profile("twice.com", 400)
    emulator.set_profile("once.com", 120)
    with fast_client(emulator) as client:
        run_pipeline(tmp_path, emulator, ["twice.com", "once.com"], kind="full", destination=postgres(),
                     dataset_name=pg_dataset, client=client)
    before = pg_rows(pg_dataset, "SELECT * FROM {ds}.ref_domains ORDER BY snapshot_key, ref_domain")
    pg_rows(pg_dataset, "INSERT INTO {ds}.ref_domains SELECT * FROM {ds}.ref_domains "
                        "WHERE target_domain = 'twice.com' RETURNING 1")
    destination_pipeline = warehouse.make_pipeline(postgres(), pg_dataset, str(tmp_path / "pipelines"))
    repaired = recovery.repair_replayed_snapshots(destination_pipeline)
    assert [key.split("|")[0] for key in repaired] == ["twice.com"]
    assert pg_rows(pg_dataset, "SELECT * FROM {ds}.ref_domains ORDER BY snapshot_key, ref_domain") == before
    assert recovery.repair_replayed_snapshots(destination_pipeline) == []


def _ref_domains_merge_sql(workdir) -> str:
    """The merge statement dlt ran for ref_domains in the pipeline's last load package."""
    loaded = sorted((workdir / "pipelines").glob("*/load/loaded/*"))
    for package in reversed(loaded):
        for job in package.glob("completed_jobs/ref_domains.*.sql"):
            return job.read_text()
    raise AssertionError(f"no ref_domains merge job among {len(loaded)} loaded packages")


@needs_postgres
def test_postgres_replaces_a_snapshot_through_the_snapshot_key_index(tmp_path, emulator, pg_dataset):
    """Each snapshot's merge deletes its old rows by the key's index, not by scanning the history
    (dlt's EXISTS delete scanned all of ref_domains per snapshot: weekly runs slowed every week)."""
    for target, size in (("idx-a.com", 300), ("idx-b.com", 200)):
        emulator.set_profile(target, size)
    second = DAY + dt.timedelta(days=7)
    with fast_client(emulator) as client:
        for day in (DAY, second):
            emulator.today = day
            run_pipeline(tmp_path, emulator, ["idx-a.com", "idx-b.com"], day, kind="full",
                         destination=postgres(), dataset_name=pg_dataset, client=client)
        run_pipeline(tmp_path, emulator, ["idx-a.com"], second, kind="full", force=True,
                     destination=postgres(), dataset_name=pg_dataset, client=client)

    counts = pg_rows(pg_dataset, "SELECT target_domain, snapshot_date, count(*), count(DISTINCT ref_domain) "
                                 "FROM {ds}.ref_domains GROUP BY 1, 2 ORDER BY 1, 2")
    assert counts == [(target, day, len(truth(emulator, target, day)), len(truth(emulator, target, day)))
                      for target in ("idx-a.com", "idx-b.com") for day in (DAY, second)]
    assert pg_rows(pg_dataset, "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = "
                               "'ref_domains'", (pg_dataset,)) == \
        [(f'CREATE INDEX ref_domains_snapshot_key ON {pg_dataset}.ref_domains USING btree (snapshot_key)',)]

    # the delete dlt ran for the forced rerun, planned on the real table: by the index
    merge = _ref_domains_merge_sql(tmp_path)
    delete = next(statement for statement in merge.split(";\n") if statement.lstrip().upper().startswith("DELETE"))
    assert "= ANY (ARRAY(SELECT DISTINCT snapshot_key FROM" in delete
    with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
        cur.execute(f"EXPLAIN (FORMAT JSON) {delete}")
        plan = cur.fetchone()[0][0]["Plan"]
        con.rollback()
    assert plan["Node Type"] == "ModifyTable" and plan["Relation Name"] == "ref_domains", plan
    # the staging keys are read once (an InitPlan); the history itself only through the index
    (history,) = [child for child in plan["Plans"] if child.get("Parent Relationship") != "InitPlan"]
    scans = [history, *history.get("Plans", [])]
    assert any(node.get("Index Name") == "ref_domains_snapshot_key" for node in scans), plan
    assert not any(node["Node Type"] == "Seq Scan" for node in scans), plan


@needs_postgres
def test_a_loader_role_that_cannot_index_the_table_still_loads(tmp_path, emulator, pg_dataset, caplog):
    """Only a table's owner may index it: a role that may write the dataset but does not own
    `ref_domains` gets one warning and loads correctly, by dlt's slower delete."""
    emulator.set_profile("owner.com", 40)
    second = DAY + dt.timedelta(days=7)
    run_pipeline(tmp_path, emulator, ["owner.com"], DAY, kind="full", destination=postgres(), dataset_name=pg_dataset)
    role = f"{pg_dataset}_loader"
    with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" LOGIN')
        for schema in (pg_dataset, f"{pg_dataset}_staging"):
            cur.execute(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{role}"')
            cur.execute(f'GRANT ALL ON ALL TABLES IN SCHEMA "{schema}" TO "{role}"')
    try:
        as_loader = PG_URL.replace("postgresql://postgres:", f"postgresql://{role}:")
        emulator.today = second
        with caplog.at_level("WARNING"):
            report = run_pipeline(tmp_path, emulator, ["owner.com"], second, kind="full",
                                  destination=dlt.destinations.postgres(as_loader), dataset_name=pg_dataset)
        assert [r.status for r in report.results] == ["complete"]
        assert pg_rows(pg_dataset, "SELECT snapshot_date, count(*) FROM {ds}.ref_domains GROUP BY 1 ORDER BY 1") == \
            [(DAY, len(truth(emulator, "owner.com", DAY))), (second, len(truth(emulator, "owner.com", second)))]
        assert pg_rows(pg_dataset, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = "
                                   "'ref_domains'", (pg_dataset,)) == [(0,)]
        warnings = [r.getMessage() for r in caplog.records if "ref_domains_snapshot_key" in r.getMessage()]
        assert len(warnings) == 1 and "loads stay correct but slower" in warnings[0], warnings
    finally:
        with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
            cur.execute(f'DROP OWNED BY "{role}" CASCADE')
            cur.execute(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("warehouse", ["duckdb", pytest.param("postgres", marks=needs_postgres)])
def test_incremental_models_equal_a_full_refresh_after_reloads_and_readable_again(tmp_path, emulator, warehouse,
                                                                                   request):
    """Weekly runs with models built after each, as a schedule runs them, where a full snapshot
    between two others is unreadable for a while (its rows and ledger disagreed) and readable
    again later; then today's full snapshot pulled again with --force after the index moved (other
    rows under the same key). Every model, incremental, equals `refdomains models --full-refresh`
    on the same tables, row for row, on DuckDB and PostgreSQL."""
    from serpstat_refdomains import models
    from serpstat_refdomains.warehouse import make_pipeline

    dataset, destination = warehouse_of(warehouse, tmp_path, request)
    emulator.graph.set_profile("weekly.com", Profile(base_size=150))
    options = {"destination": destination, "dataset_name": dataset, "build_models": True}
    pipeline = make_pipeline(destination, dataset, str(tmp_path / "pipelines"))
    between = DAY + dt.timedelta(days=10)

    def readable(day: dt.date, status: str) -> None:  # the ledger row that decides whether models read it
        with pipeline.sql_client() as client:
            client.execute_sql(f"UPDATE {client.make_qualified_table_name('snapshots')} SET status = %s "
                               "WHERE snapshot_date = %s AND snapshot_kind = 'full'", status, day)

    with fast_client(emulator) as client:
        days = [DAY, DAY + dt.timedelta(weeks=1), between, DAY + dt.timedelta(weeks=2), DAY + dt.timedelta(weeks=3)]
        for day in days:
            emulator.today = day
            for kind in ("full", "last_week"):
                run_pipeline(tmp_path, emulator, ["weekly.com"], day, client=client, kind=kind, **options)
            if day == between:
                readable(between, "incomplete")  # models built from now on compare around it
        readable(between, "complete")
        # the index moved on: today's full snapshot pulled again holds other donors under its key
        emulator.graph.add_named("weekly.com", ["moved-on.example", "another.example"], days[-1], rank=30)
        again = run_pipeline(tmp_path, emulator, ["weekly.com"], days[-1], client=client, kind="full", force=True,
                             **options)
    assert [r.status for r in again.results] == ["complete"]
    incremental = model_rows(pipeline)
    models.build(pipeline, full_refresh=True)
    rebuilt = model_rows(pipeline)
    assert incremental == rebuilt
    # the history exercises what the comparisons keep: losses, and a pull's detections
    assert rebuilt["lost_ref_domains"] and rebuilt["int_last_week_additions"]
    assert len({row[0] for row in rebuilt["int_snapshot_pairs"]}) == 5 + 5  # F0..F4 and a last_week pull each
