"""The models as dlt and SQL clients see them: listed and read through dlt's own dataset API,
documented in the warehouse, and with exactly the columns and types each model's doc file declares
(sql/<layer>/<model>.toml, beside its SQL).

Each test reads models built, then followed by another load (a `last_week` pull a week later, no
model build): a later load must neither break nor hide the models. The tests that only read share
one such history per warehouse (built once a module; DuckDB's copied into each test's folder).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import dlt
import psycopg2
import pytest
from dlt.common.schema.utils import new_table

from serpstat_refdomains import constants, models
from serpstat_refdomains.contract import LOADED_TABLES, TARGET_COMPETITORS
from serpstat_refdomains.emulator import Profile, SerpstatEmulator
from serpstat_refdomains.models import NAMES_READ_TABLE, NAMES_TABLE, catalog, docs, model_names
from serpstat_refdomains.warehouse import destination_dialect, make_pipeline
from tests.helpers import (
    DAY,
    PG_URL,
    TOKEN,
    drop_dataset,
    fast_client,
    needs_postgres,
    pg_rows,
    postgres,
    query,
    run_pipeline,
    warehouse_of,
    weekly_full_runs,
)

MODELS = [NAMES_TABLE, NAMES_READ_TABLE, *model_names()]
VIEWS = [m.name for m in models.load_models() if m.materialized == "view"]
DUCKDB_TYPES = {"VARCHAR": "text", "BIGINT": "bigint", "DATE": "date", "BOOLEAN": "bool",
                "TIMESTAMP WITH TIME ZONE": "timestamp"}
POSTGRES_TYPES = {"character varying": "text", "text": "text", "bigint": "bigint", "date": "date", "boolean": "bool",
                  "timestamp with time zone": "timestamp"}


def _build_then_load_again(tmp_path, emulator, **destination):
    """Two full snapshots (so new and lost have rows) with models built, then a load without."""
    emulator.graph.set_profile("catalog.com", Profile(base_size=150))  # churns: new and lost rows
    with fast_client(emulator) as client:
        for week in range(2):
            emulator.today = DAY + dt.timedelta(weeks=week)
            run_pipeline(tmp_path, emulator, ["catalog.com"], emulator.today, client=client, kind="full",
                         build_models=True, **destination)
        emulator.today = DAY + dt.timedelta(weeks=2)
        later = run_pipeline(tmp_path, emulator, ["catalog.com"], emulator.today, client=client, kind="last_week",
                             build_models=False, **destination)
    assert [r.status for r in later.results] == ["complete"]


@pytest.fixture(scope="module")
def built_in_duckdb(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("catalog-duckdb")
    with SerpstatEmulator(token=TOKEN, today=DAY, seed=7) as emulator:
        _build_then_load_again(folder, emulator, destination=dlt.destinations.duckdb(str(folder / "refdomains.duckdb")))
    return folder


@pytest.fixture
def duckdb_history(built_in_duckdb, tmp_path) -> Path:
    """A folder of this test's own holding `_build_then_load_again`'s DuckDB file and pipelines."""
    shutil.copytree(built_in_duckdb, tmp_path, dirs_exist_ok=True)
    return tmp_path


@pytest.fixture(scope="module")
def postgres_history(tmp_path_factory):
    """(folder with the pipelines, dataset) of `_build_then_load_again` on PostgreSQL, read only."""
    folder, dataset = tmp_path_factory.mktemp("catalog-postgres"), f"rd_test_{uuid.uuid4().hex[:10]}"
    try:
        with SerpstatEmulator(token=TOKEN, today=DAY, seed=7) as emulator:
            _build_then_load_again(folder, emulator, destination=postgres(), dataset_name=dataset)
        yield folder, dataset
    finally:
        drop_dataset(dataset)


def _read_every_model(dataset: dlt.Dataset, counts: dict[str, int]) -> None:
    assert set(MODELS) <= set(dataset.tables)
    for name in MODELS:
        table = dataset[name].arrow()
        assert table.column_names == [c.name for c in catalog()[name].columns], name
        assert table.num_rows == counts[name], name
        # SQL through the dataset, in DuckDB's dialect, transpiled by dlt for the warehouse
        assert dataset(f"SELECT count(*) AS n FROM {name}").fetchall() == [(counts[name],)], name
        schema_table = dataset.schema.tables[name]
        assert schema_table["description"] == catalog()[name].description
        assert [c.get("description") for c in schema_table["columns"].values()] == \
            [c.description for c in catalog()[name].columns]
    assert counts["new_ref_domains"] and counts["lost_ref_domains"], "empty models prove nothing"


def test_every_model_is_read_through_dlt_dataset_after_another_load(duckdb_history):
    tmp_path = duckdb_history
    database = str(tmp_path / "refdomains.duckdb")
    counts = {name: query(tmp_path, f"SELECT count(*) FROM serpstat.{name}")[0][0] for name in MODELS}

    attached = dlt.attach(constants.PIPELINE_NAME, pipelines_dir=str(tmp_path / "pipelines"),
                          destination=dlt.destinations.duckdb(database))
    _read_every_model(attached.dataset(), counts)
    # a machine without the pipeline's folder reads the schema dlt stored in the warehouse
    _read_every_model(dlt.dataset(dlt.destinations.duckdb(database), "serpstat"), counts)
    # dlt itself finds nothing to create or alter: every model already has its declared columns
    assert attached.sync_schema() == {}
    # and dlt's command line shows them with the loaded tables, each with its meaning
    printed = _dlt_cli(tmp_path / "pipelines", "schema", "--format", "json")
    shown = json.loads(printed[printed.index("{"):])["tables"]  # after dlt's "Found ..." lines
    for name in MODELS:
        assert shown[name]["description"] == catalog()[name].description, name
        assert {column: meaning.get("description") for column, meaning in shown[name]["columns"].items()} == \
            {c.name: c.description for c in catalog()[name].columns}, name
    assert {"ref_domains", "snapshots"} <= set(shown)


@needs_postgres
def test_every_model_is_read_through_dlt_dataset_on_postgres(postgres_history):
    tmp_path, pg_dataset = postgres_history
    counts = {name: pg_rows(pg_dataset, f"SELECT count(*) FROM {{ds}}.{name}")[0][0] for name in MODELS}
    attached = dlt.attach(constants.PIPELINE_NAME, pipelines_dir=str(tmp_path / "pipelines"),
                          destination=postgres())
    _read_every_model(attached.dataset(), counts)
    _read_every_model(dlt.dataset(postgres(), pg_dataset), counts)
    assert attached.sync_schema() == {}


def test_models_have_their_declared_columns_and_comments_in_duckdb(duckdb_history):
    tmp_path = duckdb_history
    for name in MODELS:
        doc = catalog()[name]
        columns = query(tmp_path, "SELECT column_name, data_type, comment FROM duckdb_columns() "
                                  "WHERE schema_name = 'serpstat' AND table_name = ? ORDER BY column_index", [name])
        assert [(c, DUCKDB_TYPES[t], comment) for c, t, comment in columns] == \
            [(c.name, c.data_type, c.description) for c in doc.columns], name
        comment = query(tmp_path, "SELECT comment FROM duckdb_tables() WHERE schema_name = 'serpstat' AND "
                                  "table_name = ? UNION ALL SELECT comment FROM duckdb_views() WHERE "
                                  "schema_name = 'serpstat' AND view_name = ?", [name, name])
        assert comment == [(doc.description,)], name


@needs_postgres
def test_models_have_their_declared_columns_and_comments_in_postgres(postgres_history):
    _, pg_dataset = postgres_history
    for name in MODELS:
        doc = catalog()[name]
        columns = pg_rows(pg_dataset, "SELECT column_name, data_type, col_description("
                                      "format('%%I.%%I', table_schema, table_name)::regclass, ordinal_position) "
                                      "FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                                      "ORDER BY ordinal_position", (pg_dataset, name))
        assert [(c, POSTGRES_TYPES[t], comment) for c, t, comment in columns] == \
            [(c.name, c.data_type, c.description) for c in doc.columns], name
        comment = pg_rows(pg_dataset, "SELECT obj_description(format('%%I.%%I', %s, %s)::regclass, 'pg_class')",
                          (pg_dataset, name))
        assert comment == [(doc.description,)], name


def test_loaded_tables_have_their_comments_in_duckdb(duckdb_history):
    """Every column contract.py describes carries its meaning in the warehouse, as the models' do,
    also after a later load (the history's last load builds no models)."""
    tmp_path = duckdb_history
    for table in LOADED_TABLES:
        columns = dict(query(tmp_path, "SELECT column_name, comment FROM duckdb_columns() "
                                       "WHERE schema_name = 'serpstat' AND table_name = ?", [table.name]))
        assert {name: columns.get(name) for name in table.names} == table.described(), table.name
        assert query(tmp_path, "SELECT comment FROM duckdb_tables() WHERE schema_name = 'serpstat' AND "
                               "table_name = ?", [table.name]) == [(table.description,)], table.name


@needs_postgres
def test_loaded_tables_have_their_comments_in_postgres(postgres_history):
    _, pg_dataset = postgres_history
    for table in LOADED_TABLES:
        columns = dict(pg_rows(pg_dataset, "SELECT column_name, col_description(format('%%I.%%I', table_schema, "
                                           "table_name)::regclass, ordinal_position) FROM information_schema.columns "
                                           "WHERE table_schema = %s AND table_name = %s", (pg_dataset, table.name)))
        assert {name: columns.get(name) for name in table.names} == table.described(), table.name
        assert pg_rows(pg_dataset, "SELECT obj_description(format('%%I.%%I', %s, %s)::regclass, 'pg_class')",
                       (pg_dataset, table.name)) == [(table.description,)], table.name


def test_every_sql_model_is_declared_in_a_doc_file_beside_it():
    assert set(model_names()) | {NAMES_TABLE, NAMES_READ_TABLE} == set(catalog())
    for model in models.load_models():
        doc = catalog()[model.name]
        assert doc.layer == model.layer and doc.summary and doc.description, model.name
    assert catalog()[NAMES_TABLE].layer == catalog()[NAMES_READ_TABLE].layer == "staging"


def test_the_models_documentation_is_what_the_doc_files_say():
    """docs/models.md and the README's table of models are written from the doc files by
    `make docs`: edited by hand or left behind by a doc file's change, they fail here."""
    root = Path(__file__).resolve().parents[1]
    reference = (root / docs.REFERENCE).read_text(encoding="utf-8")
    assert reference == docs.reference(), f"{docs.REFERENCE} is out of date: run `make docs`"
    readme = (root / docs.README).read_text(encoding="utf-8")
    assert docs.with_summary_table(readme) == readme, "the README's table of models is out of date: run `make docs`"
    table = readme[readme.index(docs.README_START):readme.index(docs.README_END)]
    for name in MODELS:
        assert f"[`{name}`]({docs.REFERENCE}#{name})" in table and f"### `{name}`" in reference, name
        assert all(f"| `{c.name}` |" in reference for c in catalog()[name].columns), name


def test_unicode_names_are_kept_once_for_every_idn_domain(tmp_path, emulator):
    """The display names are kept incrementally: a rebuild adds the names loaded since, one row a name."""
    destination = dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb"))
    _build_then_load_again(tmp_path, emulator, destination=destination)
    models.build(make_pipeline(destination, None, str(tmp_path / "pipelines")))
    rows = query(tmp_path, f"SELECT ref_domain, count(*) FROM serpstat.{NAMES_TABLE} GROUP BY 1 HAVING count(*) > 1")
    assert rows == []
    idn = query(tmp_path, "SELECT count(DISTINCT ref_domain) FROM serpstat.ref_domains WHERE ref_domain LIKE '%xn--%'")
    assert query(tmp_path, f"SELECT count(*) FROM serpstat.{NAMES_TABLE}") == idn and idn[0][0] > 0


def test_a_build_reads_the_names_of_new_snapshots_only(tmp_path, emulator):
    """The names are read from the rows of snapshots not read before (or pulled again since): a
    name written by hand into a snapshot already read is not decoded by the next build; the same
    snapshot, once its ledger row says it was pulled again, is read again."""
    import duckdb

    destination = dlt.destinations.duckdb(str(tmp_path / "refdomains.duckdb"))
    _build_then_load_again(tmp_path, emulator, destination=destination)
    pipeline = make_pipeline(destination, None, str(tmp_path / "pipelines"))
    models.build(pipeline)
    read = query(tmp_path, f"SELECT count(*) FROM serpstat.{NAMES_READ_TABLE}")
    assert read == query(tmp_path, "SELECT count(*) FROM serpstat.snapshots WHERE status = 'complete'") == [(3,)]
    with duckdb.connect(str(tmp_path / "refdomains.duckdb")) as con:
        key = con.execute("SELECT snapshot_key FROM serpstat.snapshots WHERE snapshot_kind = 'full' "
                          "ORDER BY snapshot_date LIMIT 1").fetchone()[0]
        con.execute("UPDATE serpstat.ref_domains SET ref_domain = 'xn--mnchen-3ya.de' WHERE snapshot_key = ? "
                    "AND ref_domain = (SELECT min(ref_domain) FROM serpstat.ref_domains WHERE snapshot_key = ?)",
                    [key, key])
    models.build(pipeline)
    known = f"SELECT ref_domain_unicode FROM serpstat.{NAMES_TABLE} WHERE ref_domain = 'xn--mnchen-3ya.de'"
    assert query(tmp_path, known) == []
    with duckdb.connect(str(tmp_path / "refdomains.duckdb")) as con:
        con.execute("UPDATE serpstat.snapshots SET finished_at = finished_at + INTERVAL 1 MINUTE "
                    "WHERE snapshot_key = ?", [key])
    models.build(pipeline)
    assert query(tmp_path, known) == [("münchen.de",)]



@needs_postgres
def test_week_start_is_monday_on_postgres():
    select = models.transpile("select cast(date_trunc('week', snapshot_date) as date) as week_start, snapshot_date "
                              "from days", "postgres", "unused", set())
    with psycopg2.connect(PG_URL) as con, con.cursor() as cur:
        cur.execute("CREATE TEMPORARY TABLE days AS SELECT d::date AS snapshot_date FROM "
                    "generate_series(DATE '2026-12-25', DATE '2027-01-08', INTERVAL '1 day') d")
        cur.execute(select)
        rows = cur.fetchall()
    assert len(rows) == 15
    assert all(week == day - dt.timedelta(days=day.weekday()) for week, day in rows)


def test_unicode_name_decodes_idna_and_keeps_what_does_not_decode():
    assert models.unicode_name("xn--bcher-welt-9db.de") == "bücher-welt.de"
    assert models.unicode_name("example.com") == "example.com"
    assert models.unicode_name("sub.xn--mnchen-3ya.de") == "sub.münchen.de"  # label by label
    assert models.unicode_name("xn--ls8h.la") == "💩.la"  # display only: no IDNA 2008 verdict needed
    assert models.unicode_name("xn--zz-.com") == "xn--zz-.com"  # decodes to ASCII: no IDN label, shown as it is
    assert models.unicode_name("xn--a-ecp.xn--9-.com") == "xn--a-ecp.xn--9-.com"


def test_dlt_drop_of_every_resource_drops_the_model_tables_and_never_a_view(tmp_path, emulator):
    """dlt drops the tables that hold data with DROP TABLE, which fails on a view: the models that
    are tables are marked as holding data (so dlt's dashboard lists them) and dropped with the
    loaded tables; the views are not, so `dlt pipeline drop` only takes them out of the schema."""
    from dlt.pipeline.helpers import pipeline_drop
    database = str(tmp_path / "refdomains.duckdb")
    _build_then_load_again(tmp_path, emulator, destination=dlt.destinations.duckdb(database))
    attached = dlt.attach(constants.PIPELINE_NAME, pipelines_dir=str(tmp_path / "pipelines"),
                          destination=dlt.destinations.duckdb(database))
    pipeline_drop(attached, resources=["re:.*"])()
    assert attached.default_schema.data_table_names() == []
    left = {r[0] for r in query(tmp_path, "SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = 'serpstat' AND table_name NOT LIKE '_dlt%'")}
    assert left == set(VIEWS) and VIEWS  # the loaded data and the model tables went, the views stayed


def _dlt_cli(pipelines_dir: Path, *command: str, cwd: Path | None = None) -> str:
    """dlt's own command line on the pipeline in `pipelines_dir`; its standard output."""
    done = subprocess.run([str(Path(sys.executable).parent / "dlt"), "pipeline", "--pipelines-dir",
                           str(pipelines_dir), constants.PIPELINE_NAME, *command], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_dlt_dashboard_and_info_list_the_models_with_their_descriptions(duckdb_history):
    """dlt's dashboard (`dlt pipeline ... show`) lists the tables of the pipeline's schema that
    hold data and are complete (Schema.data_tables(seen_data_only=True)); `info -v` says whether
    each received data. Every mart, every model that is a table and target_competitors are listed
    there with the loaded tables, each with its meaning; the internal views are not."""
    tmp_path = duckdb_history
    database = str(tmp_path / "refdomains.duckdb")
    attached = dlt.attach(constants.PIPELINE_NAME, pipelines_dir=str(tmp_path / "pipelines"),
                          destination=dlt.destinations.duckdb(database))
    listed = {t["name"]: t for t in attached.default_schema.data_tables(seen_data_only=True, include_incomplete=False)}
    assert set(listed) == {*MODELS, *(t.name for t in LOADED_TABLES)} - set(VIEWS)
    assert {m.name for m in models.load_models() if m.layer == "marts"} <= set(listed)
    for name in set(MODELS) - set(VIEWS):
        assert listed[name]["description"] == catalog()[name].description, name
        assert [c.get("description") for c in listed[name]["columns"].values()] == \
            [c.description for c in catalog()[name].columns], name
    assert listed[constants.COMPETITORS_TABLE]["description"] == TARGET_COMPETITORS.description
    info = _dlt_cli(tmp_path / "pipelines", "info", "-v")
    received = dict(re.findall(r"^\t(\w+) table \d+ column\(s\) (received data|not yet received data)", info, re.M))
    assert {name for name, said in received.items() if said == "received data"} >= set(listed)
    assert {name for name, said in received.items() if said != "received data"} == set(VIEWS)


# Models as an earlier version built them: internal models since renamed (the first three), views reading
# a model the current version still builds and one another, and a mart under its current name.
EARLIER_MODELS = {
    "stg_snapshots": ("table", "select snapshot_key, snapshot_date, snapshot_kind from snapshots "
                               "where status = 'complete'"),
    "stg_full_snapshots": ("view", "select * from stg_snapshots where snapshot_kind = 'full'"),
    "stg_full_ref_domains": ("view", "select ref_domains.ref_domain, full_snapshots.snapshot_date from ref_domains "
                                     "inner join stg_full_snapshots as full_snapshots "
                                     "on full_snapshots.snapshot_key = ref_domains.snapshot_key"),
    "int_full_ref_domain_history": ("view", "select ref_domain, min(snapshot_date) as first_seen "
                                            "from stg_full_ref_domains group by ref_domain"),
    "new_ref_domains": ("table", "select ref_domain, first_seen as detected_on from int_full_ref_domain_history"),
}


@pytest.mark.parametrize("warehouse", ["duckdb", pytest.param("postgres", marks=needs_postgres)])
def test_an_upgrade_drops_the_models_an_earlier_version_built(tmp_path, emulator, warehouse, request):
    """The layering renamed internal models (stg_full_snapshots, int_full_ref_domain_history, ...).
    A warehouse built by the earlier version holds them, registered in dlt's schema as models: the
    next build drops them from both, rebuilds the current ones, and leaves the user's own objects."""
    dataset, destination = warehouse_of(warehouse, tmp_path, request)
    weekly_full_runs(tmp_path, emulator, "upgrade.com", 80, 2, destination=destination, dataset_name=dataset)
    pipeline = make_pipeline(destination, dataset, str(tmp_path / "pipelines"))
    dialect = destination_dialect(pipeline)
    with pipeline.sql_client() as client:
        qualified = client.make_qualified_table_name
        for name, (kind, sql) in EARLIER_MODELS.items():  # in the earlier version's order
            select = models.transpile(sql, dialect, client.dataset_name, set(EARLIER_MODELS) | models.SOURCE_TABLES)
            client.execute_sql(f"CREATE {kind.upper()} {qualified(name)} AS {select}")
        client.execute_sql(f"CREATE VIEW {qualified('my_report')} AS SELECT 1 AS answer")
    schema = pipeline.default_schema
    for name, (kind, _) in EARLIER_MODELS.items():
        table = new_table(name, write_disposition="skip", resource=name, columns=[{"name": "x", "data_type": "bigint"}])
        table[models.MODEL_HINT] = {"materialized": kind}
        schema.update_table(table)
    pipeline.schemas.save_schema(schema)
    retired = set(EARLIER_MODELS) - set(model_names())
    assert retired >= {"stg_full_snapshots", "stg_full_ref_domains", "int_full_ref_domain_history"}

    assert models.build(pipeline) == model_names()

    with pipeline.sql_client() as client:
        present = {r[0] for r in client.execute_sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", client.dataset_name)}
        current = client.make_qualified_table_name("ref_domains_current")
        assert client.execute_sql(f"SELECT count(*) FROM {current}")[0][0]
    assert not retired & present
    assert set(MODELS) | {"my_report", "ref_domains", "snapshots"} <= present
    assert not retired & set(pipeline.default_schema.tables)
    assert set(MODELS) <= set(pipeline.default_schema.tables)


def test_an_installed_wheel_builds_the_same_models(tmp_path):
    """sql/ ships inside the package with its layer folders: installed from a wheel, the runner
    finds every model and its doc file, and orders them as in the repository."""
    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "source"
    for part in ("pyproject.toml", "README.md"):
        (source / part).parent.mkdir(parents=True, exist_ok=True)
        (source / part).write_bytes((root / part).read_bytes())
    for folder in ("pipelines", "sql"):
        shutil.copytree(root / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    listed = subprocess.run([sys.executable, "-c", "from serpstat_refdomains import models; print(models.__file__); "
                             "print(' '.join(m.layer + '/' + m.name for m in models.load_models())); "
                             "print(' '.join(d.layer + '/' + d.name for d in models.catalog().values()))"],
                            capture_output=True, text=True, timeout=120, check=True,
                            env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    where, order, docs = listed.stdout.splitlines()
    assert where.startswith(str(tmp_path / "site"))
    assert order.split() == [f"{m.layer}/{m.name}" for m in models.load_models()]
    assert docs.split() == [f"{d.layer}/{d.name}" for d in catalog().values()]  # the doc files ship too
